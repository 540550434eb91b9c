package features

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
