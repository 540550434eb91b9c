package reports

import "github.com/edgebpf/edgebpf/stats"

// The experiments the report knows by name: their tables and figures follow the theses.
// Experiments it does not know are still summarised in the per-experiment tables.
const (
	expLatency     = "latency"
	expJitter      = "jitter"
	expThroughput  = "throughput"
	expBottleneck  = "bottleneck"
	expResources   = "resources"
	expCalibration = "calibration"
	expSLResponse  = "speedlimit-response"
	expSLDropPoint = "speedlimit-droppoint"
	expSLScaling   = "speedlimit-scaling"
	expSLLoad      = "speedlimit-load"
)

// The metrics of the speed-limit experiments and of the eBPF manager's program statistics.
// stats does not define them (their meters live with their data planes), so the
// report registers them: raw files that hold them then parse and summarise like any other.
var (
	metricResponseTime    = stats.Metric{Name: "response_time", Unit: "s", Better: stats.Lower}
	metricClientMedian    = stats.Metric{Name: "client_median", Unit: "s", Better: stats.Lower}
	metricClientStddev    = stats.Metric{Name: "client_stddev", Unit: "s", Better: stats.Lower}
	metricMeanRequestTime = stats.Metric{Name: "mean_request_time", Unit: "s", Better: stats.Lower}
	metricDropPoint       = stats.Metric{Name: "drop_point", Unit: "count", Better: stats.Higher}
	metricTimeouts        = stats.Metric{Name: "timeouts", Unit: "count", Better: stats.Lower}
	metricAchievedRate    = stats.Metric{Name: "achieved_rate", Unit: "req/s", Better: stats.Higher}
	metricBPFNsPerPkt     = stats.Metric{Name: "bpf_ns_per_pkt", Unit: "ns", Better: stats.Lower}
)

func init() {
	for _, m := range []stats.Metric{
		metricResponseTime, metricClientMedian, metricClientStddev, metricMeanRequestTime,
		metricDropPoint, metricTimeouts, metricAchievedRate, metricBPFNsPerPkt,
	} {
		// A package that produces the metric may have registered it first (packages
		// initialise in import order); its definition wins and the raw files follow it.
		if _, ok := stats.Lookup(m.Name); !ok {
			stats.Register(m)
		}
	}
}
