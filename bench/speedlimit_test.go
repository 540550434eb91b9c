package bench

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/stats"
	"github.com/edgebpf/edgebpf/workloads/speedlimit/wire"
)

// fakeSign is a speed-limit server on loopback for the client's tests: it answers
// GET_SPEED_LIMIT with REPLY and a fixed limit, counts OUT_OF_RANGE, and can be told to
// ignore every n-th request or to answer wrongly.
type fakeSign struct {
	conn      *net.UDPConn
	port      uint16
	dropEvery uint64
	wrong     bool
	gets      atomic.Uint64
	leaves    atomic.Uint64
	wg        sync.WaitGroup
}

func newFakeSign(t *testing.T, dropEvery uint64, wrong bool) *fakeSign {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	s := &fakeSign{conn: conn, port: uint16(conn.LocalAddr().(*net.UDPAddr).Port), dropEvery: dropEvery, wrong: wrong}
	s.wg.Go(func() {
		buf := make([]byte, 64)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			msg, err := wire.Decode(buf[:n])
			if err != nil {
				continue
			}
			switch msg.Op {
			case wire.GetSpeedLimit:
				k := s.gets.Add(1)
				if s.dropEvery > 0 && k%s.dropEvery == 0 {
					continue
				}
				reply := wire.Message{Op: wire.Reply, Value: 120}
				if s.wrong {
					reply.Op = wire.GetSpeedLimit
				}
				_, _ = conn.WriteToUDPAddrPort(reply.Append(nil), from)
			case wire.OutOfRange:
				s.leaves.Add(1)
			}
		}
	})
	t.Cleanup(func() {
		conn.Close()
		s.wg.Wait()
	})
	return s
}

var loopback = Endpoints{Client: Current{}, Server: Current{}, Target: netip.MustParseAddr("127.0.0.1")}

func byMetric(samples []stats.Sample) map[string][]stats.Sample {
	out := map[string][]stats.Sample{}
	for _, s := range samples {
		out[s.Metric.Name] = append(out[s.Metric.Name], s)
	}
	return out
}

func TestSpeedLimitClosedLoop(t *testing.T) {
	s := newFakeSign(t, 0, false)
	samples, err := SpeedLimitResponse(context.Background(), loopback, SpeedLimitResponseConfig{Port: s.port, Clients: 3, Requests: 100, Keep: 10})
	require.NoError(t, err)
	m := byMetric(samples)
	assert.Len(t, m["response_time"], 30, "every 10th request of each client")
	seqs := map[int]bool{}
	for _, x := range m["response_time"] {
		assert.Positive(t, x.Value)
		assert.Empty(t, x.X)
		seqs[x.Seq] = true
	}
	assert.Len(t, seqs, 30, "requests are numbered across clients")
	assert.True(t, seqs[0] && seqs[90] && seqs[100] && seqs[290])
	assert.Len(t, m["client_median"], 3)
	assert.Len(t, m["client_stddev"], 3)
	assert.Len(t, m["mean_request_time"], 3)
	require.Len(t, m["timeouts"], 1)
	assert.Zero(t, m["timeouts"][0].Value)
	require.Len(t, m["achieved_rate"], 1)
	assert.Positive(t, m["achieved_rate"][0].Value)
	assert.Len(t, m["client_cpu"], 1)
	assert.Len(t, m["client_cpu:user"], 1)
	assert.Equal(t, uint64(300), s.gets.Load())
	assert.Eventually(t, func() bool { return s.leaves.Load() == 300 }, time.Second, time.Millisecond, "a car leaves after each reply")

	sum := SummarizeSpeedLimit(samples)
	assert.Equal(t, 30, sum.Requests)
	assert.Zero(t, sum.Timeouts)
	assert.Positive(t, sum.MeanRequestTime)

	s2 := newFakeSign(t, 0, false)
	_, err = SpeedLimitResponse(context.Background(), loopback, SpeedLimitResponseConfig{Port: s2.port, Clients: 2, Requests: 20, Leave: LeaveNever})
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)
	assert.Zero(t, s2.leaves.Load(), "leave never: the thesis's growing count")
}

func TestSpeedLimitDrops(t *testing.T) {
	s := newFakeSign(t, 7, false)
	samples, err := SpeedLimitResponse(context.Background(), loopback, SpeedLimitResponseConfig{Port: s.port, Clients: 2, Requests: 20, Timeout: Duration(300 * time.Millisecond)})
	require.NoError(t, err)
	m := byMetric(samples)
	drops := int(m["timeouts"][0].Value)
	assert.Equal(t, 5, drops, "every 7th of 40 requests unanswered")
	assert.Len(t, m["response_time"], 35, "dropped requests have no time")
	assert.Less(t, len(m["mean_request_time"]), 2, "a client with a drop has no time for M / M")

	// Nothing listening: refused (ICMP port unreachable on loopback) counts as a drop.
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	port := uint16(conn.LocalAddr().(*net.UDPAddr).Port)
	conn.Close()
	samples, err = SpeedLimitResponse(context.Background(), loopback, SpeedLimitResponseConfig{Port: port, Clients: 2, Requests: 3, Timeout: Duration(50 * time.Millisecond)})
	require.NoError(t, err)
	assert.Equal(t, 6, SummarizeSpeedLimit(samples).Timeouts)
	assert.Zero(t, SummarizeSpeedLimit(samples).Requests)
}

func TestSpeedLimitWrongReplyIsAnError(t *testing.T) {
	s := newFakeSign(t, 0, true)
	_, err := SpeedLimitResponse(context.Background(), loopback, SpeedLimitResponseConfig{Port: s.port, Clients: 1, Requests: 3})
	assert.ErrorContains(t, err, "answered 3 requests wrongly")
}

func TestSpeedLimitDropPointAndScaling(t *testing.T) {
	s := newFakeSign(t, 0, false)
	samples, err := SpeedLimitDropPoint(context.Background(), loopback,
		SpeedLimitDropPointConfig{Port: s.port, Start: 1, Max: 3, Requests: 10, Pause: Duration(time.Millisecond)})
	require.NoError(t, err)
	m := byMetric(samples)
	require.Len(t, m["drop_point"], 1)
	assert.Equal(t, 3.0, m["drop_point"][0].Value, "no drop up to max: max")
	assert.Len(t, m["timeouts"], 3, "one per start")
	assert.Equal(t, "3", m["timeouts"][2].X)
	assert.Equal(t, XUnitClients, m["timeouts"][2].XUnit)

	samples, err = SpeedLimitScaling(context.Background(), loopback,
		SpeedLimitScalingConfig{Port: s.port, Clients: []int{1, 2}, Requests: 10, Pause: Duration(time.Millisecond)})
	require.NoError(t, err)
	xs := map[string]int{}
	for _, x := range samples {
		if x.Metric == stats.ResponseTime {
			assert.Equal(t, XUnitClients, x.XUnit)
			xs[x.X]++
		}
	}
	assert.Equal(t, map[string]int{"1": 10, "2": 20}, xs)

	d := newFakeSign(t, 3, false)
	samples, err = SpeedLimitDropPoint(context.Background(), loopback,
		SpeedLimitDropPointConfig{Port: d.port, Start: 2, Max: 5, Requests: 10, Pause: Duration(time.Millisecond), Timeout: Duration(20 * time.Millisecond)})
	require.NoError(t, err)
	m = byMetric(samples)
	assert.Equal(t, 1.0, m["drop_point"][0].Value, "the first start dropped: one client less")
}

func TestSpeedLimitOpenLoop(t *testing.T) {
	s := newFakeSign(t, 0, false)
	samples, err := SpeedLimitLoad(context.Background(), loopback,
		SpeedLimitLoadConfig{Port: s.port, Rates: []float64{400, 800}, Clients: 4, PerRate: Duration(250 * time.Millisecond), Pause: Duration(time.Millisecond)})
	require.NoError(t, err)
	m := byMetric(samples)
	require.Len(t, m["achieved_rate"], 2)
	require.Len(t, m["loss"], 2)
	assert.Equal(t, "800", m["loss"][1].X)
	assert.Equal(t, XUnitRate, m["loss"][1].XUnit)
	assert.Zero(t, m["loss"][0].Value)
	assert.InEpsilon(t, 400, m["achieved_rate"][0].Value, 0.5)
	assert.InEpsilon(t, 800, m["achieved_rate"][1].Value, 0.5)
	assert.InDelta(t, 100+200, len(m["response_time"]), 8, "the schedule: rate x duration")
}

func TestSpeedLimitCancel(t *testing.T) {
	s := newFakeSign(t, 0, false)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	samples, err := SpeedLimitResponse(ctx, loopback, SpeedLimitResponseConfig{Port: s.port, Clients: 2, Requests: 10_000_000, Keep: 100})
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.NotEmpty(t, samples, "what was measured is kept")
}

func TestSpeedLimitValidate(t *testing.T) {
	assert.NoError(t, SpeedLimitResponseConfig{}.Validate())
	assert.ErrorContains(t, SpeedLimitResponseConfig{Clients: -1}.Validate(), "clients -1 is out of range")
	assert.ErrorContains(t, SpeedLimitResponseConfig{Leave: "end"}.Validate(), `leave "end" is unknown`)
	assert.ErrorContains(t, SpeedLimitResponseConfig{Timeout: Duration(-time.Second)}.Validate(), "timeout -1s is negative")
	assert.ErrorContains(t, SpeedLimitDropPointConfig{Start: 10, Max: 5}.Validate(), "max 5 is below start 10")
	assert.ErrorContains(t, SpeedLimitScalingConfig{}.Validate(), "no client counts")
	assert.ErrorContains(t, SpeedLimitScalingConfig{Clients: []int{0}}.Validate(), "client count 0 is out of range")
	assert.ErrorContains(t, SpeedLimitLoadConfig{Rates: []float64{-5}}.Validate(), "rate -5 req/s is out of range")
	_, err := SpeedLimitResponse(context.Background(), Endpoints{}, SpeedLimitResponseConfig{})
	assert.ErrorContains(t, err, "client namespace is nil")
}
