package manager_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules"
	"github.com/edgebpf/edgebpf/internal/testenv"
)

// FuzzAPI sends arbitrary methods, paths and bodies: the API must answer every one with JSON
// and never with a server error or a panic.
func FuzzAPI(f *testing.F) {
	node := testenv.Node(f, "a")
	m, err := manager.New(node, modules.Catalogue())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = m.Close() })
	h := m.Handler()
	f.Add("POST", "/ebpf", `{"name":"counter"}`)
	f.Add("POST", "/ebpf", `{"name":"firewall","config":{"default":"pass"}}`)
	f.Add("POST", "/ebpf/1/rule", `{"proto":"tcp","dstPort":"1-2"}`)
	f.Add("POST", "/ebpf/1/rules", `[{"proto":"udp","srcIp":"10.0.0.0/8"}]`)
	f.Add("DELETE", "/ebpf/1/rules/1", ``)
	f.Add("GET", "/ebpf/1/counts", ``)
	f.Add("PATCH", "/ebpf/1", `{}`)
	f.Add("GET", "/ebpf/1/../../modules", ``)
	f.Add("GET", "//ebpf", ``)
	f.Add("POST", "/ebpf", `{"name":"counter","name":"firewall"}`)
	f.Add("POST", "/services", `{"name":"x"}`)
	f.Add("DELETE", "/services/x/instances/0", ``)
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t\r\n?#%") || len(method) == 0 || strings.ContainsAny(method, " \t\r\n/") {
			return // not a request line an HTTP server would hand on
		}
		req := httptest.NewRequest(http.MethodGet, "/", strings.NewReader(body))
		req.Method, req.URL.Path, req.Host = method, path, "localhost"
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, rec.Code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: content type %q", method, path, ct)
		}
		if len(m.List()) > 4 {
			_, _ = m.DeleteAll()
		}
	})
}
