package bench

import (
	"context"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/stats"
)

func TestRequestResponseLoopback(t *testing.T) {
	tcpCheckLeaks(t)
	cfg := RRConfig{Port: 15211, BusyCount: 300, PacedCount: 10, Interval: Duration(time.Millisecond), Warmup: 5}
	samples, err := RequestResponse(context.Background(), tcpLoopback(), cfg)
	require.NoError(t, err)
	count := map[string]int{}
	for _, s := range samples {
		count[s.Metric.Name]++
		assert.Greater(t, s.Value, 0.0, "%s seq %d", s.Metric.Name, s.Seq)
		assert.Less(t, s.Value, 1.0, "%s seq %d", s.Metric.Name, s.Seq)
		m, ok := stats.Lookup(s.Metric.Name)
		require.True(t, ok, "%s is not in the catalogue", s.Metric.Name)
		assert.Equal(t, stats.RTT.Unit, m.Unit)
	}
	assert.Equal(t, map[string]int{
		"rtt:udp-rr-busy": 300, "rtt:udp-rr-paced": 10, "rtt:tcp-rr-busy": 300, "rtt:tcp-rr-paced": 10,
	}, count)
}

func TestRequestResponsePacedTakesItsSchedule(t *testing.T) {
	cfg := RRConfig{Port: 15212, Protocols: []string{RRUDP}, Modes: []string{RRPaced}, PacedCount: 20, Interval: Duration(5 * time.Millisecond), Warmup: 1}
	start := time.Now()
	samples, err := RequestResponse(context.Background(), tcpLoopback(), cfg)
	require.NoError(t, err)
	require.Len(t, samples, 20)
	// 21 round trips on an absolute schedule, one every 5 ms: the last cannot start before
	// 100 ms have passed.
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
	for i := 1; i < len(samples); i++ {
		assert.Greater(t, samples[i].T, samples[i-1].T, "sample %d", i)
		assert.Equal(t, i, samples[i].Seq)
	}
}

func TestRequestResponseCancel(t *testing.T) {
	tcpCheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	cfg := RRConfig{Port: 15213, Protocols: []string{RRTCP}, Modes: []string{RRPaced}, PacedCount: 1000}
	start := time.Now()
	_, err := RequestResponse(ctx, tcpLoopback(), cfg)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 3*time.Second)
}

func TestRRConfigValidate(t *testing.T) {
	assert.NoError(t, RRConfig{}.Validate())
	for _, bad := range []RRConfig{
		{Protocols: []string{"sctp"}},
		{Modes: []string{"idle"}},
		{Size: 8},
		{Size: 9000},
		{BusyCount: -1},
		{Interval: Duration(-time.Second)},
		{Timeout: Duration(-time.Second)},
	} {
		assert.Error(t, bad.Validate(), "%+v", bad)
	}
}

// A signal that interrupts the client's blocked read (the Go runtime's preemption signal
// does, every 10 ms of a raw syscall loop) neither sends a request anew nor ends a TCP
// round trip: each request goes out once and every round trip lasts at least the server's
// delay.
func TestRequestResponseSignalsKeepRoundTrips(t *testing.T) {
	const (
		warmup, count = 2, 20
		delay         = 3 * time.Millisecond
	)
	for _, proto := range []string{RRUDP, RRTCP} {
		t.Run(proto, func(t *testing.T) {
			port := uint16(15214)
			if proto == RRTCP {
				port++
			}
			cfg := RRConfig{Port: port, Size: 64, Timeout: Duration(time.Second)}
			requests := slowEcho(t, proto, port, delay)
			fd, err := rrDial(tcpLoopback(), proto, cfg)
			require.NoError(t, err)
			defer unix.Close(fd)
			c := &rrClient{fd: fd, udp: proto == RRUDP, size: 64, metric: RRMetric(proto, RRBusy)}
			tid := make(chan int, 1)
			done := make(chan error, 1)
			go func() {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				tid <- unix.Gettid()
				done <- c.run(context.Background(), warmup, count, 0)
			}()
			id := <-tid
			signalled := 0
			for running := true; running; {
				select {
				case err := <-done:
					require.NoError(t, err)
					running = false
				case <-time.After(delay / 3):
					require.NoError(t, unix.Tgkill(unix.Getpid(), id, unix.SIGURG))
					signalled++
				}
			}
			require.Greater(t, signalled, count/2, "the client was signalled while it waited")
			require.Len(t, c.samples, count)
			for _, s := range c.samples {
				assert.GreaterOrEqual(t, s.Value, delay.Seconds(), "seq %d timed from a request sent anew", s.Seq)
			}
			assert.EqualValues(t, warmup+count, requests.Load(), "requests the server received")
		})
	}
}

// slowEcho serves one client on loopback port: it echoes every 64-byte request after
// delay and counts the requests in the returned counter.
func slowEcho(t *testing.T, proto string, port uint16, delay time.Duration) *atomic.Int64 {
	var n atomic.Int64
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	if proto == RRUDP {
		pc, err := net.ListenPacket("udp4", addr)
		require.NoError(t, err)
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 65)
			for {
				k, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if k != 64 {
					continue
				}
				n.Add(1)
				time.Sleep(delay)
				_, _ = pc.WriteTo(buf[:k], from)
			}
		}()
		return &n
	}
	ln, err := net.Listen("tcp4", addr)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(conn, buf); err != nil {
				return
			}
			n.Add(1)
			time.Sleep(delay)
			if _, err := conn.Write(buf); err != nil {
				return
			}
		}
	}()
	return &n
}
