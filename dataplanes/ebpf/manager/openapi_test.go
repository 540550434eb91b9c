package manager_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	_ "github.com/edgebpf/edgebpf/dataplanes/ebpf/modules/proxy"
)

// TestOpenAPIMatchesRoutes keeps docs/api/openapi.json true: every route the manager and
// its modules serve is described, and nothing else is.
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
	a := newAPI(t)
	for _, name := range manager.Modules() {
		inf := a.create(name, "")
		routes, ok := a.m.Routes(inf.ID)
		require.True(t, ok)
		for _, r := range routes {
			served = append(served, r.Method+" /ebpf/{id}"+r.Pattern)
		}
	}
	slices.Sort(documented)
	slices.Sort(served)
	served = slices.Compact(served) // several modules serve /stats
	assert.Equal(t, served, documented)
}
