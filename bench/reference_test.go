package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/stats"
)

// refRequireTools skips t when iperf3 or sockperf is missing, or fails it when
// EDGEBPF_REQUIRE_PRIVILEGED=1 (CI installs both).
func refRequireTools(t *testing.T) {
	t.Helper()
	if _, err := lookTools("iperf3", "sockperf"); err != nil {
		if os.Getenv(testenv.RequireEnv) == "1" {
			t.Fatalf("reference test cannot run: %v (%s=1)", err, testenv.RequireEnv)
		}
		t.Skipf("skipping reference test: %v", err)
	}
}

// refNothingLeft checks that nothing listens on, or is bound to, the ports of cfg and that
// no child process and no sockperf log is left.
func refNothingLeft(t *testing.T, cfg ReferenceConfig, logsBefore []string) {
	t.Helper()
	for i := range refPorts {
		for _, udp := range []bool{false, true} {
			ok, err := listeningHere(listenPort{port: cfg.port(i), udp: udp})
			require.NoError(t, err)
			assert.False(t, ok, "port %d (udp %v) still in use", cfg.port(i), udp)
		}
	}
	assert.Empty(t, refChildren(t), "tool processes left running")
	assert.ElementsMatch(t, logsBefore, refSockperfLogs(t), "sockperf logs are removed")
}

// refChildren lists the live (not zombie) child processes of the test as "pid comm".
func refChildren(t *testing.T) []string {
	dirs, err := filepath.Glob("/proc/[0-9]*/stat")
	require.NoError(t, err)
	var out []string
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces, so cut at the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == os.Getpid() {
			out = append(out, s[:i+1])
		}
	}
	return out
}

func refSockperfLogs(t *testing.T) []string {
	m, err := filepath.Glob(filepath.Join(os.TempDir(), "edgebpf-sockperf-"+strconv.Itoa(os.Getpid())+"-*.csv")) // this process's only
	require.NoError(t, err)
	return m
}

func refByMetric(samples []stats.Sample) map[string][]float64 {
	out := map[string][]float64{}
	for _, s := range samples {
		out[s.Metric.Name] = append(out[s.Metric.Name], s.Value)
	}
	return out
}

// TestReferenceOnly checks that only keeps a round to the quantities it names, and that the
// second round runs ours before the tool.
func TestReferenceOnly(t *testing.T) {
	refRequireTools(t)
	cfg := ReferenceConfig{Port: 25341, Rounds: 2, Duration: Duration(time.Second), Only: []string{RefJitter}}
	samples, err := Reference(context.Background(), tcpLoopback(), cfg)
	require.NoError(t, err)
	var names []string
	for name := range refByMetric(samples) {
		names = append(names, name)
	}
	assert.ElementsMatch(t, []string{"jitter:iperf3", "jitter:edgebpf", "jitter:edgebpf-kernel", "loss:iperf3", "loss:edgebpf", "loss:edgebpf-kernel"}, names)
	var order []string
	for _, s := range samples {
		if s.Metric.Name == "jitter:iperf3" || s.Metric.Name == "jitter:edgebpf" {
			if len(order) == 0 || order[len(order)-1] != s.Metric.Name {
				order = append(order, s.Metric.Name)
			}
		}
	}
	assert.Equal(t, []string{"jitter:iperf3", "jitter:edgebpf", "jitter:iperf3"}, order, "tool, ours | ours, tool")
}

func TestReferenceLoopback(t *testing.T) {
	refRequireTools(t)
	tcpCheckLeaks(t)
	logs := refSockperfLogs(t)
	cfg := ReferenceConfig{Port: 25301, Rounds: 1, Duration: Duration(time.Second), Interval: Duration(500 * time.Millisecond),
		PingCount: 20, RRDuration: Duration(time.Second), BusyCount: 200}
	samples, err := Reference(context.Background(), tcpLoopback(), cfg)
	require.NoError(t, err)
	refNothingLeft(t, cfg, logs)

	m := refByMetric(samples)
	rtts := []string{
		"rtt:udp-rr-busy:sockperf", "rtt:udp-rr-busy:edgebpf", "rtt:tcp-rr-busy:sockperf", "rtt:tcp-rr-busy:edgebpf",
		"rtt:udp-rr-paced:sockperf", "rtt:udp-rr-paced:edgebpf", "rtt:tcp-rr-paced:sockperf", "rtt:tcp-rr-paced:edgebpf",
		"rtt:tcp-rr-paced:edgebpf-connect",
	}
	for _, name := range append([]string{"throughput:iperf3", "throughput:edgebpf"}, rtts...) {
		require.NotEmpty(t, m[name], name)
		for _, v := range m[name] {
			assert.Positive(t, v, name)
		}
	}
	assert.Len(t, m["rtt:tcp-rr-paced:edgebpf-connect"], 20)
	assert.Len(t, m["rtt:udp-rr-paced:edgebpf"], 20)
	assert.Len(t, m["rtt:tcp-rr-busy:edgebpf"], 200)
	assert.Len(t, m["throughput:iperf3"], 2, "two intervals of 500ms")
	assert.Len(t, m["throughput:edgebpf"], 2)
	for _, name := range []string{"jitter:iperf3", "jitter:edgebpf", "jitter:edgebpf-kernel", "loss:iperf3", "loss:edgebpf", "loss:edgebpf-kernel"} {
		n := 1
		if strings.HasPrefix(name, "jitter:") {
			n = 2 // one per interval of 500ms, iperf3's and ours alike
		}
		require.Len(t, m[name], n, name)
		assert.GreaterOrEqual(t, m[name][0], 0.0, name)
	}
	assert.Len(t, m, 17, "no other metrics: %v", m)
	for _, s := range samples {
		want, ok := stats.Lookup(s.Metric.Name)
		require.True(t, ok)
		assert.Equal(t, want, s.Metric, "unit and direction of the base metric")
		assert.GreaterOrEqual(t, s.T, 0.0)
	}
	// Seq numbers each metric's samples in order, and the runs alternate: tool, ours, tool,
	// ours, ... (metric by metric in the order a round runs them).
	seen := map[string]int{}
	var order []string
	for _, s := range samples {
		assert.Equal(t, seen[s.Metric.Name], s.Seq, s.Metric.Name)
		seen[s.Metric.Name]++
		if !strings.HasPrefix(s.Metric.Name, "loss:") &&
			(len(order) == 0 || order[len(order)-1] != s.Metric.Name) {
			order = append(order, s.Metric.Name)
		}
	}
	want := append(append([]string{"throughput:iperf3", "throughput:edgebpf"}, rtts...), "jitter:iperf3", "jitter:edgebpf", "jitter:edgebpf-kernel")
	assert.Equal(t, want, order)
	for i := 1; i < len(samples); i++ {
		if samples[i].Metric.Name != samples[i-1].Metric.Name {
			assert.GreaterOrEqual(t, samples[i].T, samples[i-1].T, "a later run comes later")
		}
	}
}

func TestReferenceCancel(t *testing.T) {
	refRequireTools(t)
	tcpCheckLeaks(t)
	logs := refSockperfLogs(t)
	cfg := ReferenceConfig{Port: 25321, Rounds: 1, Duration: Duration(2 * time.Second)}
	for _, after := range []time.Duration{300 * time.Millisecond, 3 * time.Second} {
		// The first cancel hits the iperf3 client, the second TCPThroughput or sockperf.
		t.Run(after.String(), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var cancelled time.Time
			time.AfterFunc(after, func() { cancelled = time.Now(); cancel() })
			samples, err := Reference(ctx, tcpLoopback(), cfg)
			require.ErrorIs(t, err, context.Canceled)
			assert.Less(t, time.Since(cancelled), 1500*time.Millisecond, "returns about a second after the cancel")
			refNothingLeft(t, cfg, logs)
			if after > time.Duration(cfg.Duration) {
				assert.NotEmpty(t, refByMetric(samples)["throughput:iperf3"], "samples so far are kept")
			}
		})
	}
}

func TestReferenceMissingTools(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Reference(context.Background(), tcpLoopback(), ReferenceConfig{})
	require.Error(t, err)
	assert.Equal(t, "reference: iperf3 and sockperf not found in PATH: install the reference tools with apt-get install iperf3 sockperf", err.Error())
}

func TestReferenceToolFailures(t *testing.T) {
	// A server that exits at once: the error says so, with what it printed.
	_, err := startServer(context.Background(), Current{}, 25330, "/bin/sh", "-c", "echo cannot bind >&2; exit 3")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exited before listening on port 25330: exit status 3 (cannot bind)")

	// A namespace that cannot be entered.
	_, err = startServer(context.Background(), tcpFailingNS{}, 25330, "/bin/true")
	assert.ErrorIs(t, err, os.ErrPermission)

	// A client that fails.
	out, err := runClient(context.Background(), Current{}, nil, "/bin/sh", "-c", "echo oops; exit 2")
	require.Error(t, err)
	assert.Equal(t, "sh -c: exit status 2 (oops)", err.Error())
	assert.Equal(t, "oops\n", string(out))

	// A server that never listens is killed when ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	srv, err := startServer(ctx, Current{}, 25331, "/bin/sh", "-c", "exec sleep 30")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Nil(t, srv)
	assert.Empty(t, refChildren(t))

	if _, err := exec.LookPath("python3"); err == nil {
		// A server that listens is ready; stop kills it.
		srv, err := startServer(context.Background(), Current{}, 25332, "python3", "-c",
			"import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 25332)); s.listen(); time.sleep(60)")
		require.NoError(t, err)
		_, err = startServer(context.Background(), Current{}, 25332, "/bin/true")
		assert.ErrorContains(t, err, "port 25332 is already in use")
		srv.stop()
		assert.Empty(t, refChildren(t))
	}
}

func TestReferenceValidate(t *testing.T) {
	assert.NoError(t, ReferenceConfig{}.Validate(), "zero values take defaults")
	assert.NoError(t, ReferenceConfig{Rounds: 10, Duration: Duration(20 * time.Second), PingCount: 50, Interval: Duration(250 * time.Millisecond)}.Validate())
	for _, tc := range []struct {
		cfg  ReferenceConfig
		want string
	}{
		{ReferenceConfig{Port: 65533}, "port 65533 leaves no room"},
		{ReferenceConfig{Rounds: -1}, "rounds -1 is out of range"},
		{ReferenceConfig{Duration: Duration(-time.Second)}, "duration -1s is negative"},
		{ReferenceConfig{Duration: Duration(1500 * time.Millisecond)}, "duration 1.5s is not a whole number of seconds"},
		{ReferenceConfig{Duration: Duration(500 * time.Millisecond)}, "duration 500ms is not a whole number of seconds"},
		{ReferenceConfig{Interval: Duration(-time.Second)}, "interval -1s is negative"},
		{ReferenceConfig{Interval: Duration(50 * time.Millisecond)}, "give at least 100ms"},
		{ReferenceConfig{Interval: Duration(6 * time.Second)}, "interval 6s is longer than duration 5s"},
		{ReferenceConfig{JitterDuration: Duration(2500 * time.Millisecond)}, "jitter duration 2.5s is not a whole number of seconds"},
		{ReferenceConfig{JitterInterval: Duration(50 * time.Millisecond)}, "jitter interval 50ms is shorter than iperf3 reports"},
		{ReferenceConfig{JitterDuration: Duration(2 * time.Second), JitterInterval: Duration(3 * time.Second)}, "jitter interval 3s is longer than jitter duration 2s"},
		{ReferenceConfig{JitterDuration: Duration(time.Second), Interval: Duration(2 * time.Second), Duration: Duration(5 * time.Second)}, "jitter duration 1s is shorter than the interval 2s"},
		{ReferenceConfig{PingCount: -1}, "ping count -1 is negative"},
		{ReferenceConfig{PingInterval: Duration(2 * time.Second)}, "ping interval 2s is out of range"},
		{ReferenceConfig{JitterRate: -1}, "jitter rate -1 bit/s is not a positive number"},
		{ReferenceConfig{JitterRate: 1000, Duration: Duration(time.Second)}, "sends not even one 1400-byte packet in 1s"},
		{ReferenceConfig{Size: 8}, "size 8 bytes cannot hold"},
		{ReferenceConfig{RRDuration: Duration(1500 * time.Millisecond)}, "rr duration 1.5s is not a whole number of seconds"},
		{ReferenceConfig{BusyCount: -1}, "busy count -1 is out of range"},
		{ReferenceConfig{Only: []string{"jitter", "latency"}}, `quantity "latency" in only is unknown: give some of throughput, rtt, jitter`},
	} {
		err := tc.cfg.Validate()
		require.Error(t, err, "%+v", tc.cfg)
		assert.Contains(t, err.Error(), tc.want)
		assert.True(t, strings.HasPrefix(err.Error(), "reference: "), err.Error())
	}
	err := ReferenceConfig{Rounds: -1, PingCount: -1}.Validate()
	require.Error(t, err)
	assert.Len(t, strings.Split(err.Error(), "\n"), 2, "one sentence per bad field")
	err = ReferenceConfig{Duration: Duration(1500 * time.Millisecond), Interval: Duration(50 * time.Millisecond)}.Validate()
	require.Error(t, err)
	assert.Len(t, strings.Split(err.Error(), "\n"), 2, "inherited jitter fields repeat no sentence: %v", err)
	assert.NoError(t, ReferenceConfig{JitterDuration: Duration(10 * time.Second), JitterInterval: Duration(250 * time.Millisecond)}.Validate())
	d := ReferenceConfig{Duration: Duration(3 * time.Second), Interval: Duration(500 * time.Millisecond)}.withDefaults()
	assert.Equal(t, Duration(3*time.Second), d.jitterConfig(RxStampsUser).Duration, "jitter duration defaults to the duration")
	assert.Equal(t, Duration(500*time.Millisecond), d.jitterConfig(RxStampsUser).Interval, "jitter interval defaults to the interval")

	_, err = Reference(context.Background(), Endpoints{}, ReferenceConfig{})
	assert.ErrorContains(t, err, "target address is not set")
	ep := tcpLoopback()
	ep.Target = netip.MustParseAddr("::1")
	_, err = Reference(context.Background(), ep, ReferenceConfig{})
	assert.ErrorContains(t, err, "is not an IPv4 address")
}

func TestReferenceMetrics(t *testing.T) {
	for _, m := range []stats.Metric{refThroughputIperf3, refThroughputOurs, refRTTConnect,
		refJitterIperf3, refJitterOurs, refLossIperf3, refLossOurs} {
		want, ok := stats.Lookup(m.Name)
		require.True(t, ok, m.Name)
		assert.Equal(t, want, m)
	}
}

func refFixture(t testing.TB, name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseIperf3TCP(t *testing.T) {
	res, err := parseIperf3(refFixture(t, "iperf3-tcp.json"))
	require.NoError(t, err)
	assert.Nil(t, res.UDP)
	require.Len(t, res.Intervals, 3)
	assert.Equal(t, iperf3Interval{End: 1.00058, BitsPerSecond: 20257225837.180943}, res.Intervals[0])
	assert.Equal(t, 19822745163.657825, res.Intervals[1].BitsPerSecond)
	assert.Equal(t, 20482990445.064453, res.Intervals[2].BitsPerSecond)
}

func TestParseIperf3UDP(t *testing.T) {
	res, err := parseIperf3(refFixture(t, "iperf3-udp.json"))
	require.NoError(t, err)
	require.NotNil(t, res.UDP)
	assert.InDelta(t, 0.00957942969481195e-3, res.UDP.Jitter, 1e-18, "jitter_ms in seconds")
	assert.Zero(t, res.UDP.LostPercent)
	assert.Len(t, res.Intervals, 2)
}

func TestParseIperf3ServerIntervals(t *testing.T) {
	out := `{"intervals":[],"end":{"streams":[{"udp":{"jitter_ms":0.5,"lost_percent":0}}]},
		"server_output_json":{"intervals":[{"sum":{"end":1.0,"seconds":1,"jitter_ms":0.2,"omitted":false}},
		{"sum":{"end":2.0,"seconds":1,"jitter_ms":0.5,"omitted":false}}]}}`
	res, err := parseIperf3([]byte(out))
	require.NoError(t, err)
	require.NotNil(t, res.UDP)
	assert.Equal(t, []iperf3Jitter{{End: 1, Seconds: 1, Jitter: 0.2e-3}, {End: 2, Seconds: 1, Jitter: 0.5e-3}}, res.UDP.Intervals)
	_, err = parseIperf3([]byte(strings.Replace(out, `"jitter_ms":0.2,`, "", 1)))
	assert.ErrorContains(t, err, "server_output_json interval 0")
}

func TestParseIperf3Error(t *testing.T) {
	_, err := parseIperf3(refFixture(t, "iperf3-error.json"))
	var ie *iperf3Error
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, "iperf3: unable to connect to server: Connection refused", err.Error())
	// The tool's own message wins over its exit status.
	assert.Equal(t, err, toolResult("iperf3", errors.New("exit status 1"), err))
}

func TestParseIperf3Malformed(t *testing.T) {
	tcp := refFixture(t, "iperf3-tcp.json")
	for name, in := range map[string]string{
		"empty":            "",
		"not json":         "iperf3: error - unable to connect",
		"truncated":        string(tcp[:len(tcp)/2]),
		"sum missing":      `{"intervals":[{"streams":[]}]}`,
		"bits missing":     `{"intervals":[{"sum":{"end":1}}]}`,
		"negative bits":    `{"intervals":[{"sum":{"end":1,"bits_per_second":-5}}]}`,
		"wrong type":       `{"intervals":[{"sum":{"end":"1","bits_per_second":5}}]}`,
		"udp without loss": `{"end":{"streams":[{"udp":{"jitter_ms":0.1}}]}}`,
		"loss above 100":   `{"end":{"streams":[{"udp":{"jitter_ms":0.1,"lost_percent":101}}]}}`,
		"intervals object": `{"intervals":{}}`,
	} {
		_, err := parseIperf3([]byte(in))
		assert.Error(t, err, name)
	}
	res, err := parseIperf3([]byte(`{"intervals":[{"sum":{"end":1,"bits_per_second":5,"omitted":true}},{"sum":{"end":2,"bits_per_second":7}}]}`))
	require.NoError(t, err)
	assert.Equal(t, []iperf3Interval{{End: 2, BitsPerSecond: 7}}, res.Intervals, "omitted intervals are left out")
}

func TestParseSockperfLog(t *testing.T) {
	pkts, err := parseSockperfLog(refFixture(t, "sockperf-full-log.csv"))
	require.NoError(t, err)
	require.Len(t, pkts, 55)
	assert.Equal(t, sockperfPacket{Seq: 0, TxTime: 2.410849750, RTT: 229.400e-6}, pkts[0])
	assert.Equal(t, 54, pkts[54].Seq)
	assert.InDelta(t, 177.193e-6, pkts[54].RTT, 1e-15)
}

func TestParseSockperfLogMalformed(t *testing.T) {
	const hdr = sockperfLogHeader + "\n"
	for name, in := range map[string]string{
		"empty":          "",
		"no table":       "sockperf: ERROR: Can`t connect socket (errno=111 Connection refused)\n",
		"no messages":    hdr + "------------------------------\n",
		"three fields":   hdr + "0, 1.0, 1.1\n",
		"not a number":   hdr + "0, 1.0, 1.1, fast\n",
		"negative rtt":   hdr + "0, 1.0, 1.1, -3.2\n",
		"nan rtt":        hdr + "0, 1.0, 1.1, NaN\n",
		"bad packet":     hdr + "x, 1.0, 1.1, 3.2\n",
		"bad later line": hdr + "0, 1.0, 1.1, 3.2\n1, 1.0\n",
	} {
		_, err := parseSockperfLog([]byte(in))
		assert.Error(t, err, name)
	}
}

func TestListening(t *testing.T) {
	const table = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1576 1 00000000bd7b289f 100 0 0 10 0
   1: 0100007F:B2F0 0100007F:1517 06 00000000:00000000 03:000016B9 00000000     0        0 0 3 00000000369dbe72
`
	ok, err := listening([]byte(table), 2024)
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = listening([]byte(table), 0x1517)
	require.NoError(t, err)
	assert.False(t, ok, "a remote port in TIME_WAIT does not listen")
	ok, err = listening([]byte(table), 0xB2F0)
	require.NoError(t, err)
	assert.False(t, ok, "a local port that does not listen")
	_, err = listening([]byte("   0: 00000000 00000000:0000 0A\n"), 1)
	assert.Error(t, err)
	_, err = listening([]byte("   0: 00000000:ZZZZ 00000000:0000 0A\n"), 1)
	assert.Error(t, err)
}

func TestLastLine(t *testing.T) {
	assert.Equal(t, "sockperf: ERROR: Can`t connect socket", lastLine([]byte("sockperf: \x1b[2;35m== version ==\x1b[0m\nsockperf: ERROR: Can`t connect socket\n\n")))
	assert.Equal(t, "total", lastLine([]byte("\x1b[2;35mtotal\x1b[0m\n------\n")))
	assert.Empty(t, lastLine(nil))
}

func TestTailBuffer(t *testing.T) {
	var b tailBuffer
	fmt.Fprint(&b, strings.Repeat("x", toolOutLimit))
	fmt.Fprint(&b, "end")
	got := b.Bytes()
	assert.Len(t, got, toolOutLimit)
	assert.True(t, strings.HasSuffix(string(got), "xend"))
}

func FuzzParseIperf3(f *testing.F) {
	for _, name := range []string{"iperf3-tcp.json", "iperf3-udp.json", "iperf3-error.json"} {
		f.Add(refFixture(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := parseIperf3(data)
		if err != nil {
			return
		}
		for _, iv := range res.Intervals {
			if !finiteNonNeg(iv.BitsPerSecond) || !finiteNonNeg(iv.End) {
				t.Fatalf("accepted interval %+v", iv)
			}
		}
		if res.UDP != nil && (!finiteNonNeg(res.UDP.Jitter) || res.UDP.LostPercent > 100) {
			t.Fatalf("accepted udp %+v", res.UDP)
		}
	})
}

func FuzzParseSockperfLog(f *testing.F) {
	f.Add(refFixture(f, "sockperf-full-log.csv"))
	f.Add([]byte(sockperfLogHeader + "\n0, 1, 2, 3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkts, err := parseSockperfLog(data)
		if err != nil {
			return
		}
		if len(pkts) == 0 {
			t.Fatal("no error and no packets")
		}
		for _, p := range pkts {
			if !finiteNonNeg(p.RTT) {
				t.Fatalf("accepted packet %+v", p)
			}
		}
	})
}

// Every round runs the jitter pair JitterRepeat times, its order alternating within the
// round and between rounds, and the kernel-stamped stream once.
func TestReferenceStepsAlternateJitterPairs(t *testing.T) {
	r := &refRun{cfg: ReferenceConfig{Only: []string{RefJitter}, JitterRepeat: 3}.withDefaults()}
	names := func(round int) []string {
		var out []string
		for _, s := range r.steps(round) {
			out = append(out, s.name)
		}
		return out
	}
	const tool, ours, kernel = "iperf3 udp", "udp jitter", "udp jitter, kernel stamps"
	assert.Equal(t, []string{tool, ours, kernel, ours, tool, tool, ours}, names(1))
	assert.Equal(t, []string{ours, tool, kernel, tool, ours, ours, tool}, names(2))
	assert.Equal(t, names(1), names(3))

	err := ReferenceConfig{JitterRepeat: -1}.Validate()
	assert.ErrorContains(t, err, "jitter repeat -1 is out of range")
}
