package userspace

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
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
	New: func() dataplanes.DataPlane { return New() },
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

// DataPlane is the user-space TUN proxy.
type DataPlane struct {
	cfg Config

	mu      sync.Mutex
	node    *netsetup.Node
	fd      int // the TUN device, -1 when closed
	closing atomic.Bool
	core    *core
	unsub   func()
	stop    chan struct{}
	wg      sync.WaitGroup
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
// TUN device with the service range routed into it, the registry subscription, and the
// goroutines that read, translate and write packets and that reap expired sessions. On
// error it undoes what it did.
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
	d.core = newCore(d.cfg, node.Registry)
	d.unsub = node.Registry.Subscribe(d.event)
	d.stop = make(chan struct{})
	d.closing.Store(false)
	d.wg.Add(2)
	// The reader's thread is pinned when the run's plan (in ctx) pins the proxy role.
	pin := cpupin.PinningFrom(ctx)
	go func() {
		defer pin.Thread(cpupin.Proxy)()
		d.run(newReader(d.fd, &d.closing), d.core)
	}()
	go d.reap(d.core, d.stop)
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

// run is the proxy: one goroutine that reads a packet from the TUN device, translates it
// in place and writes it back, with two fixed buffers. One reader, as in Oakestra: a second
// one would need a multi-queue TUN device, which Oakestra does not use.
func (d *DataPlane) run(r *reader, c *core) {
	defer d.wg.Done()
	buf := make([]byte, 1<<16)
	out := make([]byte, replySize)
	for {
		n, err := r.read(buf)
		if err != nil {
			if err != errClosing {
				slog.Error("userspace proxy: the tun device failed; the proxy stops", "err", err)
			}
			return
		}
		if p := c.handle(buf[:n], out); p != nil {
			if _, err := unix.Write(r.fd, p); err != nil {
				c.st.writeErrors.Add(1)
			}
		}
	}
}

// reap removes expired sessions every ReapInterval until stop is closed.
func (d *DataPlane) reap(c *core, stop <-chan struct{}) {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			c.reap()
		}
	}
}

// event follows the node's registry: it refuses services with an unknown balancing
// policy, ends the sessions of removed instances at once and forgets stale state.
func (d *DataPlane) event(ev netsetup.Event) error {
	switch ev.Kind {
	case netsetup.ServiceCreated:
		return checkPolicy(ev.Service)
	case netsetup.ServiceRemoved:
		d.core.serviceRemoved(ev.Service)
	case netsetup.InstanceCreated:
		d.core.instanceAdded(ev.Instance)
	case netsetup.InstanceRemoved:
		d.core.instanceRemoved(ev.Instance)
	}
	return nil
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
	d.mu.Lock()
	if d.node != nil {
		mtu = strconv.Itoa(d.node.Config().MTU)
	}
	d.mu.Unlock()
	return map[string]string{
		"proxy":                   "user-space TUN proxy (Oakestra's), inside the edgebpf process",
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

// Stats returns the proxy's counters and the number of sessions in its table.
func (d *DataPlane) Stats() map[string]uint64 {
	d.mu.Lock()
	c := d.core
	d.mu.Unlock()
	if c == nil {
		return map[string]uint64{}
	}
	st := &c.st
	return map[string]uint64{
		"forwarded": st.forwarded.Load(), "sessions_created": st.created.Load(),
		"sessions": uint64(c.sessionCount()), "sessions_expired": st.expired.Load(),
		"sessions_replaced": st.replaced.Load(), "sessions_evicted": st.evicted.Load(),
		"sessions_evicted_share": st.evictedShare.Load(), "refused": st.refused.Load(),
		"refused_no_instance": st.noInstance.Load(), "refused_dead_session": st.deadSession.Load(),
		"refused_unknown_dst": st.unknownDst.Load(), "refused_unknown_src": st.unknownSrc.Load(),
		"refused_unknown_tcp": st.unknownTCP.Load(),
		"dropped_malformed":   st.malformed.Load(), "dropped_ipv6": st.notIPv4.Load(), "dropped_unsupported": st.unsupported.Load(),
		"dropped_fragment": st.fragments.Load(), "write_errors": st.writeErrors.Load(),
	}
}

// Close stops the proxy: it unsubscribes, stops the goroutines, closes the TUN device
// (which removes it and its route) and restores the sysctls it changed. It is idempotent.
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
	if d.stop != nil {
		close(d.stop)
		d.stop = nil
	}
	d.closing.Store(true)
	d.wg.Wait()
	if d.fd >= 0 {
		// The kernel removes the device, its address and its route with its last descriptor.
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
