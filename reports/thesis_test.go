package reports

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/subjects"
)

// The theses' numbers are kept in base units for the figures; the tables must still print
// them exactly as the theses did.
func TestThesisValuesPrintAsTheThesesDid(t *testing.T) {
	want := map[string][]string{
		expLatency:    {"4.66 ms", "4.14 ms", "11.16 %"},
		expJitter:     {"0.0326 ms", "0.0082 ms", "74.85 %"},
		expThroughput: {"0.26 Gbit/s", "21.20 Gbit/s", "8053.85 %"},
		expResources:  {"20.19 %", "5.39 %", "73.30 %"},
	}
	for _, r := range riegel51 {
		assert.Equal(t, want[r.exp], riegelCells(r.exp, r.metric, r.x), r.exp)
	}
	assert.Equal(t, []string{"–", "–", "–"}, riegelCells(expBottleneck, "loss", ""))
	assert.Equal(t, "knee near 250 Mbit/s: loss 1.6 % at 250, 45 % at 500 Mbit/s", thesisBottleneck("userspace"))
	assert.Equal(t, "not measured", thesisBottleneck("ebpf"))
	assert.Equal(t, []string{"1.8868 / 1.6026 / 2.3739 / 0.1608 ms", "baseline"}, thesisCells(thesis54, "userspace"))
	assert.Equal(t, []string{"1.2010 / 1.2011 / 0.0111 ms", "1.46× (text: 1.76×)"}, thesisCells(thesis55, "mixed"))
	assert.Equal(t, []string{"270 / 271.7 / 256 / 297", "1.94× (text, on means: 1.95×)"}, thesisCells(thesis56, "ebpf"))
	assert.Equal(t, []string{"–", "–"}, thesisCells(thesis56, "direct"))
	m, ok := thesisMedian(thesis56, "mixed")
	assert.True(t, ok)
	assert.Equal(t, 265.0, m)
}

// The recorded curve is eq. 5.1 (computed here independently) and the program's answers
// within the 1 km/h the thesis's requirement allows, for every count from 0 to 150.
func TestRecordedSpeedLimitCurve(t *testing.T) {
	rows, err := speedLimitCurve()
	if !assert.NoError(t, err) {
		return
	}
	assert.Len(t, rows, 151)
	for i, r := range rows {
		assert.Equal(t, i, r.cars)
		want := 120.0
		switch {
		case r.cars >= 100:
			want = 30
		case r.cars >= 30:
			want = 45*math.Cos(math.Pi/70*float64(r.cars-30)) + 75
		}
		assert.InDelta(t, want, r.formula, 1e-4, "cars %d", r.cars)
		assert.InDelta(t, r.formula, r.kernel, 0.5+1e-9, "cars %d: the kernel rounds the formula", r.cars)
	}
}

func TestPluralAndFooter(t *testing.T) {
	assert.Equal(t, "1 run", plural(1, "run"))
	assert.Equal(t, "0 runs", plural(0, "run"))
	assert.Equal(t, "30 runs", plural(30, "run"))
	assert.Equal(t, "edgebpf · meta.json missing", figureFooter(nil))
	m := &Meta{Version: "v1.2.0", Commit: "0123456789abcdef0123", Profile: "full", Started: time.Date(2026, 11, 30, 3, 4, 5, 0, time.UTC)}
	assert.Equal(t, "edgebpf v1.2.0 (0123456789ab) · profile full · 2026-11-30 03:04 UTC", figureFooter(m))
}

// A standard deviation larger than the median would draw a bar below zero: it stops at
// zero, and the caption says so.
func TestClientBarsStopAtZero(t *testing.T) {
	dir := t.TempDir()
	rows := "experiment,dataplane,rep,seq,t_s,x,x_unit,metric,value,unit\n"
	for c := range 3 {
		rows += fmt.Sprintf("speedlimit-response,ebpf,1,%d,0,,,client_median,2e-06,s\n", c)
		rows += fmt.Sprintf("speedlimit-response,ebpf,1,%d,0,,,client_stddev,9e-06,s\n", c)
	}
	p := RawPath(dir, expSLResponse, "ebpf")
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(rows), 0o644))
	ds, err := LoadDataset(dir, subjects.All())
	require.NoError(t, err)
	require.NoError(t, ds.Err)
	f := speedlimitClients(ds)[0]
	require.NotNil(t, f.p, f.skip)
	assert.Contains(t, f.caption, "stop at zero")
	assert.Contains(t, f.caption, "triangle at the top edge", "the thesis's 1.27 ms is far above 2 µs")
	assert.Zero(t, f.p.Y.Min)
	_, _, err = render(f.p, "footer")
	assert.NoError(t, err)
}
