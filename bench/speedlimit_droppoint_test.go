package bench

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/workloads/speedlimit/wire"
)

// thresholdSign is a speed-limit server on loopback with a known drop point: within one
// start (requests with no quiet gap longer than gap between them) it answers the first
// limit clients (source ports) it sees and never the others. A start of at most limit
// clients therefore never drops and one of more always does, whatever the timing.
func thresholdSign(t *testing.T, limit int, gap time.Duration) uint16 {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64)
		seen := map[netip.AddrPort]bool{}
		for {
			_ = conn.SetReadDeadline(time.Now().Add(gap))
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				clear(seen) // a quiet gap: the next request begins a new start
				continue
			}
			if err != nil {
				return
			}
			msg, err := wire.Decode(buf[:n])
			if err != nil || msg.Op != wire.GetSpeedLimit {
				continue
			}
			if !seen[from] {
				if len(seen) >= limit {
					continue // beyond the limit: never answered
				}
				seen[from] = true
			}
			_, _ = conn.WriteToUDPAddrPort(wire.Message{Op: wire.Reply, Value: 120}.Append(nil), from)
		}
	})
	t.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
	return uint16(conn.LocalAddr().(*net.UDPAddr).Port)
}

func TestSpeedLimitDropPointSearchesAgree(t *testing.T) {
	const gap = 100 * time.Millisecond
	cases := []struct {
		name                       string
		limit, start, step, max    int
		wantPoint, wantCensored    float64
		wantLinearStarts, atMostGe int
	}{
		{name: "step 1", limit: 13, start: 1, step: 1, max: 40, wantPoint: 13, wantLinearStarts: 14, atMostGe: 10},
		{name: "step 2 from 3", limit: 14, start: 3, step: 2, max: 41, wantPoint: 13, wantLinearStarts: 7, atMostGe: 8},
		{name: "no drop up to the cap", limit: 100, start: 2, step: 1, max: 20, wantPoint: 20, wantCensored: 1, wantLinearStarts: 19, atMostGe: 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			port := thresholdSign(t, c.limit, gap)
			starts := map[string]int{}
			for _, search := range []string{SearchLinear, SearchGeometric} {
				samples, err := SpeedLimitDropPoint(context.Background(), loopback, SpeedLimitDropPointConfig{
					Port: port, Start: c.start, Step: c.step, Max: c.max, Search: search, Requests: 20,
					Pause: Duration(3 * gap), Timeout: Duration(3 * time.Second), // generous, for a loaded machine: only the threshold may drop
				})
				require.NoError(t, err, search)
				m := byMetric(samples)
				require.Len(t, m["drop_point"], 1, search)
				assert.Equal(t, c.wantPoint, m["drop_point"][0].Value, "%s search: the first count that drops, less one step", search)
				require.Len(t, m["drop_censored"], 1, search)
				assert.Equal(t, c.wantCensored, m["drop_censored"][0].Value, search)
				require.Len(t, m["client_send_capacity"], 1, search)
				assert.Positive(t, m["client_send_capacity"][0].Value, search)
				assert.Len(t, m["client_limited"], 1, search)
				starts[search] = len(m["timeouts"])
			}
			assert.Equal(t, c.wantLinearStarts, starts[SearchLinear], "linear: one start per step")
			assert.LessOrEqual(t, starts[SearchGeometric], c.atMostGe, "geometric: O(log n) starts")
		})
	}
}

func TestSpeedLimitDropPointSearchValidate(t *testing.T) {
	assert.ErrorContains(t, SpeedLimitDropPointConfig{Search: "binary"}.Validate(), `search "binary" is unknown`)
	assert.NoError(t, SpeedLimitDropPointConfig{Search: SearchLinear}.Validate())
}

func TestSpeedLimitDropPointStarts(t *testing.T) {
	geo := SpeedLimitDropPointConfig{Start: 1, Max: 40}
	assert.Equal(t, []int{1, 2, 4, 8, 16, 12, 14, 13, 14}, geo.Starts(13), "double, bisect, repeat the first drop")
	assert.Equal(t, []int{1, 1}, geo.Starts(0), "the first start drops, and again")
	assert.Equal(t, []int{1, 2, 4, 8, 16, 32, 40}, geo.Starts(-1), "no drop: up to the cap")
	lin := SpeedLimitDropPointConfig{Start: 1, Max: 40, Search: SearchLinear}
	assert.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, lin.Starts(13))
	full := SpeedLimitDropPointConfig{Start: 50, Max: 1600, Step: 1}
	assert.Equal(t, []int{50, 100, 200, 400, 800, 1600}, full.Starts(-1))
	assert.Len(t, full.Starts(139), 11, "the thesis's user-space drop point: 3 doublings, 7 halvings, 1 repeat")
}
