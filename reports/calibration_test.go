package reports

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/edgebpf/edgebpf/stats"
)

func TestCalibrationTarget(t *testing.T) {
	entry := func(metric string, median, lo, hi float64) Entry {
		return Entry{Metric: metric, Summary: stats.Summary{Median: median, CILo: lo, CIHi: hi}}
	}
	nan := math.NaN()
	for _, tc := range []struct {
		name      string
		base, dp  string
		ours      Entry
		ratio, vs float64
		ok, met   bool
	}{
		{"throughput at 0.9x", "throughput", "userspace", entry("throughput:edgebpf", 1, 1, 1), 0.9, nan, true, true},
		{"throughput below", "throughput", "userspace", entry("throughput:edgebpf", 1, 1, 1), 0.89, nan, true, false},
		{"jitter within, narrow", "jitter", "ebpf", entry("jitter:edgebpf", 10, 5, 20), 1.25, nan, true, true},
		{"jitter within, too wide", "jitter", "ebpf", entry("jitter:edgebpf", 10, 5, 26), 1.0, nan, true, false},
		{"jitter too low", "jitter", "ebpf", entry("jitter:edgebpf", 10, 9, 11), 0.7, nan, true, false},
		{"kernel-stamped jitter has no target", "jitter", "ebpf", entry("jitter:edgebpf-kernel", 10, 9, 11), 1, nan, false, false},
		{"busy on direct", "rtt:udp-rr-busy", "direct", entry("rtt:udp-rr-busy:edgebpf", 1, 1, 1), 1.19, nan, true, true},
		{"busy on direct, too slow", "rtt:udp-rr-busy", "direct", entry("rtt:udp-rr-busy:edgebpf", 1, 1, 1), 1.21, nan, true, false},
		{"busy elsewhere ranks as sockperf", "rtt:tcp-rr-busy", "ebpf", entry("rtt:tcp-rr-busy:edgebpf", 1, 1, 1), 2, 1.14, true, true},
		{"busy elsewhere ranks apart", "rtt:tcp-rr-busy", "ebpf", entry("rtt:tcp-rr-busy:edgebpf", 1, 1, 1), 1, 0.8, true, false},
		{"busy without direct", "rtt:tcp-rr-busy", "ebpf", entry("rtt:tcp-rr-busy:edgebpf", 1, 1, 1), 1, nan, false, false},
		{"paced has no target", "rtt:udp-rr-paced", "direct", entry("rtt:udp-rr-paced:edgebpf", 1, 1, 1), 1, nan, false, false},
	} {
		tg, ok := calibrationTarget(tc.base, tc.dp, tc.ours, tc.ratio, tc.vs)
		assert.Equal(t, tc.ok, ok, tc.name)
		assert.Equal(t, tc.met, tg.met, tc.name)
	}
}
