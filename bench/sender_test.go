package bench

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestSweepSenderLoopback: several threads share one schedule without sending a sequence
// number twice or skipping one, with and without GSO, and the stream reports how it was sent.
func TestSweepSenderLoopback(t *testing.T) {
	for _, tc := range []struct {
		name     string
		gso      bool
		wantSegs int
	}{
		{"gso", true, gsoSegments(defaultUDPSize)},
		{"sendmmsg", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			cfg := udpStreamConfig{port: 25210, rate: 20e6, size: defaultUDPSize, duration: 300 * time.Millisecond, grace: 100 * time.Millisecond}
			res, st, err := runSweepStream(context.Background(), udpLoopback, cfg, sweepSenderConfig{threads: 3, gso: tc.gso})
			require.NoError(t, err)
			requireUDPPortFree(t, 25210)
			requireUDPGoroutinesBack(t, before)
			assert.Equal(t, 3, st.send.threads)
			assert.Equal(t, tc.wantSegs, st.send.gsoSegments, "refused: %v", st.send.gsoRefused)
			require.Positive(t, res.sent)
			assert.Zero(t, res.duplicates, "a sequence number sent twice")
			assert.Zero(t, res.stray)
			assert.LessOrEqual(t, res.received, res.sent)
			assert.LessOrEqual(t, res.sent, cfg.packets())
			assert.NoError(t, st.costErr)
			assert.Positive(t, st.pathNs, "this process's CPU time over the stream, with no idle time subtracted")
		})
	}
}

func TestGSOSegments(t *testing.T) {
	assert.Equal(t, 46, gsoSegments(1400), "46 x 1400 bytes fit in 65507")
	assert.Equal(t, udpGSOMaxSegs, gsoSegments(64))
	assert.Equal(t, 1, gsoSegments(maxUDPSize))
}

func TestProcessCPU(t *testing.T) {
	var ts unix.Timespec
	require.NoError(t, unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts))
	ns, ok := processCPU(os.Getpid())
	require.True(t, ok)
	assert.GreaterOrEqual(t, ns, ts.Nano(), "the process clock read by PID runs on from CLOCK_PROCESS_CPUTIME_ID")
	_, ok = processCPU(1<<22 + 1)
	assert.False(t, ok, "no such process: above PID_MAX_LIMIT")
}

func TestCommAndParent(t *testing.T) {
	comm, ppid, ok := commAndParent([]byte("4242 (ksoftirqd/1) S 2 0 0 0 -1 69238848 0 0 0 0 0 12 0 0 20 0 1 0 18 0 0"))
	require.True(t, ok)
	assert.Equal(t, "ksoftirqd/1", comm)
	assert.Equal(t, 2, ppid)
	comm, ppid, ok = commAndParent([]byte("77 (a (b) c) R 76 77 77 0"))
	require.True(t, ok)
	assert.Equal(t, "a (b) c", comm)
	assert.Equal(t, 76, ppid)
	_, _, ok = commAndParent([]byte("77 no name"))
	assert.False(t, ok)
}

func TestPathNs(t *testing.T) {
	a := pathCPU{procs: map[int]int64{1: 100, 2: 50, 3: 10}}
	b := pathCPU{procs: map[int]int64{1: 300, 2: 50, 4: 25}}
	// 1 ran 200, 2 did not run, 3 exited (left out), 4 started in between (all of it).
	assert.Equal(t, int64(225), pathNs(a, b))
}

func TestParseSnmpUDP(t *testing.T) {
	const snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n" +
		"Udp: 10 2 7 12 5 0\n" +
		"UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n" +
		"UdpLite: 0 0 0 0 99 0\n"
	n, err := parseSnmpUDP(snmp, "RcvbufErrors")
	require.NoError(t, err)
	assert.Equal(t, uint64(5), n)
	_, err = parseSnmpUDP("Ip: a\nIp: 1\n", "RcvbufErrors")
	assert.EqualError(t, err, "no Udp RcvbufErrors counter in snmp")
	got, err := udpRcvbufErrors()
	require.NoError(t, err, "this kernel's /proc/thread-self/net/snmp")
	assert.GreaterOrEqual(t, got, uint64(0))
}
