package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/reports"
	"github.com/edgebpf/edgebpf/scenarios"
	"github.com/edgebpf/edgebpf/stats"
	"github.com/edgebpf/edgebpf/subjects"
	"github.com/edgebpf/edgebpf/workloads/speedlimit"
	"github.com/edgebpf/edgebpf/workloads/speedlimit/wire"
)

func newSpeedLimitCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "speedlimit",
		Short: "Run the Weinhold speed-limit responder and its client on their own",
		Long: `The speed-limit responder of the Weinhold thesis: a street sign that counts the cars in its
range and answers each car's GET_SPEED_LIMIT with the current limit, in one of three
configurations (userspace, mixed, ebpf). 'serve' runs a server in an instance of a node, 'client'
runs clients in another instance of the same node.

'serve' builds a node of its own named speedlimit, with the services client and server, and
removes it on exit (or, with --on, serves from an instance of a node already running); 'client'
finds its instances through the nodes running on this machine ('edgebpf status'), so the two
commands below are all it takes:

  sudo edgebpf speedlimit serve --mode ebpf &
  sudo edgebpf speedlimit client -n 120 -m 10000

The experiments (edgebpf run speedlimit-response ...) build their own nodes and servers.`,
	}
	c.AddCommand(newSpeedLimitServeCmd(), newSpeedLimitClientCmd())
	return c
}

// findSpeedLimitInstance is findInstance with a hint at how to start a node for the
// speed-limit commands.
func findSpeedLimitInstance(spec, node string) (nodeInstance, error) {
	at, err := findInstance(spec, node)
	if errors.Is(err, errNoNode) {
		return at, fmt.Errorf("%w: start `edgebpf speedlimit serve` (it builds one) or `edgebpf node --names client,server`", err)
	}
	return at, err
}

// instanceIface returns the name of the instance's end of its veth pair, inside its namespace.
func instanceIface(ns *netsetup.Namespace) (string, error) {
	h, err := ns.Netlink()
	if err != nil {
		return "", err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return "", fmt.Errorf("list interfaces in %s: %w", ns.Name, err)
	}
	for _, l := range links {
		if l.Type() == "veth" && strings.HasPrefix(l.Attrs().Name, netsetup.LinkPrefix) {
			return l.Attrs().Name, nil
		}
	}
	return "", fmt.Errorf("namespace %s has no edgebpf veth", ns.Name)
}

// serveOptions are the flags of `edgebpf speedlimit serve`.
type serveOptions struct {
	mode, on, node, xdp string
	port                uint16
	period              time.Duration
}

func newSpeedLimitServeCmd() *cobra.Command {
	var o serveOptions
	c := &cobra.Command{
		Use:   "serve --mode userspace|mixed|ebpf",
		Short: "Serve speed limits from an instance until interrupted",
		Long: `Serve runs the speed-limit server. It builds a node of its own (named with --node, default
speedlimit) with the services client and server, serves from server/0, and removes the node when
it stops; with --on it serves instead from that instance of a node already running (see 'edgebpf
status'; --node then picks the node). It binds a UDP socket to --port in the instance and:

  userspace  answers every request from that socket, computing the limit per request;
  mixed      attaches the XDP program to the instance's veth, which answers with the limit user
             space recomputes from the kernel's car count every --period;
  ebpf       attaches the XDP program, which computes the limit per request in fixed point.

The XDP program runs in native mode where the veth allows it (a pass program goes on the bridge
side of the pair too) and in generic mode otherwise; --xdp forces one. Ctrl-C or SIGTERM detaches
everything (the XDP links are bpf_links: the kernel also detaches them if the process is killed).
A client with TX checksum offload on sends partial UDP checksums, which the program accepts
unverified; 'edgebpf speedlimit client' turns the offload off.`,
		Example: `  edgebpf speedlimit serve --mode ebpf
  edgebpf node --names client,server &
  edgebpf speedlimit serve --mode mixed --period 500ms --on server --port 6000`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runSpeedLimitServe(c.Context(), c.OutOrStdout(), c.ErrOrStderr(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.mode, "mode", "", "server configuration: userspace, mixed or ebpf (required)")
	f.StringVar(&o.on, "on", "", "serve from this instance of a running node, SERVICE[/INSTANCE], instead of building a node")
	f.StringVar(&o.node, "node", "", "the node to build (default speedlimit), or with --on the running node to serve on")
	f.Uint16Var(&o.port, "port", wire.DefaultPort, "UDP port")
	f.DurationVar(&o.period, "period", speedlimit.DefaultPeriod, "how often the mixed server recomputes the limit")
	f.StringVar(&o.xdp, "xdp", "auto", "XDP attach mode: auto, native or generic")
	return c
}

// validate checks the flags without touching the system and returns the parsed modes.
func (o serveOptions) validate() (speedlimit.Mode, speedlimit.XDPMode, error) {
	if o.mode == "" {
		return "", "", usageError("--mode is required: choose userspace, mixed or ebpf")
	}
	m, err := speedlimit.ParseMode(o.mode)
	if err != nil {
		return "", "", usageError("--mode: %w", err)
	}
	xm, err := speedlimit.ParseXDPMode(o.xdp)
	if err != nil {
		return "", "", usageError("--xdp: %w", err)
	}
	if o.period <= 0 {
		return "", "", usageError("--period %v must be positive", o.period)
	}
	if o.on == "" {
		cfg := netsetup.NodeConfig{Name: o.ownNode()}
		if err := cfg.Validate(); err != nil {
			return "", "", usageError("--node: %w", err)
		}
	}
	return m, xm, nil
}

// ownNode is the name of the node serve builds without --on.
func (o serveOptions) ownNode() string {
	if o.node == "" {
		return "speedlimit"
	}
	return o.node
}

// runSpeedLimitServe runs `edgebpf speedlimit serve` until ctx ends; it prints the server's
// counters to out when it stops.
func runSpeedLimitServe(ctx context.Context, out, errOut io.Writer, o serveOptions) (err error) {
	m, xm, err := o.validate()
	if err != nil {
		return err
	}
	if err := netsetup.RequirePrivileges(); err != nil {
		return err
	}
	log := logger(errOut)
	at, closeNode, err := o.instance(log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeNode()) }()
	ns, err := netsetup.OpenNamespace(at.instance.Namespace)
	if err != nil {
		return err
	}
	defer ns.Close()
	nodeNS, err := netsetup.OpenNamespace(at.node.Namespace)
	if err != nil {
		return err
	}
	defer nodeNS.Close()
	iface, err := instanceIface(ns)
	if err != nil {
		return err
	}
	srv, err := speedlimit.StartServer(speedlimit.ServerConfig{
		Mode: m, Port: o.port, Period: o.period, XDP: xm,
		NS: ns, Iface: iface, PeerNS: nodeNS, PeerIface: at.instance.Veth,
	})
	if err != nil {
		return err
	}
	defer func() {
		st, serr := srv.Stats()
		cars, _ := srv.Cars()
		fmt.Fprintf(out, "stopped: %d cars in range; %s\n", cars, formatServerStats(st))
		err = errors.Join(err, serr, srv.Close())
	}()
	log.Info("serving speed limits; Ctrl-C to stop", "mode", m, "xdp", srv.XDPMode(),
		"address", at.instance.NSIP+":"+strconv.Itoa(int(srv.Port())), "instance", at.instance.Name, "iface", iface)
	<-ctx.Done()
	return srv.Err()
}

// instance returns the instance serve serves from: with --on that instance of a running
// node, else server/0 of a node serve builds, which closeNode removes.
func (o serveOptions) instance(log *slog.Logger) (at nodeInstance, closeNode func() error, err error) {
	if o.on != "" {
		at, err = findSpeedLimitInstance(o.on, o.node)
		return at, func() error { return nil }, err
	}
	name := o.ownNode()
	sess, node, err := buildSpeedLimitNode(name)
	if err != nil {
		return at, nil, err
	}
	st := node.Status()
	for _, s := range st.Services {
		if s.Name == "server" {
			at = nodeInstance{node: statusNode{NodeStatus: st}, instance: s.Instances[0]}
		}
	}
	log.Info("built node "+name+" with client/0 and server/0; it goes when serve stops", "namespace", node.NS.Name)
	return at, sess.Close, nil
}

// buildSpeedLimitNode builds serve's own node as the speed-limit experiments build theirs
// (scenarios.BuildNode): the direct data plane, services client and server, one instance each.
func buildSpeedLimitNode(name string) (*netsetup.Session, *scenarios.Node, error) {
	cfg := netsetup.NodeConfig{Name: name}
	if err := cfg.Validate(); err != nil {
		return nil, nil, usageError("--node: %w", err)
	}
	direct, err := subjects.DataPlanes().Lookup("direct")
	if err != nil {
		return nil, nil, err
	}
	sess, err := netsetup.NewSession("edgebpf speedlimit serve")
	if err != nil {
		return nil, nil, err
	}
	node, err := scenarios.BuildNode(context.Background(), sess, cfg, direct)
	if err != nil {
		return nil, nil, errors.Join(err, sess.Close())
	}
	sess.OnClose(node.DataPlane.Close)
	return sess, node, nil
}

// formatServerStats lists a server's non-zero counters.
func formatServerStats(st map[string]uint64) string {
	order := []string{"user_answered", "user_left", "user_ignored", "limit_updates", "xdp_replied", "xdp_left",
		"xdp_left_empty", "xdp_left_contended", "xdp_csum_offloaded"}
	var parts []string
	for _, k := range order {
		if st[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", strings.ReplaceAll(k, "_", " "), st[k]))
		}
	}
	var passed []string
	for k, v := range st {
		if strings.HasPrefix(k, "xdp_pass_") && v != 0 {
			passed = append(passed, fmt.Sprintf("%s %d", strings.TrimPrefix(k, "xdp_pass_"), v))
		}
	}
	if len(passed) > 0 {
		parts = append(parts, "passed to the stack: "+strings.Join(passed, ", "))
	}
	if len(parts) == 0 {
		return "no requests"
	}
	return strings.Join(parts, ", ")
}

// clientOptions are the flags of `edgebpf speedlimit client`.
type clientOptions struct {
	on, to, node, leave string
	port                uint16
	clients, requests   int
	timeout, duration   time.Duration
	rate                float64
	json                bool
}

func newSpeedLimitClientCmd() *cobra.Command {
	var o clientOptions
	c := &cobra.Command{
		Use:   "client",
		Short: "Send speed-limit requests from an instance and time them",
		Long: `Client runs -n concurrent clients in the instance given with --on (default client/0), each
sending -m GET_SPEED_LIMIT requests to --to (a service's instance, default server/0, or an IP
address) one at a time, and prints the wall-clock time per request (percentiles), the per-client
median and standard deviation, the thesis's aggregate (time for M requests / M), timeouts and the
achieved rate. With --leave each (default) every car sends OUT_OF_RANGE after its reply, so the
server counts the cars in range; --leave never reproduces the thesis's ever-growing count.

With --rate the clients send open loop instead: rate requests per second in total for --duration,
on a fixed schedule, timed from when each request was due; the response times then show the
server's queue at that offered load.

The client turns TX checksum offload off on its instance's veth while it runs (restored on exit),
so that every request carries a full UDP checksum. A request without a reply within --timeout is
a drop; when every request drops, the client says so and exits with 1.`,
		Example: `  edgebpf speedlimit client -n 120 -m 10000
  edgebpf speedlimit client --rate 50000 --duration 10s -n 32
  edgebpf speedlimit client --to 10.18.0.3 --leave never`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runSpeedLimitClient(c.Context(), c.OutOrStdout(), c.ErrOrStderr(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.on, "on", "client", "the instance to send from: SERVICE[/INSTANCE]")
	f.StringVar(&o.to, "to", "server", "the server: SERVICE[/INSTANCE] or an IP address")
	f.StringVar(&o.node, "node", "", "node name, when several nodes run")
	f.Uint16Var(&o.port, "port", wire.DefaultPort, "the server's UDP port")
	f.IntVarP(&o.clients, "clients", "n", 120, "concurrent clients")
	f.IntVarP(&o.requests, "requests", "m", 10000, "requests per client (closed loop)")
	f.DurationVar(&o.timeout, "timeout", time.Second, "how long a client waits for a reply before counting a drop")
	f.StringVar(&o.leave, "leave", bench.LeaveEach, "when cars leave: each (after every reply) or never (the thesis)")
	f.Float64Var(&o.rate, "rate", 0, "open loop: total requests per second (0: closed loop)")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "open loop: how long to send")
	f.BoolVar(&o.json, "json", false, "print the summary as JSON")
	return c
}

// validate checks the flags without touching the system.
func (o clientOptions) validate() error {
	if o.leave != bench.LeaveEach && o.leave != bench.LeaveNever {
		return usageError("--leave %q: choose each or never", o.leave)
	}
	if o.rate < 0 || o.duration <= 0 || o.timeout <= 0 {
		return usageError("--rate, --duration and --timeout must be positive")
	}
	if o.clients < 1 || o.requests < 1 {
		return usageError("-n and -m must be at least 1")
	}
	return nil
}

// runSpeedLimitClient runs `edgebpf speedlimit client` and prints its summary to out.
func runSpeedLimitClient(ctx context.Context, out, _ io.Writer, o clientOptions) (err error) {
	if err := o.validate(); err != nil {
		return err
	}
	if err := netsetup.RequirePrivileges(); err != nil {
		return err
	}
	from, err := findSpeedLimitInstance(o.on, o.node)
	if err != nil {
		return err
	}
	target, err := o.target()
	if err != nil {
		return err
	}
	ns, err := netsetup.OpenNamespace(from.instance.Namespace)
	if err != nil {
		return err
	}
	defer ns.Close()
	iface, err := instanceIface(ns)
	if err != nil {
		return err
	}
	was, err := speedlimit.SetTxChecksum(ns, iface, false)
	if err != nil {
		return err
	}
	defer func() {
		if was {
			_, rerr := speedlimit.SetTxChecksum(ns, iface, true)
			err = errors.Join(err, rerr)
		}
	}()
	what, samples, err := o.measure(ctx, bench.Endpoints{Client: ns, Server: ns, Target: target})
	sum := bench.SummarizeSpeedLimit(samples)
	if len(samples) > 0 {
		if o.json {
			b, _ := json.MarshalIndent(sum, "", "  ")
			fmt.Fprintln(out, string(b))
		} else {
			printSpeedLimit(out, what, from.instance.Name, target.String(), o.port, sum)
		}
	}
	if err != nil {
		return err
	}
	if sum.Requests == 0 && sum.Timeouts > 0 {
		return fmt.Errorf("no reply from %s port %d: all %d requests timed out after %v or were refused: is `edgebpf speedlimit serve` running there?", target, o.port, sum.Timeouts, o.timeout)
	}
	return nil
}

// target returns the address --to names: an IP address, or an instance's namespace IP.
func (o clientOptions) target() (netip.Addr, error) {
	if target, err := netip.ParseAddr(o.to); err == nil {
		return target, nil
	}
	dst, err := findSpeedLimitInstance(o.to, o.node)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("--to: %w", err)
	}
	return netip.ParseAddr(dst.instance.NSIP)
}

// measure runs the clients, closed or open loop, and returns what ran, in words, and the
// samples.
func (o clientOptions) measure(ctx context.Context, ep bench.Endpoints) (string, []stats.Sample, error) {
	if o.rate > 0 {
		what := fmt.Sprintf("%d clients, open loop at %.0f req/s for %v", o.clients, o.rate, o.duration)
		samples, err := bench.SpeedLimitLoad(ctx, ep, bench.SpeedLimitLoadConfig{Port: o.port, Rates: []float64{o.rate},
			Clients: o.clients, PerRate: bench.Duration(o.duration), Timeout: bench.Duration(o.timeout), Leave: o.leave, Keep: 1 << 30})
		return what, samples, err
	}
	what := fmt.Sprintf("%d clients x %d requests", o.clients, o.requests)
	samples, err := bench.SpeedLimitResponse(ctx, ep, bench.SpeedLimitResponseConfig{Port: o.port, Clients: o.clients,
		Requests: o.requests, Timeout: bench.Duration(o.timeout), Leave: o.leave, Keep: o.requests})
	return what, samples, err
}

func printSpeedLimit(w io.Writer, what, from, target string, port uint16, s bench.SpeedLimitSummary) {
	d := func(v float64) string { return reports.FormatValue(v, "s") }
	fmt.Fprintf(w, "speed-limit client: %s, from %s to %s port %d\n", what, from, target, port)
	fmt.Fprintf(w, "  replies      %d, timeouts %d", s.Requests, s.Timeouts)
	if s.Loss > 0 {
		fmt.Fprintf(w, ", loss %.2f %%", s.Loss)
	}
	fmt.Fprintln(w)
	if s.Requests == 0 {
		return
	}
	fmt.Fprintf(w, "  per request  p50 %s, p90 %s, p99 %s, max %s, mean %s (wall clock)\n", d(s.P50), d(s.P90), d(s.P99), d(s.Max), d(s.Mean))
	if s.ClientMedian > 0 {
		fmt.Fprintf(w, "  per client   median %s, stddev %s (medians over the clients)\n", d(s.ClientMedian), d(s.ClientStddev))
	}
	if s.MeanRequestTime > 0 {
		fmt.Fprintf(w, "  thesis       time for M requests / M: %s (median over the clients)\n", d(s.MeanRequestTime))
	}
	fmt.Fprintf(w, "  rate         %.0f req/s; client threads' CPU %.0f %% of one core (%.0f %% in user space)\n", s.AchievedRate, s.ClientCPU, s.ClientCPUUser)
}
