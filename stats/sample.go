// Package stats holds the typed samples every meter produces and the summaries, curves and
// fits computed from them. It is the one place where statistics are computed: writers and
// plots only format what this package returns.
package stats

import "strings"

// Better says which direction of a metric is an improvement.
type Better string

// The two directions a metric can improve in.
const (
	Lower  Better = "lower"
	Higher Better = "higher"
)

// Metric names a measured quantity with its base unit and its better-direction.
// Units are base units (s, bit/s, bytes, percent, count); scaling happens only in
// tables and plots.
type Metric struct {
	Name   string
	Unit   string
	Better Better
}

// The metrics the meters produce. Names are part of the results contract.
var (
	RTT        = Metric{Name: "rtt", Unit: "s", Better: Lower}
	Jitter     = Metric{Name: "jitter", Unit: "s", Better: Lower}
	OWD        = Metric{Name: "owd", Unit: "s", Better: Lower}
	Throughput = Metric{Name: "throughput", Unit: "bit/s", Better: Higher}
	Loss       = Metric{Name: "loss", Unit: "percent", Better: Lower}
	SendRate   = Metric{Name: "send_rate", Unit: "bit/s", Better: Higher}
	CPU        = Metric{Name: "cpu", Unit: "percent", Better: Lower}
	CPUSoftirq = Metric{Name: "cpu_softirq", Unit: "percent", Better: Lower}
	CPUProcess = Metric{Name: "cpu_process", Unit: "percent", Better: Lower}
	RAM        = Metric{Name: "ram", Unit: "bytes", Better: Lower}

	// The speed-limit experiments' metrics (bench.SpeedLimit*).
	ResponseTime    = Metric{Name: "response_time", Unit: "s", Better: Lower}
	ClientMedian    = Metric{Name: "client_median", Unit: "s", Better: Lower}
	ClientStddev    = Metric{Name: "client_stddev", Unit: "s", Better: Lower}
	MeanRequestTime = Metric{Name: "mean_request_time", Unit: "s", Better: Lower}
	DropPoint       = Metric{Name: "drop_point", Unit: "count", Better: Higher}
	Timeouts        = Metric{Name: "timeouts", Unit: "count", Better: Lower}
	AchievedRate    = Metric{Name: "achieved_rate", Unit: "req/s", Better: Higher}
	ClientCPU       = Metric{Name: "client_cpu", Unit: "percent", Better: Lower}
)

// Sample is one measured value. Rep, Seq and T place it in a run: the repetition, its
// order within the repetition, and seconds since the repetition started. X and XUnit are
// set where the metric is a curve (a target rate, a number of clients, a phase name).
type Sample struct {
	Rep    int
	Seq    int
	T      float64
	X      string
	XUnit  string
	Metric Metric
	Value  float64
}

var known = []Metric{RTT, Jitter, OWD, Throughput, Loss, SendRate, CPU, CPUSoftirq, CPUProcess, RAM,
	ResponseTime, ClientMedian, ClientStddev, MeanRequestTime, DropPoint, Timeouts, AchievedRate, ClientCPU}

// Lookup finds a well-known metric by name. A qualified name "base:qualifier" (such as
// cpu_process:edgebpf, one series per process) has the unit and direction of its base.
func Lookup(name string) (Metric, bool) {
	base, _, qualified := strings.Cut(name, ":")
	for _, m := range known {
		if m.Name == base {
			if qualified {
				m.Name = name
			}
			return m, true
		}
	}
	return Metric{}, false
}

// Register adds a metric to the well-known ones so Lookup finds it; data planes and meters
// that add metrics call it from init. Registering a name twice with another unit or
// direction panics: it is a programming error.
func Register(m Metric) {
	if old, ok := Lookup(m.Name); ok {
		if old != m {
			panic("stats: metric " + m.Name + " registered twice with different unit or direction")
		}
		return
	}
	known = append(known, m)
}
