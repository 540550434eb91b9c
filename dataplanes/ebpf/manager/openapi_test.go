package manager_test

import (
	"encoding/json"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules/tunnel"
)

// TestOpenAPIMatchesRoutes keeps docs/api/openapi.json true: every route the manager and
// the modules of the catalogue serve is described, and nothing else is.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	b, err := os.ReadFile("../../../docs/api/openapi.json")
	require.NoError(t, err)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(b, &doc))
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			if method != "parameters" {
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}

	var served []string
	for _, r := range manager.APIRoutes {
		served = append(served, r.Method+" "+r.Pattern)
	}
	// Every module of the catalogue the API's manager was given.
	catalogue := slices.Sorted(maps.Keys(modules.Catalogue()))
	a := newAPI(t)
	require.Equal(t, catalogue, a.m.Modules())
	for _, name := range catalogue {
		if name == "tunnel" {
			// It needs a worker of a cluster; its routes do not depend on the underlay.
			tu, err := tunnel.New(tunnel.Underlay{Link: "ebu0", Index: 1, IP: netip.MustParseAddr("10.17.0.1"), MTU: 1500}, 1450,
				netip.MustParsePrefix("10.30.0.0/16"), net.HardwareAddr{2, 0, 0, 0, 0, 1})
			require.NoError(t, err)
			for _, r := range tu.Routes() {
				served = append(served, r.Method+" /ebpf/{id}"+r.Pattern)
			}
			continue
		}
		inf := a.create(name, "")
		routes, ok := a.m.Routes(inf.ID)
		require.True(t, ok)
		for _, r := range routes {
			served = append(served, r.Method+" /ebpf/{id}"+r.Pattern)
		}
	}
	// Every route APIRoutes names is served: neither 404 nor 405 for its method.
	for _, r := range manager.APIRoutes {
		path := strings.NewReplacer("{id}", "1", "{name}", "nosuchservice", "{instance}", "0").Replace(r.Pattern)
		code, out := a.do(r.Method, path, "")
		assert.NotEqual(t, 405, code, "%s %s is in APIRoutes but not served: %s", r.Method, path, out)
		assert.NotContains(t, out, "no route", "%s %s is in APIRoutes but not served", r.Method, path)
	}
	slices.Sort(documented)
	slices.Sort(served)
	served = slices.Compact(served) // several modules serve /stats
	assert.Equal(t, served, documented)
}
