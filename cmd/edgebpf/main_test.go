package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/reports"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// edgebpf runs the command line in-process and returns its exit code and output.
func edgebpf(ctx context.Context, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestBadInputIsOneSentenceAndNonZero(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run", "latncy"}, `unknown experiment "latncy"`},
		{[]string{"run", "--dataplane", "bpf"}, `unknown data plane "bpf": choose from direct`},
		{[]string{"run", "--profile", "fast"}, `unknown profile "fast"`},
		{[]string{"run", "--duration", "ten"}, `--duration: duration "ten" is malformed`},
		{[]string{"run", "--rates", "1M,,5M"}, "--rates: rate list"},
		{[]string{"run", "--reps", "-2"}, "--reps -2 must be positive"},
		{[]string{"run", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"run", "--scenario", "/nonexistent.json"}, "--scenario: open /nonexistent.json"},
		{[]string{"node", "--instances", "0"}, "--instances 0 must be at least 1"},
		{[]string{"node", "--services", "1", "--api", "127.0.0.1:99999"}, "--api 127.0.0.1:99999"},
		{[]string{"node", "--api", "localhost"}, "--api localhost: address localhost: missing port in address"},
		{[]string{"report", "/nonexistent"}, "an edgebpf results directory"},
		{[]string{"exec", "svc0", "ls"}, "give the instance, then --"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
	}
	for _, c := range cases {
		code, _, stderr := edgebpf(context.Background(), c.args...)
		assert.NotZero(t, code, "%v", c.args)
		assert.Contains(t, stderr, c.want, "%v", c.args)
		assert.NotContains(t, stderr, "goroutine", "no stack traces")
		assert.LessOrEqual(t, strings.Count(strings.TrimSpace(stderr), "\n"), 1, "one sentence: %q", stderr)
	}
}

func TestUnwritableOutLeavesNothing(t *testing.T) {
	testenv.RequirePrivileged(t)
	code, _, stderr := edgebpf(context.Background(), "run", "latency", "--profile", "smoke", "--out", "/proc/edgebpf-results")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "results directory /proc/edgebpf-results cannot be created")
}

func TestListNamesEverything(t *testing.T) {
	code, out, _ := edgebpf(context.Background(), "list")
	require.Zero(t, code)
	for _, w := range []string{"latency", "jitter", "throughput", "bottleneck", "resources", "direct", "smoke, ci, quick, full"} {
		assert.Contains(t, out, w)
	}
}

func TestSmokeRunWritesResults(t *testing.T) {
	testenv.RequirePrivileged(t)
	dir := t.TempDir()
	code, out, stderr := edgebpf(context.Background(), "run", "all", "--profile", "smoke", "--out", dir)
	require.Zero(t, code, stderr)
	assert.Contains(t, out, "status done")
	assert.Contains(t, stderr, "[6/18] resources on direct", "progress is shown")
	assert.Contains(t, stderr, "[18/18] speedlimit-load on ebpf", "configurations run as data planes")

	meta, err := reports.ReadMeta(dir)
	require.NoError(t, err)
	assert.Equal(t, "done", meta.Status)
	assert.Equal(t, "smoke", meta.Profile)
	assert.NotEmpty(t, meta.Host.Kernel)
	require.Len(t, meta.Experiments, 18)
	for _, e := range meta.Experiments {
		assert.Equal(t, "done", e.Status, e.Name)
		_, err := os.Stat(reports.RawPath(dir, e.Name, e.DataPlane))
		assert.NoError(t, err)
	}
	entries, err := reports.ReadSummary(dir)
	require.NoError(t, err)
	got := map[string]reports.Entry{}
	for _, e := range entries {
		got[e.Experiment+"/"+e.Metric+"/"+string(e.X)] = e
	}
	assert.Positive(t, got["latency/rtt/"].Median)
	assert.Zero(t, got["latency/loss/"].Median)
	assert.Positive(t, got["throughput/throughput/"].Median)
	assert.GreaterOrEqual(t, got["jitter/jitter/"].Median, 0.0)
	assert.Zero(t, got["jitter/loss/"].Max, "no loss at 1 Mbit/s")
	assert.Zero(t, got["bottleneck/loss/1000000"].Max, "no loss at 1 Mbit/s")
	assert.Positive(t, got["resources/cpu/load"].N)
	assert.Positive(t, got["resources/ram/idle"].Median)

	// report rebuilds the same summary from raw data alone.
	before, _ := os.ReadFile(filepath.Join(dir, "summary.json"))
	code, _, stderr = edgebpf(context.Background(), "report", dir)
	require.Zero(t, code, stderr)
	after, _ := os.ReadFile(filepath.Join(dir, "summary.json"))
	assert.JSONEq(t, string(before), string(after))
}

func TestInterruptKeepsMeasuredAndCleansUp(t *testing.T) {
	testenv.RequirePrivileged(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(2500*time.Millisecond, cancel)
	start := time.Now()
	code, _, stderr := edgebpf(ctx, "run", "throughput", "latency", "--profile", "smoke", "--duration", "30s", "--out", dir)
	took := time.Since(start)
	assert.Equal(t, 130, code, stderr)
	assert.Less(t, took, 6*time.Second, "the run stops within a second or two of the interrupt")
	assert.Contains(t, stderr, "kept what was measured")
	meta, err := reports.ReadMeta(dir)
	require.NoError(t, err)
	assert.Equal(t, "interrupted", meta.Status)
	assert.Equal(t, "interrupted", meta.Experiments[0].Status)
	assert.Equal(t, "skipped", meta.Experiments[1].Status)
	rows, err := reports.ReadRaw(dir)
	require.NoError(t, err)
	assert.NotEmpty(t, rows, "intervals measured before the interrupt are kept")
}

func TestNodeStatusExec(t *testing.T) {
	testenv.RequirePrivileged(t)
	ready := filepath.Join(t.TempDir(), "node.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		code, _, _ := edgebpf(ctx, "node", "--names", "alpha,beta", "--instances", "2", "--ready-file", ready, "--bpf-stats")
		done <- code
	}()
	require.Eventually(t, func() bool { _, err := os.Stat(ready); return err == nil }, 10*time.Second, 20*time.Millisecond)

	code, out, stderr := edgebpf(context.Background(), "status", "--json")
	require.Zero(t, code, stderr)
	var st struct {
		Nodes []struct {
			Name, Namespace, Bridge, Dataplane, API string
			Services                                []struct {
				Name      string `json:"name"`
				ServiceIP string `json:"service_ip"`
				Instances []struct {
					Name       string `json:"name"`
					Namespace  string `json:"namespace"`
					NSIP       string `json:"ns_ip"`
					InstanceIP string `json:"instance_ip"`
					Veth       string `json:"veth"`
				} `json:"instances"`
			} `json:"services"`
		} `json:"nodes"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	var beta1NSIP, nodeNS, api string
	for _, n := range st.Nodes {
		for _, s := range n.Services {
			if s.Name == "beta" && len(s.Instances) == 2 {
				beta1NSIP, nodeNS, api = s.Instances[1].NSIP, n.Namespace, n.API
				assert.True(t, strings.HasPrefix(s.ServiceIP, "10.30."))
				assert.NotEmpty(t, s.Instances[1].Veth)
			}
		}
	}
	require.NotEmpty(t, beta1NSIP, "status lists beta with two instances: %s", out)

	// The node's eBPF manager answers on the socket status reports.
	require.NotEmpty(t, api)
	client := unixClient(api)
	resp, err := client.Post("http://localhost/ebpf", "application/json", strings.NewReader(`{"name":"counter"}`))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	assert.Contains(t, string(body), `"attached"`)

	// exec runs inside the instance: it sees its own namespace IP.
	code, out, stderr = edgebpf(context.Background(), "exec", "beta/1", "--", "ip", "-o", "-4", "addr", "show")
	require.Zero(t, code, stderr)
	assert.Contains(t, out, beta1NSIP+"/")
	// With --bpf-stats the API shows the counter's programs running for a datagram between
	// two instances.
	code, _, stderr = edgebpf(context.Background(), "exec", "beta/0", "--", "bash", "-c", "echo x > /dev/udp/"+beta1NSIP+"/9")
	require.Zero(t, code, stderr)
	resp, err = client.Get("http://localhost/ebpf/1")
	require.NoError(t, err)
	var mod struct {
		Programs []struct {
			Hook     string `json:"hook"`
			RunCount uint64 `json:"run_count"`
		} `json:"programs"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&mod))
	resp.Body.Close()
	var runs uint64
	for _, p := range mod.Programs {
		runs += p.RunCount
	}
	assert.Positive(t, runs, "the counter's programs ran and were counted: %+v", mod.Programs)

	code, _, _ = edgebpf(context.Background(), "exec", "beta/1", "--", "false")
	assert.Equal(t, 1, code, "the command's exit code is passed on")
	code, _, stderr = edgebpf(context.Background(), "exec", "gamma", "--", "true")
	assert.NotZero(t, code)
	assert.Contains(t, stderr, "no instance 0 of service gamma")

	cancel()
	select {
	case code := <-done:
		assert.Zero(t, code)
	case <-time.After(10 * time.Second):
		t.Fatal("node did not stop")
	}
	_, err = os.Stat(filepath.Join("/run/netns", nodeNS))
	assert.True(t, os.IsNotExist(err), "the node's namespace is removed on exit")
	_, err = os.Stat(ready)
	assert.True(t, os.IsNotExist(err), "the ready file is removed on exit")
}
