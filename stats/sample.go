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

// The metrics the meters produce. Names are part of the results contract; Catalogue lists
// them all with their meaning.
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
	// Lifecycle is the time one deploy or undeploy of an experiment's services took; its
	// sample's X says which ("deploy", "undeploy") and its T when it began, the moment the
	// resources figures mark.
	Lifecycle = Metric{Name: "lifecycle", Unit: "s", Better: Lower}

	// The bottleneck sweep's cost and limit metrics (bench.UDPSweep).
	CPUNsPerPkt   = Metric{Name: "cpu_ns_per_pkt", Unit: "ns", Better: Lower}
	LimitedBy     = Metric{Name: "limited_by", Unit: "percent", Better: Lower}
	GSOSegments   = Metric{Name: "gso_segments", Unit: "count", Better: Higher}
	SenderThreads = Metric{Name: "sender_threads", Unit: "count", Better: Higher}

	// The speed-limit experiments' metrics (bench.SpeedLimit*).
	ResponseTime    = Metric{Name: "response_time", Unit: "s", Better: Lower}
	ClientMedian    = Metric{Name: "client_median", Unit: "s", Better: Lower}
	ClientStddev    = Metric{Name: "client_stddev", Unit: "s", Better: Lower}
	MeanRequestTime = Metric{Name: "mean_request_time", Unit: "s", Better: Lower}
	DropPoint       = Metric{Name: "drop_point", Unit: "count", Better: Higher}
	Timeouts        = Metric{Name: "timeouts", Unit: "count", Better: Lower}
	AchievedRate    = Metric{Name: "achieved_rate", Unit: "req/s", Better: Higher}
	ClientCPU       = Metric{Name: "client_cpu", Unit: "percent", Better: Lower}
	// DropCensored and ClientLimited are flags, 1 or 0 per repetition of the drop-point search.
	DropCensored       = Metric{Name: "drop_censored", Unit: "count", Better: Lower}
	ClientLimited      = Metric{Name: "client_limited", Unit: "count", Better: Lower}
	ClientSendCapacity = Metric{Name: "client_send_capacity", Unit: "req/s", Better: Higher}

	// BPFNsPerPkt is the mean run time of a BPF program per packet; ProgramCost qualifies it
	// with the program.
	BPFNsPerPkt = Metric{Name: "bpf_ns_per_pkt", Unit: "ns", Better: Lower}

	// The scale experiment's control-plane times; it qualifies every metric with its axis
	// (deploy_time:services, rtt:instances).
	DeployTime       = Metric{Name: "deploy_time", Unit: "s", Better: Lower}
	AddInstanceTime  = Metric{Name: "add_instance_time", Unit: "s", Better: Lower}
	CreateModuleTime = Metric{Name: "create_module_time", Unit: "s", Better: Lower}
)

// ProgramCost is BPFNsPerPkt of one program: bpf_ns_per_pkt:<program>.
func ProgramCost(program string) Metric {
	m := BPFNsPerPkt
	m.Name += ":" + program
	return m
}

// Definition is a metric with what it means and how one repetition's samples of it become
// the repetition's value.
type Definition struct {
	Metric
	Description string
	// Aggregate turns one repetition's samples into the repetition's value, the unit that
	// compare tests and gates on (see RepValues).
	Aggregate Aggregate
}

// Catalogue is every metric edgebpf produces, for meters, summaries, reports and compare
// alike. A metric with a qualifier ("cpu_process:edgebpf") is its base's.
//
// The per-repetition aggregate is the metric's own: rates and ratios measured over equal
// intervals (throughput, send and achieved rates, loss, CPU shares, BPF time per packet) and
// counts per repetition (timeouts) take the mean, which is the repetition's rate, share or
// count over its whole duration; per-event times and sizes (RTT, jitter, one-way delay, RAM,
// response times, drop point) take the median, robust to the tail that one stalled request
// adds. A metric with one value per repetition gets that value either way.
var Catalogue = []Definition{
	{RTT, "round-trip time of one request (a TCP connect, or a request and its reply)", Median},
	{Jitter, "RFC 3550 interarrival jitter of a UDP stream", Median},
	{OWD, "one-way delay of a datagram, sender and receiver on one clock", Median},
	{Throughput, "goodput received over an interval", Mean},
	{Loss, "share of datagrams sent that were not received", Mean},
	{SendRate, "rate the sender achieved", Mean},
	{CPU, "CPU time of the whole machine, percent of one core", Mean},
	{CPUSoftirq, "CPU time in softirq (the kernel's packet processing), percent of one core", Mean},
	{CPUProcess, "CPU time of one process, percent of one core", Mean},
	{RAM, "resident memory", Median},
	{CPUNsPerPkt, "CPU time per datagram delivered at one bottleneck rate: the run time of edgebpf, its child processes and the kernel's ksoftirqd threads over the rate net of their idle rate (read over the pause before it), divided by the datagrams received; :machine is the whole machine's busy time from /proc/stat instead (other load included)", Mean},
	{LimitedBy, "100 where a side limited a bottleneck rate, else 0: :sender (achieved send rate below 95 % of the target), :receiver (the receiving socket dropped at least 1 % of the datagrams sent for a full buffer), :dataplane (at least 1 % of the datagrams sent lost on the way, not at the socket)", Mean},
	{GSOSegments, "datagrams per send buffer of the bottleneck sender: up to 64 with UDP GSO, 1 without (turned off, or refused by the kernel)", Mean},
	{SenderThreads, "sending threads of the bottleneck sender, each with its own socket", Mean},
	{Lifecycle, "time a deploy (x deploy) or undeploy (x undeploy) of the experiment's client and server services took; t is the moment it began", Median},
	{ResponseTime, "wall-clock time from a speed-limit request to its reply", Median},
	{ClientMedian, "median response time of one speed-limit client", Median},
	{ClientStddev, "standard deviation of one speed-limit client's response times", Median},
	{MeanRequestTime, "one client's time for all its requests divided by their number (the thesis's aggregate)", Median},
	{DropPoint, "clients at which the first request went unanswered", Median},
	{Timeouts, "requests without a reply within the timeout", Mean},
	{AchievedRate, "speed-limit requests answered per second", Mean},
	{ClientCPU, "CPU time of the speed-limit client threads, percent of one core", Mean},
	{DropCensored, "1 when no request dropped up to the drop-point search's cap (the drop point is a lower bound), else 0", Mean},
	{ClientLimited, "1 when the drop-point search reached its cap without a drop and more clients no longer added load or the client sent at least a third of its send capacity (the client, not the server, was the limit), else 0", Mean},
	{ClientSendCapacity, "speed-limit requests per second the client's threads send to a sink of their own (the client's ceiling)", Mean},
	{BPFNsPerPkt, "kernel run time of a BPF program per packet (with --bpf-stats)", Mean},
	{DeployTime, "time to deploy a data plane on a node and add the step's services to it", Median},
	{AddInstanceTime, "time to add one instance to a node (its namespace and veth, every data plane's and module's part)", Median},
	{CreateModuleTime, "time to create one eBPF module and attach it to every instance of a node", Median},
}

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

// Lookup finds a metric of the catalogue by name. A qualified name "base:qualifier" (such as
// cpu_process:edgebpf, one series per process) has the unit and direction of its base.
func Lookup(name string) (Metric, bool) {
	d, ok := Describe(name)
	if !ok {
		return Metric{}, false
	}
	d.Metric.Name = name
	return d.Metric, true
}

// Describe returns the catalogue's definition of a metric, or of its base if qualified.
func Describe(name string) (Definition, bool) {
	base, _, _ := strings.Cut(name, ":")
	for _, d := range Catalogue {
		if d.Name == base {
			return d, true
		}
	}
	return Definition{}, false
}
