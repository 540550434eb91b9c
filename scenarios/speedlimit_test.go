package scenarios

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/reports"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestSpeedLimitExperiments(t *testing.T) {
	s := Builtin()
	for _, name := range []string{"speedlimit-response", "speedlimit-droppoint", "speedlimit-scaling", "speedlimit-load"} {
		e, err := s.Select([]string{name})
		require.NoError(t, err)
		assert.Equal(t, []string{"userspace", "mixed", "ebpf"}, e[0].Configurations, name)
		for _, p := range e[0].ProfileNames() {
			_, err := e[0].Plan(p, Overrides{})
			assert.NoError(t, err, "%s/%s", name, p)
		}
	}
	// The full profile carries the thesis's parameters (reference.md §4).
	e, _ := s.Select([]string{"speedlimit-response"})
	p, err := e[0].Plan("full", Overrides{})
	require.NoError(t, err)
	assert.Equal(t, 96, p.Reps)
	rp := p.Params.(SpeedLimitResponseParams)
	assert.Equal(t, 120, rp.Clients)
	assert.Equal(t, 10000, rp.Requests)
	assert.LessOrEqual(t, 3*96*rp.Clients*rp.Keep, 300000, "a full run writes a few hundred thousand response_time rows")

	e, _ = s.Select([]string{"speedlimit-droppoint"})
	p, err = e[0].Plan("full", Overrides{})
	require.NoError(t, err)
	dp := p.Params.(SpeedLimitDropPointParams)
	assert.Equal(t, 1, dp.Step)
	assert.Equal(t, Duration(time.Second), dp.Pause)
	assert.Equal(t, 10000, dp.Requests)

	e, _ = s.Select([]string{"speedlimit-load"})
	p, err = e[0].Plan("quick", Overrides{Duration: 3 * time.Second})
	require.NoError(t, err)
	assert.Equal(t, Duration(3*time.Second), p.Params.(SpeedLimitLoadParams).PerRate, "--duration sets the time per rate")
}

func TestConfigurationsAreChecked(t *testing.T) {
	exp := func(meter, confs, params string) string {
		pr := `{"reps":1,"params":` + params + `}`
		c := ""
		if confs != "" {
			c = `,"configurations":` + confs
		}
		return `{"experiments":[{"name":"x","meter":"` + meter + `"` + c + `,"profiles":{"smoke":` + pr + `,"quick":` + pr + `,"full":` + pr + `}}]}`
	}
	ok := `{"clients":2,"requests":10}`
	cases := map[string]struct{ json, want string }{
		"missing":       {exp("speedlimit-response", "", ok), "needs configurations"},
		"unknown":       {exp("speedlimit-response", `["kernel"]`, ok), `unknown speed-limit server mode "kernel"`},
		"twice":         {exp("speedlimit-response", `["ebpf","ebpf"]`, ok), "listed twice"},
		"not a server":  {exp("connect-rtt", `["ebpf"]`, `{"count":1,"interval":"1s"}`), "deploys no server"},
		"bad xdp":       {exp("speedlimit-response", `["ebpf"]`, `{"clients":2,"requests":10,"xdp":"offload"}`), `unknown xdp mode "offload"`},
		"bad leave":     {exp("speedlimit-response", `["ebpf"]`, `{"clients":2,"requests":10,"leave":"end"}`), `leave "end" is unknown`},
		"no rates":      {exp("speedlimit-load", `["ebpf"]`, `{"per_rate":"1s"}`), "no rates"},
		"max < start":   {exp("speedlimit-droppoint", `["ebpf"]`, `{"start":10,"max":5,"requests":1}`), "max 5 is below start 10"},
		"no client set": {exp("speedlimit-scaling", `["ebpf"]`, `{"requests":1}`), "no client counts"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.json), "s.json")
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	_, err := Parse(strings.NewReader(exp("speedlimit-response", `["userspace","ebpf"]`, ok)), "s.json")
	assert.NoError(t, err)
}

// TestConfigurationJobs checks that an experiment with configurations runs once per
// configuration, whatever --dataplane says, on nodes with the direct data plane.
func TestConfigurationJobs(t *testing.T) {
	o := RunOptions{Experiments: []string{"latency", "speedlimit-response"}, Profile: "smoke", DataPlanes: []string{"direct"}}
	jobs, meta, err := o.prepare()
	require.NoError(t, err)
	var got []string
	for _, j := range jobs {
		got = append(got, j.plan.Experiment+"/"+j.name()+"/"+string(j.subject.Kind)+"/"+j.plane.Name)
	}
	assert.Equal(t, []string{"latency/direct/dataplane/direct", "speedlimit-response/userspace/responder/direct",
		"speedlimit-response/mixed/responder/direct", "speedlimit-response/ebpf/responder/direct"}, got)
	require.Len(t, meta.Experiments, 4)
	assert.Equal(t, "mixed", meta.Experiments[2].DataPlane)
	assert.Equal(t, "none", meta.XDPMode)

	recordSettings(meta, "speedlimit/userspace", map[string]string{"xdp_mode": "none"})
	assert.Equal(t, "none", meta.XDPMode)
	recordSettings(meta, "speedlimit/mixed", map[string]string{"xdp_mode": "native"})
	recordSettings(meta, "speedlimit/ebpf", map[string]string{"xdp_mode": "native"})
	assert.Equal(t, "native", meta.XDPMode)
	recordSettings(meta, "speedlimit/ebpf", map[string]string{"xdp_mode": "generic"})
	assert.Equal(t, "generic,native", meta.XDPMode)
	var names []string
	for _, d := range meta.DataPlanes {
		names = append(names, d.Name)
	}
	assert.Equal(t, []string{"direct", "speedlimit/userspace", "speedlimit/mixed", "speedlimit/ebpf"}, names)
	assert.Equal(t, "native,generic", meta.DataPlanes[3].Settings["xdp_mode"])
}

// TestSpeedLimitInterrupt checks that Ctrl-C during a speed-limit experiment stops it
// within a second or two, keeps what was measured and leaves nothing behind (the leak check
// of TestMain sees namespaces and BPF objects' file descriptors). The interrupt is timed from
// the end of the first configuration's warm-up, not from the start, which a loaded machine
// may spend on setting the nodes up.
func TestSpeedLimitInterrupt(t *testing.T) {
	testenv.RequirePrivileged(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var cancelled time.Time
	var mu sync.Mutex
	// 200 ms into the second configuration's warm-up (about 700 ms of requests): Ctrl-C
	// lands in a measurement in flight.
	onWarm := &onMessage{contains: "warm-up", do: func() {
		time.AfterFunc(200*time.Millisecond, func() {
			mu.Lock()
			cancelled = time.Now()
			mu.Unlock()
			cancel()
		})
	}}
	meta, err := Run(ctx, RunOptions{Experiments: []string{"speedlimit-load"}, Profile: "quick", Out: dir, Log: slog.New(onWarm)})
	assert.ErrorIs(t, err, ErrInterrupted)
	mu.Lock()
	defer mu.Unlock()
	require.False(t, cancelled.IsZero(), "the warm-up ran")
	assert.Less(t, time.Since(cancelled), 5*time.Second, "the run stops soon after the interrupt")
	require.NotNil(t, meta)
	assert.Equal(t, "interrupted", meta.Status)
	assert.Equal(t, "interrupted", meta.Experiments[0].Status)
	assert.Equal(t, "skipped", meta.Experiments[2].Status)
}

// onMessage is a slog handler that calls do once, for the first record whose message
// contains the given text, and discards every record.
type onMessage struct {
	contains string
	do       func()
	once     sync.Once
}

func (h *onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h *onMessage) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.contains) {
		h.once.Do(h.do)
	}
	return nil
}
func (h *onMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *onMessage) WithGroup(string) slog.Handler      { return h }

// TestSpeedLimitSmokeRun runs the four speed-limit experiments' smoke profiles end to end:
// three configurations each, results in the standard layout, the XDP mode in meta.json.
func TestSpeedLimitSmokeRun(t *testing.T) {
	testenv.RequirePrivileged(t)
	dir := t.TempDir()
	start := time.Now()
	meta, err := Run(context.Background(), RunOptions{
		Experiments: []string{"speedlimit-response", "speedlimit-droppoint", "speedlimit-scaling", "speedlimit-load"},
		Profile:     "smoke", Out: dir,
	})
	require.NoError(t, err)
	t.Logf("smoke profile of the speed-limit experiments: %v", time.Since(start).Round(time.Millisecond))
	assert.Equal(t, "done", meta.Status)
	assert.Equal(t, "native", meta.XDPMode)
	require.Len(t, meta.Experiments, 12)
	for _, e := range meta.Experiments {
		assert.Equal(t, "done", e.Status, "%s/%s: %s", e.Name, e.DataPlane, e.Error)
		_, err := os.Stat(reports.RawPath(dir, e.Name, e.DataPlane))
		assert.NoError(t, err)
	}
	rows, err := reports.ReadRaw(dir)
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, r := range rows {
		seen[r.Experiment+"/"+r.DataPlane+"/"+r.Metric+"/"+r.XUnit] = true
	}
	assert.True(t, seen["speedlimit-response/mixed/bpf_ns_per_pkt:speedlimit_xdp/"])
	assert.True(t, seen["speedlimit-response/ebpf/bpf_ns_per_pkt:speedlimit_xdp/"])
	assert.False(t, seen["speedlimit-response/userspace/bpf_ns_per_pkt:speedlimit_xdp/"], "no program, no run time")
	for _, conf := range []string{"userspace", "mixed", "ebpf"} {
		for _, want := range []string{
			"speedlimit-response/" + conf + "/response_time/",
			"speedlimit-response/" + conf + "/client_median/",
			"speedlimit-response/" + conf + "/client_stddev/",
			"speedlimit-response/" + conf + "/mean_request_time/",
			"speedlimit-response/" + conf + "/timeouts/",
			"speedlimit-response/" + conf + "/achieved_rate/",
			"speedlimit-response/" + conf + "/client_cpu/",
			"speedlimit-droppoint/" + conf + "/drop_point/",
			"speedlimit-scaling/" + conf + "/response_time/clients",
			"speedlimit-load/" + conf + "/response_time/req/s",
			"speedlimit-load/" + conf + "/achieved_rate/req/s",
			"speedlimit-load/" + conf + "/loss/req/s",
		} {
			assert.True(t, seen[want], want)
		}
	}
}
