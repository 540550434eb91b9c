package manager_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager/emptyprog"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules"
	"github.com/edgebpf/edgebpf/internal/testenv"
)

// call sends one request to h with exactly the given headers and returns the status, the
// decoded error message (if any) and the body. Every answer must be JSON.
func call(t *testing.T, h http.Handler, method, target, host string, header map[string]string, body string) (int, string, string) {
	t.Helper()
	req := httptest.NewRequest(method, "/", strings.NewReader(body))
	req.Method, req.RequestURI, req.Host = method, target, host
	u, err := url.ParseRequestURI(target)
	require.NoError(t, err)
	req.URL = u
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"), "%s %s: %s", method, target, rec.Body)
	var e struct{ Error string }
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	return rec.Code, e.Error, rec.Body.String()
}

// TestAPIAccess: the API refuses foreign Host headers (DNS rebinding), requests without the
// token when it has one, and writes that are not declared JSON (cross-origin text/plain), all
// with a JSON error and before anything changes.
func TestAPIAccess(t *testing.T) {
	node := testenv.Node(t, "a")
	m, err := manager.New(node, modules.Catalogue())
	require.NoError(t, err)
	defer m.Close()
	const token = "0123456789abcdef"
	h := m.HandlerFor(manager.Access{Token: token, Hosts: []string{"192.0.2.7:6000"}})
	bearer := "Bearer " + token
	js := "application/json"
	counter := `{"name":"counter"}`
	cases := []struct {
		name, method, host, auth, ctype, body string
		code                                  int
		msg                                   string
	}{
		{"no token", "GET", "localhost", "", "", "", 401, "missing or wrong token"},
		{"wrong token", "GET", "localhost", "Bearer 0123456789abcdeX", "", "", 401, "missing or wrong token"},
		{"token without Bearer", "GET", "localhost", token, "", "", 401, "missing or wrong token"},
		{"foreign host (DNS rebinding)", "POST", "evil.example:6000", bearer, js, counter, 403, `host "evil.example:6000" is not this API's address`},
		{"foreign host, no token", "GET", "attacker.test", "", "", "", 403, "is not this API's address"},
		{"listen address on another port", "GET", "192.0.2.7:7000", bearer, "", "", 403, "is not this API's address"},
		{"cross-origin text/plain", "POST", "127.0.0.1:6000", bearer, "text/plain", counter, 415, "needs Content-Type: application/json"},
		{"form", "POST", "localhost", bearer, "application/x-www-form-urlencoded", counter, 415, "needs Content-Type"},
		{"no content type", "POST", "localhost", bearer, "", counter, 415, "needs Content-Type"},
		{"DELETE with a text body", "DELETE", "localhost", bearer, "text/plain", "x", 415, "needs Content-Type"},
		{"localhost", "GET", "localhost:6000", bearer, "", "", 200, ""},
		{"loopback IPv6", "GET", "[::1]:6000", bearer, "", "", 200, ""},
		{"listen address", "GET", "192.0.2.7:6000", bearer, "", "", 200, ""},
		{"DELETE without a body", "DELETE", "localhost", bearer, "", "", 200, ""},
	}
	for _, c := range cases {
		hdr := map[string]string{}
		if c.auth != "" {
			hdr["Authorization"] = c.auth
		}
		if c.ctype != "" {
			hdr["Content-Type"] = c.ctype
		}
		path := "/ebpf"
		code, msg, body := call(t, h, c.method, path, c.host, hdr, c.body)
		assert.Equal(t, c.code, code, "%s: %s", c.name, body)
		assert.Contains(t, msg, c.msg, c.name)
	}
	assert.Empty(t, m.List(), "no refused request created a module")
	code, _, body := call(t, h, "POST", "/ebpf", "localhost", map[string]string{"Authorization": bearer, "Content-Type": "application/json; charset=utf-8"}, counter)
	assert.Equal(t, 201, code, body)

	// Without a token (the Unix socket), only localhost names are accepted.
	local := m.Handler()
	code, _, _ = call(t, local, "GET", "/modules", "localhost", nil, "")
	assert.Equal(t, 200, code)
	code, _, _ = call(t, local, "GET", "/modules", "192.0.2.7:6000", nil, "")
	assert.Equal(t, 403, code)
}

// TestAPIAnswersJSON: paths that ServeMux would redirect with an HTML body, methods a path
// lacks, and bodies with a key given twice get JSON errors.
func TestAPIAnswersJSON(t *testing.T) {
	node := testenv.Node(t, "a")
	m, err := manager.New(node, modules.Catalogue())
	require.NoError(t, err)
	defer m.Close()
	h := m.Handler()
	_, err = m.Create("firewall", nil)
	require.NoError(t, err)
	js := map[string]string{"Content-Type": "application/json"}
	cases := []struct {
		method, path, body string
		code               int
		msg                string
		allow              string
	}{
		{"PATCH", "/ebpf/1", `{}`, 405, "PATCH is not allowed on /ebpf/1: use GET, DELETE", "GET, DELETE"},
		{"PUT", "/ebpf", `{}`, 405, "use GET, POST, DELETE", "GET, POST, DELETE"},
		{"PATCH", "/ebpf/1/rules", `{}`, 405, "use GET, POST", "GET, POST"},
		{"GET", "/ebpf/1/../../modules", "", 404, "paths are canonical", ""},
		{"GET", "//ebpf", "", 404, "paths are canonical", ""},
		{"GET", "/ebpf/", "", 404, "paths are canonical", ""},
		{"GET", "/ebpf/1/", "", 404, "paths are canonical", ""},
		{"GET", "/ebpf/./1", "", 404, "paths are canonical", ""},
		{"GET", "/ebpf/1/%2e%2e/%2e%2e/modules", "", 404, "", ""},
		{"GET", "/ebpf/1/nothing", "", 404, "module 1 has no such route", ""},
		{"GET", "/", "", 404, "no route GET /", ""},
		{"POST", "/ebpf", `{"name":"counter","name":"firewall"}`, 400, `key "name" appears twice`, ""},
		{"POST", "/ebpf", `{"name":"firewall","config":{"default":"pass","default":"drop"}}`, 400, `key "default" appears twice`, ""},
		{"POST", "/ebpf", `{"name":"counter","Name":"firewall"}`, 400, "appears twice", ""},
		{"POST", "/ebpf/1/rule", `{"proto":"tcp","dstPort":"80","dstPort":"+80"}`, 400, `key "dstPort" appears twice`, ""},
		{"POST", "/ebpf/1/rule", `{"proto":"tcp","dstPort":"+80"}`, 400, `port "+80" is not a number`, ""},
		{"POST", "/ebpf/1/rules", `[{"proto":"tcp"},{"proto":"udp","proto":"tcp"}]`, 400, "appears twice", ""},
	}
	for _, c := range cases {
		code, msg, body := call(t, h, c.method, c.path, "localhost", js, c.body)
		assert.Equal(t, c.code, code, "%s %s: %s", c.method, c.path, body)
		assert.Contains(t, msg, c.msg, "%s %s", c.method, c.path)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("PATCH", "/ebpf/1", strings.NewReader(`{}`))
	req.Host = "localhost"
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	assert.Equal(t, "GET, DELETE", rec.Header().Get("Allow"))
	assert.Len(t, m.List(), 1, "only the firewall")
	fw, _ := m.Get(1)
	assert.Equal(t, "firewall", fw.Name)

	// Nested objects and arrays with distinct keys pass.
	code, _, body := call(t, h, "POST", "/ebpf/1/rules", "localhost", js, `[{"proto":"tcp","dstPort":"80"},{"proto":"udp","dstPort":80}]`)
	assert.Equal(t, 201, code, body)
}

// TestModuleLimit: a chain holds MaxModules modules; one more is a 409 that names the limit,
// whether the manager counts it or the kernel refuses (ERANGE, here because a program the
// manager does not know holds a slot), and nothing is left half attached.
func TestModuleLimit(t *testing.T) { eachChain(t, testModuleLimit) }

func testModuleLimit(t *testing.T, chain manager.Chain) {
	a := newAPI(t, chain)
	limit := a.m.Limit()
	for i := range limit {
		inf := a.create("counter", "")
		require.Equal(t, i+1, inf.ID)
	}
	code, out := a.do("POST", "/ebpf", `{"name":"counter"}`)
	assert.Equal(t, http.StatusConflict, code, out)
	assert.Contains(t, out, fmt.Sprintf("at most %d modules per chain", limit))
	for veth, hooks := range a.chains() {
		assert.Len(t, hooks["tc_ingress"], len(onHook(chain, "in"))+limit, veth)
		assert.Len(t, hooks["tc_egress"], len(onHook(chain, "out"))+limit, veth)
	}
	code, out = a.do("DELETE", "/ebpf", "")
	require.Equal(t, 200, code, out)
	if chain == manager.ChainDispatcher {
		return // a foreign TCX program takes no slot of the dispatcher
	}

	// A foreign program on one hook of one veth: the kernel refuses the 63rd module there.
	prog, err := emptyprog.Load()
	require.NoError(t, err)
	defer prog.Close()
	server, _ := a.node.Instance("server", 0)
	var l link.Link
	require.NoError(t, a.node.NS.Do(func() (err error) {
		l, err = link.AttachTCX(link.TCXOptions{Interface: server.VethIndex, Program: prog, Attach: ebpf.AttachTCXIngress})
		return err
	}))
	defer l.Close()
	for range manager.MaxModules - 1 {
		a.create("counter", "")
	}
	code, out = a.do("POST", "/ebpf", `{"name":"counter"}`)
	assert.Equal(t, http.StatusConflict, code, out)
	assert.Contains(t, out, fmt.Sprintf("at most %d modules per chain", manager.MaxModules))
	assert.Contains(t, out, "the kernel refused one more program on "+server.Veth)
	assert.Len(t, a.m.List(), manager.MaxModules-1, "the refused module is not listed")
	client, _ := a.node.Instance("client", 0)
	assert.Len(t, a.chains()[client.Veth]["tc_ingress"], manager.MaxModules-1, "nor attached anywhere")
	assert.Len(t, a.chains()[server.Veth]["tc_ingress"], manager.MaxModules, "62 modules and the foreign program")

	// A new instance that cannot get every module is refused with the same error.
	code, out = a.do("POST", "/services", `{"name":"late"}`)
	require.Equal(t, 201, code, out)
	code, out = a.do("POST", "/services/late/instances", "")
	assert.Equal(t, http.StatusCreated, code, out, "62 modules fit on a fresh veth")
	code, out = a.do("DELETE", "/ebpf", "")
	require.Equal(t, 200, code, out)
}

// TestServiceRoutes: services and instances added and removed through the API go through the
// node's registry, so the modules follow them as they follow the node's own.
func TestServiceRoutes(t *testing.T) { eachChain(t, testServiceRoutes) }

func testServiceRoutes(t *testing.T, chain manager.Chain) {
	a := newAPI(t, chain)
	a.create("counter", "")
	code, out := a.do("POST", "/services", `{"name":"web"}`)
	require.Equal(t, http.StatusCreated, code, out)
	var svc struct {
		Name      string `json:"name"`
		ServiceIP string `json:"service_ip"`
		Instances []struct {
			Name, Veth string
			NSIP       string `json:"ns_ip"`
		} `json:"instances"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &svc))
	assert.Equal(t, "web", svc.Name)
	assert.True(t, strings.HasPrefix(svc.ServiceIP, "10.30."), svc.ServiceIP)
	assert.Empty(t, svc.Instances)
	_, ok := a.node.Registry.Service("web")
	assert.True(t, ok, "the registry has it")

	code, out = a.do("POST", "/services/web/instances", `{"count":2}`)
	require.Equal(t, http.StatusCreated, code, out)
	var ins []struct{ Name, Veth string }
	require.NoError(t, json.Unmarshal([]byte(out), &ins))
	require.Len(t, ins, 2)
	assert.Equal(t, "web-0", ins[0].Name)
	chains := a.chains()
	for _, in := range ins {
		assert.Equal(t, onHook(chain, "in", "counter_in"), chains[in.Veth]["tc_ingress"], "the module follows the registry's event on %s", in.Veth)
	}
	code, out = a.do("POST", "/services/web/instances", "")
	require.Equal(t, http.StatusCreated, code, out)
	assert.Len(t, a.node.Registry.Instances("web"), 3)

	code, out = a.do("GET", "/services/web", "")
	require.Equal(t, 200, code, out)
	require.NoError(t, json.Unmarshal([]byte(out), &svc))
	assert.Len(t, svc.Instances, 3)

	code, out = a.do("DELETE", "/services/web/instances/web-0", "")
	require.Equal(t, 200, code, out)
	assert.JSONEq(t, `{"deleted":"web-0"}`, out)
	code, out = a.do("DELETE", "/services/web/instances/1", "")
	require.Equal(t, 200, code, out)
	assert.JSONEq(t, `{"deleted":"web-1"}`, out)
	_, stillThere := a.chains()[ins[0].Veth]
	assert.False(t, stillThere, "the removed instance's veth is gone")

	for _, c := range []struct {
		method, path, body string
		code               int
		msg                string
	}{
		{"POST", "/services", `{"name":"web"}`, 409, "service web already exists"},
		{"POST", "/services", `{"name":"Web!"}`, 400, "lower-case letters"},
		{"POST", "/services", `{"name":""}`, 400, "1 to 40 characters"},
		{"POST", "/services", `{"name":"x","name":"y"}`, 400, "appears twice"},
		{"POST", "/services", `{"nam":"x"}`, 400, `unknown field "nam"`},
		{"POST", "/services/nope/instances", "", 404, `no service "nope"`},
		{"POST", "/services/web/instances", `{"count":0}`, 400, "count 0 is out of range"},
		{"POST", "/services/web/instances", `{"count":65}`, 400, "count 65 is out of range"},
		{"DELETE", "/services/web/instances/web-0", "", 404, `service web has no instance "web-0"`},
		{"DELETE", "/services/nope", "", 404, `no service "nope"`},
		{"GET", "/services/nope", "", 404, `no service "nope"`},
		{"PUT", "/services/web", "{}", 405, "use GET, DELETE"},
	} {
		code, out := a.do(c.method, c.path, c.body)
		assert.Equal(t, c.code, code, "%s %s %s: %s", c.method, c.path, c.body, out)
		var e struct{ Error string }
		require.NoError(t, json.Unmarshal([]byte(out), &e), out)
		assert.Contains(t, e.Error, c.msg, "%s %s", c.method, c.path)
	}

	code, out = a.do("DELETE", "/services/web", "")
	require.Equal(t, 200, code, out)
	_, ok = a.node.Registry.Service("web")
	assert.False(t, ok)
	code, out = a.do("GET", "/services", "")
	require.Equal(t, 200, code, out)
	var all []struct{ Name string }
	require.NoError(t, json.Unmarshal([]byte(out), &all))
	assert.Equal(t, []struct{ Name string }{{"client"}, {"server"}}, all)
}
