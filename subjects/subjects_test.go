package subjects

import (
	"image/color"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestColourIsStable(t *testing.T) {
	all := All()
	assert.Equal(t, color.RGBA{0xff, 0x7f, 0x0e, 0xff}, all.Colour("ebpf"), "the thesis drew the eBPF proxy orange")
	assert.Equal(t, color.RGBA{0x1f, 0x77, 0xb4, 0xff}, all.Colour("userspace"), "and the user-space proxy blue")
	assert.Equal(t, all.Colour("xdp-lb"), all.Colour("xdp-lb"))
	assert.NotEqual(t, all.Colour("userspace"), all.Colour("ebpf"))
	dps := []string{"zeta", "ebpf", "alpha", "direct", "nftables", "userspace", "mixed"}
	all.Sort(dps)
	assert.Equal(t, []string{"direct", "userspace", "mixed", "ebpf", "nftables", "alpha", "zeta"}, dps)
}

func TestSpecsAreComplete(t *testing.T) {
	for _, s := range All() {
		assert.NotEmpty(t, s.Name)
		assert.NotEmpty(t, s.Description, s.Name)
		assert.NotZero(t, s.Colour.A, "%s has no colour", s.Name)
	}
	// A responder configuration shares its name's colour with the data plane of that name,
	// so a figure never shows one name in two colours.
	dps := DataPlanes().Catalogue()
	for _, r := range Responders() {
		if d, ok := dps.Lookup(r.Name); ok {
			assert.Equal(t, d.Colour, r.Colour, r.Name)
		}
	}
	for _, s := range DataPlanes() {
		dp := s.New()
		require.NotNil(t, dp)
		assert.Equal(t, s.Name, dp.Name(), "a spec makes the data plane it names")
	}
}

func TestParse(t *testing.T) {
	r := DataPlanes()
	got, err := r.Parse("all")
	require.NoError(t, err)
	assert.Equal(t, []string{"direct", "userspace", "ebpf", "nftables"}, got)
	got, err = r.Parse(" ebpf ,direct")
	require.NoError(t, err)
	assert.Equal(t, []string{"ebpf", "direct"}, got)
	for _, bad := range []string{"", "direct,", "bogus", "direct,direct"} {
		_, err := r.Parse(bad)
		assert.Error(t, err, bad)
	}
}
