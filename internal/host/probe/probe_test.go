package probe

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/features"
	"github.com/edgebpf/edgebpf/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// This project's machine kind (reference.md §5) has everything edgebpf uses.
func TestFeaturesFindsEverythingOnThisKernel(t *testing.T) {
	sess := testenv.Session(t)
	r := Features(sess)
	require.Len(t, r.Features, len(features.All))
	for _, f := range r.Features {
		assert.True(t, f.OK, "%s: %s", f.Name, f.Detail)
		assert.NotEmpty(t, f.Detail, f.Name)
	}
	assert.True(t, r.AllOK())
	assert.Contains(t, r.Get(features.XDP).Detail, "native")
}

func TestFeaturesWithoutRootSaysSo(t *testing.T) {
	r := Features(nil)
	for i, n := range features.All {
		assert.Equal(t, n, r.Features[i].Name, "in the order of features.All")
	}
	for _, n := range []features.Name{features.Netns, features.Veth, features.Bridge, features.TCX, features.XDP, features.TUN, features.NFTables} {
		f := r.Get(n)
		assert.False(t, f.OK, n)
		assert.Contains(t, f.Detail, "needs root", n)
	}
	assert.False(t, r.AllOK())
}
