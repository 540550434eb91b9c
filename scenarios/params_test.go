package scenarios

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/params.golden.json from the current code")

// TestRecordedParams decodes every experiment and profile of the built-in suite, and of
// testdata/allparams.json (every parameter of every meter set), with and without the
// command line's overrides, and compares the parameters meta.json records with
// testdata/params.golden.json byte for byte: keys, their order and value formats ("1s",
// rates as numbers of bit/s, omitted fields) must not change.
func TestRecordedParams(t *testing.T) {
	overrides := map[string]Overrides{
		"":           {},
		"+overrides": {Reps: 2, Duration: 3 * time.Second, Rates: []float64{1e6, 2e9}, BPFStats: true},
	}
	f, err := os.Open(filepath.Join("testdata", "allparams.json"))
	require.NoError(t, err)
	defer f.Close()
	all, err := Parse(f, "allparams.json")
	require.NoError(t, err)
	got := map[string]json.RawMessage{}
	for prefix, s := range map[string]*Suite{"": Builtin(), "all:": all} {
		for _, e := range s.Experiments {
			for _, p := range e.ProfileNames() {
				for suffix, o := range overrides {
					plan, err := e.Plan(p, o)
					require.NoError(t, err, "%s%s/%s%s", prefix, e.Name, p, suffix)
					b, err := json.Marshal(plan.Params)
					require.NoError(t, err)
					got[prefix+e.Name+"/"+p+suffix] = b
				}
			}
		}
	}
	golden := filepath.Join("testdata", "params.golden.json")
	if *update {
		b, err := json.MarshalIndent(got, "", "  ")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(golden, append(b, '\n'), 0o644))
	}
	b, err := os.ReadFile(golden)
	require.NoError(t, err)
	var want map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &want))
	assert.Len(t, got, len(want))
	for k, w := range want {
		var compact bytes.Buffer
		require.NoError(t, json.Compact(&compact, w))
		assert.Equal(t, compact.String(), string(got[k]), k)
	}
}
