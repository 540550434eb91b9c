package bench

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDurationJSON(t *testing.T) {
	var d Duration
	require.NoError(t, json.Unmarshal([]byte(`"1m30s"`), &d))
	assert.Equal(t, Duration(90*time.Second), d)
	b, err := json.Marshal(Duration(500 * time.Millisecond))
	require.NoError(t, err)
	assert.Equal(t, `"500ms"`, string(b), "written as meta.json always had it")
	assert.Equal(t, "1s", Duration(time.Second).String())
	for in, want := range map[string]string{
		`1000`:   "must be a string",
		`"soon"`: `duration "soon" is malformed`,
		`"-1s"`:  "must be positive",
		`"0s"`:   "must be positive",
	} {
		assert.ErrorContains(t, json.Unmarshal([]byte(in), &d), want, in)
	}
}

func TestRateJSON(t *testing.T) {
	var r Rate
	for in, want := range map[string]Rate{`64000`: 64e3, `"500k"`: 500e3, `"50M"`: 50e6, `"1.5G"`: 1.5e9, `"2Mbit/s"`: 2e6} {
		require.NoError(t, json.Unmarshal([]byte(in), &r), in)
		assert.Equal(t, want, r, in)
	}
	b, err := json.Marshal([]Rate{1e6, 2.5e9})
	require.NoError(t, err)
	assert.Equal(t, `[1000000,2500000000]`, string(b), "rates are written as numbers of bit/s")
	for in, want := range map[string]string{
		`0`:      "must be a positive number",
		`-5`:     "must be a positive number",
		`"fast"`: `rate "fast" is malformed`,
		`"1T"`:   `rate "1T" is malformed`,
		`true`:   "a rate must be a number",
	} {
		assert.ErrorContains(t, json.Unmarshal([]byte(in), &r), want, in)
	}
}

func TestConfigJSONLeavesFieldsOut(t *testing.T) {
	// Fields a scenario cannot set stay out of the JSON form, in both directions.
	b, err := json.Marshal(TCPThroughputConfig{Duration: Duration(time.Second), Interval: Duration(time.Second), BufSize: 4096})
	require.NoError(t, err)
	assert.Equal(t, `{"duration":"1s","interval":"1s"}`, string(b))
	b, err = json.Marshal(SpeedLimitResponseConfig{Port: 6000, Clients: 2, Requests: 3})
	require.NoError(t, err)
	assert.Equal(t, `{"clients":2,"requests":3}`, string(b), "the port is the server's, given with its parameters")
}
