package host

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCollect(t *testing.T) {
	h := Collect()
	assert.NotEmpty(t, h.Kernel)
	assert.Positive(t, h.Cores)
	assert.NotEmpty(t, h.Governor)
	assert.Contains(t, []string{"on", "off", "unknown"}, h.SMT)
	assert.Contains(t, []string{"on", "off", "unknown"}, h.Turbo)
}

// The JSON of Facts and Load is meta.json's schema: its keys must not change.
func TestJSONKeys(t *testing.T) {
	b, err := json.Marshal(Facts{Hostname: "h", Kernel: "k", Arch: "a", CPUModel: "c", Cores: 2, Governor: "g",
		SMT: "on", Turbo: "off", MemTotal: 3, GoVersion: "go"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"hostname":"h","kernel":"k","arch":"a","cpu_model":"c","cores":2,"governor":"g",
		"smt":"on","turbo":"off","mem_total_bytes":3,"go_version":"go"}`, string(b))
	b, err = json.Marshal(Facts{})
	require.NoError(t, err)
	assert.NotContains(t, string(b), "smt")
	b, err = json.Marshal(Load{LoadAvg1: 0.5, BusyPercent: 3, Sample: 1})
	require.NoError(t, err)
	assert.JSONEq(t, `{"loadavg1":0.5,"busy_percent":3,"sample_s":1}`, string(b))
}

func TestHygieneWarnsAboutTheClock(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // skip the load sample
	load, w := Hygiene(ctx, Facts{Governor: "powersave", SMT: "unknown", Turbo: "on", Cores: 2})
	require.NotNil(t, load)
	assert.Equal(t, 1.0, load.Sample)
	joined := ""
	for _, s := range w {
		joined += s + "\n"
	}
	assert.Contains(t, joined, "governor is powersave")
	assert.Contains(t, joined, "SMT state unknown")
	assert.Contains(t, joined, "turbo boost is on")
	assert.Contains(t, joined, "other load unknown: context canceled")

	_, w = Hygiene(ctx, Facts{Governor: "performance", SMT: "off", Turbo: "off"})
	assert.Equal(t, []string{"other load unknown: context canceled"}, w)
}

func TestCPUTimes(t *testing.T) {
	busy, total, err := cpuTimes()
	require.NoError(t, err)
	assert.Positive(t, total)
	assert.LessOrEqual(t, busy, total)
}

func TestToolVersionsSkipsMissingTools(t *testing.T) {
	v := ToolVersions("edgebpf-no-such-tool", "go")
	assert.NotContains(t, v, "edgebpf-no-such-tool")
}
