package userspace

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/internal/cpupin"
	"github.com/edgebpf/edgebpf/internal/features"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/subject"
)

// Spec describes the userspace data plane for the registry (dataplanes/builtin).
var Spec = dataplanes.Spec{
	Spec: subject.Spec{
		Kind: subject.DataPlane, Name: "userspace", Order: 10,
		Description: "Oakestra's user-space TUN proxy (the Riegel thesis's baseline)",
		Needs:       []features.Name{features.TUN},
		Colour:      color.RGBA{0x1f, 0x77, 0xb4, 0xff},
	},
	New:       func() dataplanes.DataPlane { return New() },
	CrossNode: true, // across workers: see Deploy on a cluster's worker
}

// TunName is the TUN device: Oakestra's goProxyTun, named with the project's link prefix.
const TunName = netsetup.LinkPrefix + "tun0"

// TunAddr is the TUN device's address, Oakestra's.
var TunAddr = netip.MustParsePrefix("10.19.1.254/32")

// Config holds the proxy's session timeouts and limits.
type Config struct {
	// TCPIdle ends a TCP session without packets for this long. Oakestra never expires
	// sessions; Linux conntrack keeps established TCP for days, IPVS for 15 minutes.
	TCPIdle time.Duration
	// TCPHalfOpen ends a TCP session whose server has sent nothing yet this long after the
	// client's last segment (a retransmitted SYN starts it again). It is what keeps a flood
	// of SYNs that nothing answers from holding the table: conntrack's SYN_SENT is 120 s,
	// sized for round trips across the Internet; an instance on the node answers a SYN in
	// microseconds.
	TCPHalfOpen time.Duration
	// TCPClosing ends a TCP session this long after FIN in both directions or a RST, so the
	// last ACK still finds it.
	TCPClosing time.Duration
	// UDPIdle ends a UDP or ICMP echo session without packets for this long.
	UDPIdle time.Duration
	// ReapInterval is how often expired sessions are removed. A packet never uses an expired
	// session, whether it was reaped or not.
	ReapInterval time.Duration
	// MaxSessions bounds the session table. Its slots are allocated at Deploy (memory is
	// touched only as they are first used: 88 bytes each, plus about 40 in the index); a new
	// session in a full table evicts the least recently used one, half-open and ended
	// sessions before established ones.
	MaxSessions int
	// MaxSessionsPerClient is the share of the table one client instance may hold: a new
	// session of a client at its share evicts that client's own least recently used
	// session (again half-open and ended ones first), never another client's.
	MaxSessionsPerClient int
}

// DefaultConfig is what New uses.
var DefaultConfig = Config{
	TCPIdle:              5 * time.Minute,
	TCPHalfOpen:          10 * time.Second,
	TCPClosing:           10 * time.Second,
	UDPIdle:              30 * time.Second,
	ReapInterval:         5 * time.Second,
	MaxSessions:          1 << 17, // the eBPF proxy's 262,144 entries, one per direction
	MaxSessionsPerClient: 1 << 15, // a quarter of the table
}

func (c Config) validate() error {
	if c.TCPIdle <= 0 || c.TCPHalfOpen <= 0 || c.TCPClosing <= 0 || c.UDPIdle <= 0 || c.ReapInterval <= 0 {
		return fmt.Errorf("userspace proxy timeouts must be positive: tcp idle %v, tcp half-open %v, tcp closing %v, udp idle %v, reap every %v",
			c.TCPIdle, c.TCPHalfOpen, c.TCPClosing, c.UDPIdle, c.ReapInterval)
	}
	if c.MaxSessions < 1 || c.MaxSessions > 1<<30 || c.MaxSessionsPerClient < 1 || c.MaxSessionsPerClient > c.MaxSessions {
		return fmt.Errorf("userspace proxy limits out of range: %d sessions (1 to 2^30), %d per client (1 to the sessions)",
			c.MaxSessions, c.MaxSessionsPerClient)
	}
	return nil
}

// checkPolicy rejects balancing policies the proxy does not implement. An empty policy is
// the default, round-robin.
func checkPolicy(svc netsetup.Service) error {
	if svc.Balancing != netsetup.RoundRobin && svc.Balancing != "" {
		return fmt.Errorf("service %s asks for balancing %q: the userspace proxy implements only %q", svc.Name, svc.Balancing, netsetup.RoundRobin)
	}
	return nil
}

// DataPlane is the user-space TUN proxy. Deploy starts the proxy process; the DataPlane
// in the edgebpf process forwards the node's registry events to it and asks it for Stats.
type DataPlane struct {
	cfg Config

	mu   sync.Mutex
	node *netsetup.Node
	fd   int // the TUN device until the proxy process holds it, -1 after
	cmd  *exec.Cmd
	ctl  *client
	conn net.Conn
	// evMu orders the registry's events after the registry's contents Deploy sends.
	evMu  sync.Mutex
	unsub func()
	// unforward puts back the node namespace's forwarding sysctls Deploy changed.
	unforward func() error
	deployed  bool
}

// New returns an undeployed proxy with DefaultConfig.
func New() *DataPlane { return NewWithConfig(DefaultConfig) }

// NewWithConfig returns an undeployed proxy with cfg.
func NewWithConfig(cfg Config) *DataPlane { return &DataPlane{cfg: cfg, fd: -1} }

// Name returns "userspace".
func (*DataPlane) Name() string { return "userspace" }

// Deploy sets the proxy up in the node's namespace: forwarding on, ICMP redirects off, the
// TUN device with the service range routed into it, and the proxy process (ProcessName),
// started in the node's namespace with the device and one end of a control socket, told the
// registry's contents and then its events. The node's session records the process, so
// `edgebpf cleanup` ends it after a SIGKILL of this one, which also kills it (the parent-death
// signal). It is pinned to the CPUs the run's plan (in ctx) gives the proxy role. On error
// Deploy undoes what it did.
func (d *DataPlane) Deploy(ctx context.Context, node *netsetup.Node) (err error) {
	if node == nil {
		return errors.New("deploy userspace proxy: no node")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("deploy userspace proxy: %w", err)
	}
	if err := d.cfg.validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.deployed {
		return errors.New("deploy userspace proxy: already deployed; use a new one per node")
	}
	for _, svc := range node.Registry.Services() {
		if err := checkPolicy(svc); err != nil {
			return fmt.Errorf("deploy userspace proxy: %w", err)
		}
	}
	d.node = node
	defer func() {
		if err != nil {
			err = fmt.Errorf("deploy userspace proxy on %s: %w", node.Name(), errors.Join(err, d.teardown()))
		}
	}()
	d.deployed = true
	// Forwarding on and ICMP redirects off in the node namespace.
	if d.unforward, err = node.EnableForwarding(); err != nil {
		return err
	}
	if d.fd, err = openTUN(node.NS, TunName); err != nil {
		return err
	}
	if err := d.configureTUN(); err != nil {
		return err
	}
	if err := d.startProcess(); err != nil {
		return err
	}
	cpupin.PinningFrom(ctx).Process(cpupin.Proxy, d.cmd.Process.Pid)
	cfg := d.cfg
	if _, err := d.ctl.call(request{Op: opInit, Config: &cfg, Tunnel: tunnelOf(node)}); err != nil {
		return err
	}
	d.evMu.Lock()
	defer d.evMu.Unlock()
	d.unsub = node.Registry.Subscribe(d.event)
	// Events from here on wait for evMu; the registry already holds what they announce, so
	// its contents now include every creation before them. Creations the copy holds and
	// removals of what it lacks change nothing.
	for _, svc := range node.Registry.Services() {
		if err := d.send(netsetup.Event{Kind: netsetup.ServiceCreated, Service: svc}); err != nil {
			return err
		}
		for _, in := range node.Registry.Instances(svc.Name) {
			if err := d.send(netsetup.Event{Kind: netsetup.InstanceCreated, Service: svc, Instance: in}); err != nil {
				return err
			}
		}
	}
	return nil
}

// startProcess starts the proxy process in the node's namespace with the TUN device and
// one end of a control socket pair, and closes this process's copy of the device: the
// device, its address and its route go when the proxy process ends. d.mu is held.
func (d *DataPlane) startProcess() error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("control socket for the proxy process: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "proxy-control"), os.NewFile(uintptr(fds[1]), "proxy-control")
	defer theirs.Close()
	d.conn, err = net.FileConn(mine)
	_ = mine.Close()
	if err != nil {
		_ = theirs.Close()
		return fmt.Errorf("control socket for the proxy process: %w", err)
	}
	d.ctl = newClient(d.conn)
	tun := os.NewFile(uintptr(d.fd), TunName)
	d.fd = -1
	defer tun.Close()
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{ProcessName, "--node", d.node.Name()}, // for ps; nothing reads them
		Env:        append(os.Environ(), parentEnv+"="+strconv.Itoa(os.Getpid())),
		ExtraFiles: []*os.File{tun, theirs}, // descriptors 3 and 4: tunFD, controlFD
		Stderr:     os.Stderr,
	}
	if err := d.node.StartProcess(cmd); err != nil {
		return fmt.Errorf("start the proxy process: %w", err)
	}
	d.cmd = cmd
	return nil
}

// configureTUN gives the TUN device the node's MTU and Oakestra's address, sets it up and
// routes the service range into it.
func (d *DataPlane) configureTUN() error {
	h, err := d.node.NS.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(TunName)
	if err != nil {
		return fmt.Errorf("find %s: %w", TunName, err)
	}
	if err := h.LinkSetMTU(link, d.node.Config().MTU); err != nil {
		return fmt.Errorf("set mtu of %s: %w", TunName, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: TunAddr.Addr().AsSlice(), Mask: net.CIDRMask(TunAddr.Bits(), 32)}}
	if err := h.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("address %s: %w", TunName, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", TunName, err)
	}
	sr := d.node.Config().ServiceRange
	route := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       &net.IPNet{IP: sr.Addr().AsSlice(), Mask: net.CIDRMask(sr.Bits(), 32)},
		Scope:     netlink.SCOPE_LINK,
	}
	if err := h.RouteAdd(route); err != nil {
		return fmt.Errorf("route %s into %s: %w", sr, TunName, err)
	}
	return nil
}

// event follows the node's registry: it sends each event to the proxy process, which
// refuses services with an unknown balancing policy, ends the sessions of removed
// instances at once and forgets stale state.
func (d *DataPlane) event(ev netsetup.Event) error {
	d.evMu.Lock()
	defer d.evMu.Unlock()
	return d.send(ev)
}

// send sends ev to the proxy process and returns its refusal, if any. d.evMu is held.
func (d *DataPlane) send(ev netsetup.Event) error {
	if ev.Kind == netsetup.ServiceCreated {
		if err := checkPolicy(ev.Service); err != nil {
			return err
		}
	}
	if d.ctl == nil {
		return errors.New("userspace proxy is not deployed")
	}
	_, err := d.ctl.call(request{Op: opEvent, Event: toWire(ev)})
	return err
}

// PID returns the proxy process's PID, or 0 when it is not deployed.
func (d *DataPlane) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Target returns the service IP: clients address the service, the proxy picks the instance.
func (d *DataPlane) Target(svc netsetup.Service) (netip.Addr, error) {
	if !svc.IP.IsValid() {
		return netip.Addr{}, fmt.Errorf("service %s has no service IP", svc.Name)
	}
	return svc.IP, nil
}

// Settings describes the proxy for meta.json.
func (d *DataPlane) Settings() map[string]string {
	mtu := "the node's (1450 by default)"
	tunnel := "none (a standalone node)"
	d.mu.Lock()
	if d.node != nil {
		mtu = strconv.Itoa(d.node.Config().MTU)
		if t := tunnelOf(d.node); t != nil {
			tunnel = fmt.Sprintf("Oakestra's: the translated packet as one UDP datagram from %v to a peer's node IP, port %d; %d peers; packets over the mtu dropped and counted",
				t.Self, netsetup.TunnelPort, len(t.Peers))
		}
	}
	d.mu.Unlock()
	return map[string]string{
		"tunnel":                  tunnel,
		"proxy":                   "user-space TUN proxy (Oakestra's), in a process of its own",
		"process":                 ProcessName,
		"tun":                     TunName,
		"tun_address":             TunAddr.String(),
		"mtu":                     mtu,
		"readers":                 "1",
		"io":                      "read, translate, write one packet at a time; poll(2) on the reader's own thread when idle",
		"balancing":               netsetup.RoundRobin,
		"session_key":             "protocol, addresses, ports",
		"tcp_idle":                d.cfg.TCPIdle.String(),
		"tcp_half_open":           d.cfg.TCPHalfOpen.String(),
		"tcp_closing":             d.cfg.TCPClosing.String(),
		"udp_idle":                d.cfg.UDPIdle.String(),
		"max_sessions":            strconv.Itoa(d.cfg.MaxSessions),
		"max_sessions_per_client": strconv.Itoa(d.cfg.MaxSessionsPerClient),
		"eviction":                "least recently used, half-open and ended sessions first; a client at its share evicts its own",
		"icmp_echo":               "translated like UDP with the echo id as port",
		"fragments":               "every fragment dropped and counted (dropped_fragment)",
		"refusals":                "TCP RST, ICMP port unreachable (UDP), host unreachable (echo)",
	}
}

// Stats returns the proxy's counters and the number of sessions in its table, asked of the
// proxy process; empty when it is not deployed or its process is gone.
func (d *DataPlane) Stats() map[string]uint64 {
	d.mu.Lock()
	c := d.ctl
	d.mu.Unlock()
	if c == nil {
		return map[string]uint64{}
	}
	rep, err := c.call(request{Op: opStats})
	if err != nil || rep.Stats == nil {
		return map[string]uint64{}
	}
	return rep.Stats
}

// Close stops the proxy: it unsubscribes, kills the proxy process and waits for it (its
// TUN device, address and route go with it) and restores the sysctls it changed. It is
// idempotent.
func (d *DataPlane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.teardown()
}

// teardown undoes whatever part of Deploy happened. d.mu is held.
func (d *DataPlane) teardown() error {
	if !d.deployed {
		return nil
	}
	d.deployed = false
	if d.unsub != nil {
		d.unsub()
		d.unsub = nil
	}
	var errs []error
	if d.cmd != nil {
		// Killed, not asked: the proxy holds nothing that needs an orderly end, and the kernel
		// removes the device, its address and its route with the process's last descriptor.
		// The node's Close may have killed it already (it runs in the node's namespace), and
		// the session's Close may have reaped it: then there is nothing left to do.
		_ = d.cmd.Process.Kill()
		_ = d.cmd.Wait()
		d.cmd = nil
	}
	if d.conn != nil {
		_ = d.conn.Close()
		d.conn, d.ctl = nil, nil
	}
	if d.fd >= 0 {
		errs = append(errs, unix.Close(d.fd))
		d.fd = -1
	}
	// A closed node has taken its namespace, and these settings, with it: unforward then
	// restores nothing.
	if d.unforward != nil {
		errs = append(errs, d.unforward())
		d.unforward = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close userspace proxy: %w", err)
	}
	return nil
}

// placement is where in runs: its worker's name and node IP, and whether that is another
// worker of the cluster.
func placement(in *netsetup.Instance) (node string, nodeIP netip.Addr, remote bool) {
	return in.Node, in.NodeIP, in.Remote()
}

// tunnelOf is the tunnel's configuration on a worker of a cluster: its node IP, its peers'
// and the overlay MTU; nil on a standalone node, which has no tunnel.
func tunnelOf(node *netsetup.Node) *tunnelConfig {
	u, ok := node.Underlay()
	if !ok {
		return nil
	}
	t := &tunnelConfig{Self: u.IP, MTU: node.Config().MTU}
	for _, p := range u.Peers {
		t.Peers = append(t.Peers, p.IP)
	}
	return t
}
