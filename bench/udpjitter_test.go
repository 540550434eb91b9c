package bench

import (
	"context"
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/stats"
)

func TestUDPJitterLoopback(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := UDPJitterConfig{Port: 25203, Rate: 1e6, Duration: Duration(time.Second), Interval: Duration(250 * time.Millisecond)}
	samples, err := UDPJitter(context.Background(), udpLoopback, cfg)
	require.NoError(t, err)
	requireUDPPortFree(t, 25203)
	requireUDPGoroutinesBack(t, before)

	m := udpByMetric(samples)
	// One jitter sample at the end of every whole interval, in order.
	require.Len(t, m["jitter"], 4)
	for i, j := range m["jitter"] {
		assert.Equal(t, i, j.Seq)
		if i > 0 {
			assert.InDelta(t, 0.25, j.T-m["jitter"][i-1].T, 1e-6, "interval ends 250 ms apart")
		}
	}
	require.Len(t, m["loss"], 1)
	require.Len(t, m["send_rate"], 1)
	assert.GreaterOrEqual(t, m["jitter"][0].Value, 0.0)
	assert.Equal(t, stats.Jitter, m["jitter"][0].Metric)
	assert.Zero(t, m["loss"][0].Value, "loss at 1 Mbit/s over loopback")

	// 1 Mbit/s of 1400-byte payloads is 89.3 packets/s: 90 packets are due in 1 s.
	expected := int(udpStreamConfig{rate: 1e6, size: defaultUDPSize, duration: time.Second}.packets())
	require.Equal(t, 90, expected)
	owd := m["owd"]
	// A sender behind schedule on a loaded machine sends a few fewer, never more.
	assert.LessOrEqual(t, len(owd), expected)
	assert.GreaterOrEqual(t, len(owd), expected*9/10)
	lastT := -1.0
	for i, s := range owd {
		assert.Positive(t, s.Value, "owd of packet %d", s.Seq)
		assert.Less(t, s.Value, 0.1, "owd of packet %d", s.Seq)
		assert.Equal(t, i, s.Seq, "packets arrive in order over loopback")
		assert.GreaterOrEqual(t, s.T, lastT)
		assert.Zero(t, s.Rep)
		lastT = s.T
	}
	assert.InDelta(t, 1e6, m["send_rate"][0].Value, 0.2e6)
	t.Logf("jitter %.1f µs, median-ish owd %.1f µs, send rate %.0f bit/s",
		m["jitter"][0].Value*1e6, owd[len(owd)/2].Value*1e6, m["send_rate"][0].Value)
}

// TestUDPStreamKernelStamps checks that with kernel receive timestamps every datagram gets
// its own, and that each lies between its send time and the moment the batch was read.
func TestUDPStreamKernelStamps(t *testing.T) {
	for _, kernel := range []bool{true, false} {
		cfg := udpStreamConfig{port: 25206, rate: 20e6, size: defaultUDPSize, duration: 300 * time.Millisecond,
			grace: defaultUDPGrace, owdEvery: 1, kernelRx: kernel}
		res, err := runUDPStream(context.Background(), udpLoopback, cfg)
		require.NoError(t, err)
		assert.Zero(t, res.userStamped, "kernel %v: datagrams without a kernel timestamp", kernel)
		require.NotEmpty(t, res.owd)
		for _, o := range res.owd {
			assert.Positive(t, o.owd, "packet %d arrives after it was sent", o.seq)
			assert.Less(t, o.owd, int64(time.Second), "packet %d", o.seq)
		}
	}
}

func TestUDPJitterCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	samples, err := UDPJitter(ctx, udpLoopback, UDPJitterConfig{Port: 25205, Duration: Duration(10 * time.Second)})
	elapsed := time.Since(start)
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, elapsed, 2*time.Second)
	requireUDPPortFree(t, 25205)
	requireUDPGoroutinesBack(t, before)

	m := udpByMetric(samples)
	assert.NotEmpty(t, m["owd"], "the delays measured before the cancel")
	assert.Empty(t, m["loss"], "no loss for an interrupted stream")
}

func TestUDPJitterValidate(t *testing.T) {
	assert.NoError(t, UDPJitterConfig{}.Validate())
	assert.NoError(t, UDPJitterConfig{Port: 9, Rate: 500e6, Size: 16, Duration: Duration(time.Second)}.Validate())
	for _, tc := range []struct {
		name string
		cfg  UDPJitterConfig
		want []string
	}{
		{"negative rate", UDPJitterConfig{Rate: -1}, []string{"udp jitter: rate -1 bit/s is not a positive number"}},
		{"huge rate", UDPJitterConfig{Rate: 5e11}, []string{"above 100 Gbit/s", "500e6"}},
		{"small size", UDPJitterConfig{Size: 8}, []string{"size 8 bytes cannot hold the 16-byte"}},
		{"big size", UDPJitterConfig{Size: 70000}, []string{"exceeds the largest UDP payload over IPv4 (65507)"}},
		{"negative size", UDPJitterConfig{Size: -1}, []string{"size -1 is negative"}},
		{"negative duration", UDPJitterConfig{Duration: Duration(-time.Second)}, []string{"duration -1s is negative"}},
		{"no packet", UDPJitterConfig{Rate: 1000, Duration: Duration(time.Second)}, []string{"sends not even one 1400-byte packet in 1s", "11200 bit/s"}},
		{"negative grace", UDPJitterConfig{Grace: -1}, []string{"grace -1ns is negative"}},
		{"several", UDPJitterConfig{Rate: -1, Size: 8}, []string{"rate -1", "size 8"}},
		{"stamps", UDPJitterConfig{RxStamps: "hardware"}, []string{`receive timestamps "hardware" are unknown: use "kernel" or "user"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			// The meter refuses the config before opening any socket.
			_, merr := UDPJitter(context.Background(), udpLoopback, tc.cfg)
			assert.EqualError(t, merr, err.Error())
		})
	}
}

// TestKernelTimestampParse checks the in-place walk over control messages against what the
// kernel's layout would be: another message first, then the timestamp; and a cut-off one.
func TestKernelTimestampParse(t *testing.T) {
	msg := func(level, typ int32, data []byte) []byte {
		b := make([]byte, unix.CmsgSpace(len(data)))
		binary.NativeEndian.PutUint64(b[0:8], uint64(unix.CmsgLen(len(data))))
		binary.NativeEndian.PutUint32(b[8:12], uint32(level))
		binary.NativeEndian.PutUint32(b[12:16], uint32(typ))
		copy(b[16:], data)
		return b
	}
	ts := make([]byte, 16)
	binary.NativeEndian.PutUint64(ts[0:8], 1700000000)
	binary.NativeEndian.PutUint64(ts[8:16], 123456789)
	oob := append(msg(unix.SOL_IP, unix.IP_TTL, []byte{64, 0, 0, 0}), msg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, ts)...)
	got, ok := kernelTimestamp(oob)
	require.True(t, ok)
	assert.Equal(t, int64(1700000000123456789), got)
	_, ok = kernelTimestamp(oob[:len(oob)-20])
	assert.False(t, ok, "a cut-off message is no timestamp")
	_, ok = kernelTimestamp(nil)
	assert.False(t, ok)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = kernelTimestamp(oob) }))
}
