package features

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// This project's machine kind (reference.md §5) has everything edgebpf uses.
func TestProbeFindsEverythingOnThisKernel(t *testing.T) {
	sess := testenv.Session(t)
	r := Probe(sess)
	require.Len(t, r.Features, len(All))
	for _, f := range r.Features {
		assert.True(t, f.OK, "%s: %s", f.Name, f.Detail)
		assert.NotEmpty(t, f.Detail, f.Name)
	}
	assert.True(t, r.AllOK())
	assert.Contains(t, r.Get(XDP).Detail, "native")
}

func TestProbeWithoutRootSaysSo(t *testing.T) {
	r := Probe(nil)
	for _, n := range []Name{Netns, Veth, Bridge, TCX, XDP, TUN, NFTables} {
		f := r.Get(n)
		assert.False(t, f.OK, n)
		assert.Contains(t, f.Detail, "needs root", n)
	}
	assert.False(t, r.AllOK())
}

func TestReportSetGetMissing(t *testing.T) {
	var r Report
	r.Set(TCX, true, "ok")
	r.Set(TCX, false, "forced")
	r.Set(BTF, true, "x")
	assert.Len(t, r.Features, 2)
	assert.Equal(t, Feature{TCX, false, "forced"}, r.Get(TCX))
	assert.Equal(t, "not probed", r.Get(TUN).Detail)
	missing := r.Missing(TCX, BTF, TUN)
	require.Len(t, missing, 2)
	assert.Equal(t, TCX, missing[0].Name)
	assert.Equal(t, TUN, missing[1].Name)
}
