package manager_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// api is a manager on a node with a client and a server, behind a real HTTP server.
type api struct {
	t    *testing.T
	node *netsetup.Node
	m    *manager.Manager
	url  string
}

// eachChain runs test once per chain mode.
func eachChain(t *testing.T, test func(*testing.T, manager.Chain)) {
	for _, c := range manager.ChainModes {
		t.Run(string(c), func(t *testing.T) {
			if c == manager.ChainDispatcher {
				testenv.RequirePrivileged(t)
				if err := manager.ProbeDispatcher(); err != nil {
					t.Skip(err)
				}
			}
			test(t, c)
		})
	}
}

// onHook is what GET /chains shows on hook (in or out) for the modules' programs progs in
// chain mode c: in dispatcher mode the dispatcher, then the programs it runs.
func onHook(c manager.Chain, hook string, progs ...string) []string {
	if c == manager.ChainDispatcher {
		return append([]string{"disp_" + hook}, progs...)
	}
	return append([]string{}, progs...)
}

func newAPI(t *testing.T, chain manager.Chain) *api {
	node := testenv.Node(t, "client", "server")
	m, err := manager.New(node, modules.Catalogue(), manager.WithChain(chain))
	require.NoError(t, err)
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(func() {
		srv.Close()
		require.NoError(t, m.Close())
	})
	return &api{t: t, node: node, m: m, url: srv.URL}
}

func (a *api) do(method, path, body string) (int, string) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, strings.NewReader(body))
	require.NoError(a.t, err)
	if body != "" || method == "POST" || method == "PUT" || method == "PATCH" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	assert.Equal(a.t, "application/json", resp.Header.Get("Content-Type"), "%s %s", method, path)
	return resp.StatusCode, string(b)
}

func (a *api) create(name, config string) manager.Info {
	a.t.Helper()
	body := fmt.Sprintf(`{"name":%q}`, name)
	if config != "" {
		body = fmt.Sprintf(`{"name":%q,"config":%s}`, name, config)
	}
	code, out := a.do("POST", "/ebpf", body)
	require.Equal(a.t, http.StatusCreated, code, out)
	var inf manager.Info
	require.NoError(a.t, json.Unmarshal([]byte(out), &inf))
	return inf
}

func (a *api) chains() manager.Chains {
	a.t.Helper()
	code, out := a.do("GET", "/chains", "")
	require.Equal(a.t, http.StatusOK, code, out)
	var c manager.Chains
	require.NoError(a.t, json.Unmarshal([]byte(out), &c))
	return c
}

// connect opens a TCP connection from the client instance to the server instance's port and
// exchanges a few bytes; it returns the error, if any.
func connect(t *testing.T, node *netsetup.Node, port int) error {
	return connectWithin(t, node, port, 2*time.Second)
}

// blocked reports whether a connection attempt fails within a short time: for traffic a
// firewall drops (a SYN dropped never completes).
func blocked(t *testing.T, node *netsetup.Node, port int) bool {
	return connectWithin(t, node, port, 300*time.Millisecond) != nil
}

func connectWithin(t *testing.T, node *netsetup.Node, port int, timeout time.Duration) error {
	client, _ := node.Instance("client", 0)
	server, _ := node.Instance("server", 0)
	var ln net.Listener
	require.NoError(t, server.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}))
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			// A plain echo loop: io.Copy between TCP sockets would splice through pipes
			// that the runtime caches, which the leak check would report.
			buf := make([]byte, 4096)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					_, _ = c.Write(buf[:n])
				}
				if err != nil {
					break
				}
			}
			c.Close()
		}
	}()
	return client.NS.Do(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(server.NSIP, uint16(port)).String(), timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		msg := bytes.Repeat([]byte("x"), 1000)
		if _, err := c.Write(msg); err != nil {
			return err
		}
		_, err = io.ReadFull(c, make([]byte, len(msg)))
		return err
	})
}

func TestCounterCountsBothDirections(t *testing.T) { eachChain(t, testCounterCountsBothDirections) }

func testCounterCountsBothDirections(t *testing.T, chain manager.Chain) {
	a := newAPI(t, chain)
	inf := a.create("counter", "")
	assert.Equal(t, 1, inf.ID)
	assert.Len(t, inf.Attached, 2)
	assert.Equal(t, []string{"counter_in", "counter_out"}, []string{inf.Programs[0].Name, inf.Programs[1].Name})

	require.NoError(t, connect(t, a.node, 7100))
	code, out := a.do("GET", "/ebpf/1/counts", "")
	require.Equal(t, http.StatusOK, code, out)
	var counts map[string]struct {
		Instance        string
		Ingress, Egress struct{ Packets, Bytes uint64 }
	}
	require.NoError(t, json.Unmarshal([]byte(out), &counts))
	client, _ := a.node.Instance("client", 0)
	server, _ := a.node.Instance("server", 0)
	c, s := counts[client.Veth], counts[server.Veth]
	assert.Equal(t, "client-0", c.Instance)
	assert.GreaterOrEqual(t, c.Egress.Bytes, uint64(1000), "the client sent 1000 bytes")
	assert.GreaterOrEqual(t, s.Ingress.Bytes, uint64(1000), "the server received them")
	assert.GreaterOrEqual(t, s.Egress.Bytes, uint64(1000), "and echoed them")
	assert.Positive(t, c.Ingress.Packets)
}

func TestChainOrderFollowsDeployment(t *testing.T) { eachChain(t, testChainOrderFollowsDeployment) }

func testChainOrderFollowsDeployment(t *testing.T, chain manager.Chain) {
	a := newAPI(t, chain)
	a.create("counter", "")
	a.create("firewall", `{"default":"pass"}`)
	a.create("counter", "")
	want := onHook(chain, "in", "counter_in", "firewall_in", "counter_in")
	for veth, hooks := range a.chains() {
		assert.Equal(t, want, hooks["tc_ingress"], veth)
		assert.Equal(t, onHook(chain, "out", "counter_out", "firewall_out", "counter_out"), hooks["tc_egress"], veth)
	}

	// A new instance gets every module in the same order.
	_, err := a.node.AddService("late")
	require.NoError(t, err)
	late, err := a.node.AddInstance("late")
	require.NoError(t, err)
	assert.Equal(t, want, a.chains()[late.Veth]["tc_ingress"])

	// Deleting the middle module keeps the others' order, everywhere.
	code, out := a.do("DELETE", "/ebpf/2", "")
	require.Equal(t, http.StatusOK, code, out)
	for veth, hooks := range a.chains() {
		assert.Equal(t, onHook(chain, "in", "counter_in", "counter_in"), hooks["tc_ingress"], veth)
	}
	code, _ = a.do("GET", "/ebpf/2/rules", "")
	assert.Equal(t, http.StatusNotFound, code, "a deleted module's sub-routes are gone")

	// Positions renumber; ids do not.
	code, out = a.do("GET", "/ebpf", "")
	require.Equal(t, http.StatusOK, code)
	var list []manager.Info
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Len(t, list, 2)
	assert.Equal(t, []int{1, 3}, []int{list[0].ID, list[1].ID})
	assert.Equal(t, []int{0, 1}, []int{list[0].Position, list[1].Position})

	// A removed instance leaves nothing behind in the modules; a deleted-all node is bare.
	require.NoError(t, a.node.RemoveInstance(late))
	code, out = a.do("DELETE", "/ebpf", "")
	require.Equal(t, http.StatusOK, code, out)
	assert.JSONEq(t, `{"deleted":[3,1]}`, out)
	for veth, hooks := range a.chains() {
		assert.Equal(t, onHook(chain, "in"), hooks["tc_ingress"], veth)
		assert.Equal(t, onHook(chain, "out"), hooks["tc_egress"], veth)
	}
}

// sentBy returns how many packets the counter module id saw the instance send.
func (a *api) sentBy(id int, in *netsetup.Instance) uint64 {
	a.t.Helper()
	code, out := a.do("GET", fmt.Sprintf("/ebpf/%d/counts", id), "")
	require.Equal(a.t, http.StatusOK, code, out)
	var counts map[string]struct{ Egress struct{ Packets uint64 } }
	require.NoError(a.t, json.Unmarshal([]byte(out), &counts))
	return counts[in.Veth].Egress.Packets
}

// TestChainOrderWithRealPackets: a counter before a default-drop firewall counts the client's
// SYNs, a counter after it does not (both count what the firewall passes, ARP); once the
// firewall is deleted, the last counter counts the connection.
func TestChainOrderWithRealPackets(t *testing.T) { eachChain(t, testChainOrderWithRealPackets) }

func testChainOrderWithRealPackets(t *testing.T, chain manager.Chain) {
	a := newAPI(t, chain)
	before := a.create("counter", "")
	fw := a.create("firewall", "")
	after := a.create("counter", "")
	client, _ := a.node.Instance("client", 0)
	require.True(t, blocked(t, a.node, 7500), "default drop")
	n := a.sentBy(after.ID, client)
	assert.Greater(t, a.sentBy(before.ID, client), n, "the counter before the firewall saw the SYNs, the one after it did not")

	code, out := a.do("DELETE", fmt.Sprintf("/ebpf/%d", fw.ID), "")
	require.Equal(t, http.StatusOK, code, out)
	require.NoError(t, connect(t, a.node, 7501))
	assert.GreaterOrEqual(t, a.sentBy(after.ID, client), n+3, "without the firewall the last counter counts the connection")
}

func TestFirewallFiltersRealTraffic(t *testing.T) { eachChain(t, testFirewallFiltersRealTraffic) }

func testFirewallFiltersRealTraffic(t *testing.T, chain manager.Chain) {
	a := newAPI(t, chain)
	require.NoError(t, connect(t, a.node, 7200), "no module: traffic flows")
	fw := a.create("firewall", "")
	require.True(t, blocked(t, a.node, 7201), "default drop")

	client, _ := a.node.Instance("client", 0)
	server, _ := a.node.Instance("server", 0)
	rule := fmt.Sprintf(`{"proto":"tcp","srcIp":"%s","dstIp":"%s/32","dstPort":"7202-7203"}`, client.NSIP, server.NSIP)
	code, out := a.do("POST", fmt.Sprintf("/ebpf/%d/rule", fw.ID), rule)
	require.Equal(t, http.StatusCreated, code, out)
	require.NoError(t, connect(t, a.node, 7202), "allowed by the rule, replies pass")
	require.True(t, blocked(t, a.node, 7204), "outside the rule's range")

	// Rules apply to instances created after them.
	_, err := a.node.AddService("late")
	require.NoError(t, err)
	late, err := a.node.AddInstance("late")
	require.NoError(t, err)
	assert.Contains(t, a.chains()[late.Veth]["tc_ingress"], "firewall_in")

	code, out = a.do("DELETE", fmt.Sprintf("/ebpf/%d/rules/1", fw.ID), "")
	require.Equal(t, http.StatusOK, code, out)
	require.True(t, blocked(t, a.node, 7203), "the rule is gone")
	code, out = a.do("GET", fmt.Sprintf("/ebpf/%d/stats", fw.ID), "")
	require.Equal(t, http.StatusOK, code, out)
	assert.Contains(t, out, `"dropped"`)
}

func TestAPIBadInput(t *testing.T) {
	a := newAPI(t, manager.ChainTCX)
	cases := []struct {
		method, path, body string
		code               int
		msg                string
	}{
		{"GET", "/ebpf/7", "", 404, "no module with id 7"},
		{"GET", "/ebpf/x", "", 400, `module id "x" is not a positive integer`},
		{"DELETE", "/ebpf/7", "", 404, "no module with id 7"},
		{"GET", "/ebpf/7/counts", "", 404, "no module with id 7"},
		{"POST", "/ebpf", `{"name":"nope"}`, 404, `no module named "nope": available are counter, firewall`},
		{"POST", "/ebpf", `{"name":"../../etc/passwd"}`, 400, "never a path"},
		{"POST", "/ebpf", `{"name":""}`, 400, "give the name of a module"},
		{"POST", "/ebpf", `{"name":"counter","colour":1}`, 400, `unknown field "colour"`},
		{"POST", "/ebpf", `{"name":5}`, 400, `field "name" must be string`},
		{"POST", "/ebpf", `{"name":"counter"`, 400, "malformed JSON"},
		{"POST", "/ebpf", ``, 400, "request body is empty"},
		{"POST", "/ebpf", `{"name":"counter","config":{"x":1}}`, 400, "the counter takes no configuration"},
		{"POST", "/ebpf", `{"name":"firewall","config":{"default":"maybe"}}`, 400, "neither drop nor pass"},
		{"POST", "/ebpf", `{"name":"counter","config":"` + strings.Repeat("a", manager.MaxBodyBytes) + `"}`, 413, "larger than"},
		{"PUT", "/ebpf", `{}`, 405, ""},
		{"GET", "/nowhere", "", 404, "no route GET /nowhere"},
	}
	for _, c := range cases {
		code, out := a.do(c.method, c.path, c.body)
		assert.Equal(t, c.code, code, "%s %s: %s", c.method, c.path, out)
		if c.msg != "" {
			var e struct{ Error string }
			require.NoError(t, json.Unmarshal([]byte(out), &e), out)
			assert.Contains(t, e.Error, c.msg)
		}
	}
	code, out := a.do("GET", "/ebpf", "")
	assert.Equal(t, 200, code)
	assert.JSONEq(t, `[]`, out, "nothing half-applied")

	fw := a.create("firewall", "")
	for _, body := range []string{`{"proto":"tcp","dstPort":0}`, `{"proto":"xtp"}`, `{"proto":"tcp","srcIp":"1.2.3"}`, `{"proto":"tcp","dstIp":"10.0.0.0/40"}`, `[{"proto":"tcp"}]`} {
		code, out := a.do("POST", fmt.Sprintf("/ebpf/%d/rule", fw.ID), body)
		assert.Equal(t, 400, code, "%s: %s", body, out)
	}
	code, out = a.do("GET", fmt.Sprintf("/ebpf/%d/rules", fw.ID), "")
	assert.Equal(t, 200, code)
	assert.JSONEq(t, `[]`, out)
	code, _ = a.do("DELETE", fmt.Sprintf("/ebpf/%d/rules/9", fw.ID), "")
	assert.Equal(t, 404, code)
}

// TestCatalogue: a manager creates exactly the modules of the catalogue it was given, lists
// them on GET /modules, and refuses a catalogue with an invalid name or no factory.
func TestCatalogue(t *testing.T) {
	node := testenv.Node(t, "a")
	counter := modules.Catalogue()["counter"]
	_, err := manager.New(node, manager.Catalogue{"../counter": counter})
	assert.ErrorIs(t, err, manager.ErrBadName)
	_, err = manager.New(node, manager.Catalogue{"counter": nil})
	assert.ErrorContains(t, err, "no factory")

	cat := manager.Catalogue{"counter": counter}
	m, err := manager.New(node, cat)
	require.NoError(t, err)
	defer m.Close()
	delete(cat, "counter") // the manager keeps its own copy
	assert.Equal(t, []string{"counter"}, m.Modules())
	_, err = m.Create("firewall", nil)
	assert.ErrorIs(t, err, manager.ErrUnknownModule)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/modules", nil)
	req.Host = "localhost"
	m.Handler().ServeHTTP(rec, req)
	assert.JSONEq(t, `["counter"]`, rec.Body.String())
	_, err = m.Create("counter", nil)
	require.NoError(t, err)
}

func TestCloseLeavesNothingAttached(t *testing.T) { eachChain(t, testCloseLeavesNothingAttached) }

func testCloseLeavesNothingAttached(t *testing.T, chain manager.Chain) {
	node := testenv.Node(t, "a", "b")
	m, err := manager.New(node, modules.Catalogue(), manager.WithChain(chain))
	require.NoError(t, err)
	_, err = m.Create("counter", nil)
	require.NoError(t, err)
	_, err = m.Create("firewall", json.RawMessage(`{"default":"pass"}`))
	require.NoError(t, err)
	require.NoError(t, m.Close())
	require.NoError(t, m.Close(), "idempotent")
	_, err = m.Create("counter", nil)
	assert.ErrorContains(t, err, "closed")
	// The node keeps working without modules; no program stays attached.
	m2, err := manager.New(node, modules.Catalogue(), manager.WithChain(manager.ChainTCX))
	require.NoError(t, err)
	defer m2.Close()
	chains, err := m2.Chains()
	require.NoError(t, err)
	for veth, hooks := range chains {
		assert.Empty(t, hooks["tc_ingress"], veth)
		assert.Empty(t, hooks["tc_egress"], veth)
	}
}

func TestModulesWhileTrafficFlows(t *testing.T) { eachChain(t, testModulesWhileTrafficFlows) }

func testModulesWhileTrafficFlows(t *testing.T, chain manager.Chain) {
	a := newAPI(t, chain)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 1)
	go func() {
		var failed error
		for i := 0; ctx.Err() == nil; i++ {
			if err := connect(t, a.node, 7300+i%50); err != nil && failed == nil {
				failed = err
			}
		}
		errs <- failed
	}()
	for range 5 {
		a.create("counter", "")
		a.create("firewall", `{"default":"pass"}`)
		code, _ := a.do("DELETE", "/ebpf", "")
		require.Equal(t, 200, code)
	}
	cancel()
	assert.NoError(t, <-errs, "traffic is not disturbed while modules come and go")
}

// TestProgramRuns checks the names in chain order (with the id where a module name repeats)
// and that the kernel's counts grow with traffic while BPF statistics are on.
func TestProgramRuns(t *testing.T) { eachChain(t, testProgramRuns) }

func testProgramRuns(t *testing.T, chain manager.Chain) {
	a := newAPI(t, chain)
	a.create("counter", "")
	a.create("firewall", `{"default":"pass"}`)
	a.create("counter", "")
	runs, err := a.m.ProgramRuns()
	require.NoError(t, err)
	var names []string
	for _, r := range runs {
		names = append(names, r.Name)
	}
	want := []string{"counter#1_ingress", "counter#1_egress", "firewall_ingress", "firewall_egress",
		"counter#3_ingress", "counter#3_egress"}
	if chain == manager.ChainDispatcher {
		want = append(want, "dispatcher_ingress", "dispatcher_egress")
	}
	assert.Equal(t, want, names)

	st, err := manager.CountRunTime()
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, connect(t, a.node, 7101))
	after, err := a.m.ProgramRuns()
	require.NoError(t, err)
	for i, r := range after {
		assert.Greater(t, r.Runs, runs[i].Runs, "%s ran for the connection's packets", r.Name)
		assert.Greater(t, r.Runtime, runs[i].Runtime, r.Name)
	}
	// The API shows the same counts.
	code, out := a.do("GET", "/ebpf/2", "")
	require.Equal(t, http.StatusOK, code, out)
	var inf manager.Info
	require.NoError(t, json.Unmarshal([]byte(out), &inf))
	require.Len(t, inf.Programs, 2)
	for _, p := range inf.Programs {
		assert.GreaterOrEqual(t, p.RunCount, after[2].Runs, p.Hook)
		assert.Positive(t, p.RunTimeNs, p.Hook)
	}
}
