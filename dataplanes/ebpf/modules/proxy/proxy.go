// Package proxy is the service proxy module of the eBPF manager: Oakestra's semantic
// addressing (service IPs and instance IPs in the node's service range) translated in the
// kernel by a TCX program on every instance's bridge-side veth (bpf/proxy.c).
//
// The kernel keeps sessions keyed by the full 5-tuple in an LRU table, both directions, with
// expiry (TCP idle, UDP idle, and a short linger once both directions sent a FIN, or after an
// RST, as conntrack does: a half-closed connection keeps its session), balances new sessions
// round-robin per service (only a SYN starts a TCP session), fixes checksums incrementally (a zero UDP checksum stays zero; IPv4
// options are handled) and delivers straight into the target namespace with bpf_redirect_peer.
// What it cannot resolve comes up here with the packet itself: the control plane asks the
// node's registry (Oakestra's table query), installs the translation and puts the packet back
// through an AF_PACKET socket in the sender's namespace, so that it crosses the TC hook again.
// No packet is dropped for want of a translation, and once a session exists no packet comes
// up. A service without instances is refused at once with an ICMP port unreachable.
//
// A packet to the service range whose source is not the namespace IP of the instance it came
// from is dropped in the kernel and counted (a spoofed-source flood never reaches user space);
// upcalls are rate-limited per CPU in the kernel, and the control plane logs one line per
// cause and second, with the number of occurrences.
//
// Translations are installed lazily, on the first packet, as Oakestra does; registry events
// keep installed ones current (an instance removed leaves every backend set and its sessions
// at once). Limits, documented in the README: IPv4 only; fragments to the service range, the
// first included, are dropped and counted (the node's MTU makes them rare); ICMP to a service IP is not proxied
// and the node answers network unreachable; a reply whose reverse session the LRU evicted comes
// from the server's instance IP rather than the service IP.
//
// The session-hit path is built for a BPF test run's cost (BenchmarkProxyCost): one checksum
// delta for both addresses, computed inline; headers written in place after the verifier's
// prologue made a cloned head writable once; the L4 checksum through one bpf_l4_csum_replace
// (the only way to honour the skb's checksum state); the coarse clock; last_seen refreshed
// once per tick, so a running flow leaves its session's cache line clean.
//
// Note: on live traffic the program costs 0.3 µs per GSO packet of a TCP stream and 1.5-2 µs
// at 89 packets/s, against 58 ns warm (BenchmarkLiveCost, the README's per-packet cost
// section), and shrinking the session table to bring that down was tried and rejected: with
// 1,024 entries instead of 262,144 the live cost was the same. perf (cpu-clock sampling; the
// VM has no hardware counters) put half of the proxy's live samples in the session lookup's
// first touch of the entry and most of the rest in the program's own code: cold caches
// between packets, which grow as the rate falls, not the table's size or TLB reach. Un-cloning
// TCP's skbs copies nothing (pskb_expand_head never sampled), and the kernel's run-time
// accounting adds ~15 ns. bpf_csum_diff was also left out: the delta of two words is a few
// instructions, cheaper than the helper call. bpf_jiffies64, which the verifier inlines, would
// save the coarse clock's call, but user space cannot learn the kernel's HZ to convert the
// timeouts, so the clock stays in nanoseconds.
package proxy

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/perf"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/netsetup"
)

// Factory creates a proxy for the manager on node; dataplanes/ebpf/modules lists it as "proxy".
func Factory(node *netsetup.Node, config json.RawMessage, load manager.Load) (manager.Module, error) {
	return newProxy(node, config, load)
}

// Config is the proxy's configuration.
type Config struct {
	TCPIdle    string `json:"tcp_idle"`    // default "300s"
	UDPIdle    string `json:"udp_idle"`    // default "60s"
	TCPClosing string `json:"tcp_closing"` // default "10s": linger after both FINs or an RST
	// UpcallRate is how many misses per second and CPU may go up to the control plane (a
	// token bucket with a burst of one second's worth); the rest are dropped and counted.
	UpcallRate int `json:"upcall_rate"` // default 1000
}

// Proxy is a loaded proxy module on one node.
type Proxy struct {
	node     *netsetup.Node
	cfg      Config
	timeouts proxyPxConfig // the configuration loaded into the program
	nodeIP   netip.Addr    // this worker's node IP on a cluster's underlay; invalid standalone
	objs     proxyObjects
	logs     *logLimiter // one line per cause and second

	reader      *perf.Reader
	done        chan struct{}
	unsubscribe func()

	mu        sync.Mutex
	installed map[netip.Addr]*installed  // service and instance IPs with their backend sets
	clients   map[int]*netsetup.Instance // attached instances by bridge-side veth ifindex
	inject    map[int]*injector          // per attached instance, for re-injection and refusals
	counters  Counters
}

// installed is one translated address: its backend generation and backends.
type installed struct {
	gen      uint32
	backends []*netsetup.Instance
	service  string // empty for an instance IP
}

// Counters are what the control plane counts (the kernel's counters are in Stats).
type Counters struct {
	Upcalls   uint64 `json:"upcalls"`
	Reinject  uint64 `json:"reinjected"`
	Refused   uint64 `json:"refused"` // ICMP port unreachable sent: a service without instances
	Unknown   uint64 `json:"unknown"` // addresses in the service range nobody owns
	Lost      uint64 `json:"lost"`    // upcalls the perf ring dropped
	Errors    uint64 `json:"errors"`  // upcalls that failed (a full map, say)
	LastError string `json:"last_error,omitempty"`
}

// New loads the proxy for node.
func New(node *netsetup.Node, raw json.RawMessage) (*Proxy, error) {
	return newProxy(node, raw, manager.LoadTCX)
}

func newProxy(node *netsetup.Node, raw json.RawMessage, load manager.Load) (*Proxy, error) {
	if node == nil {
		return nil, errors.New("proxy: no node")
	}
	cfg := Config{TCPIdle: "300s", UDPIdle: "60s", TCPClosing: "10s", UpcallRate: 1000}
	if len(raw) > 0 && string(raw) != "null" {
		if err := manager.StrictJSON(raw, &cfg); err != nil {
			return nil, fmt.Errorf("%w: %w", manager.ErrBadConfig, err)
		}
	}
	var c proxyPxConfig
	for _, d := range []struct {
		name, value string
		out         *uint64
	}{{"tcp_idle", cfg.TCPIdle, &c.TcpIdleNs}, {"udp_idle", cfg.UDPIdle, &c.UdpIdleNs}, {"tcp_closing", cfg.TCPClosing, &c.ClosingNs}} {
		v, err := time.ParseDuration(d.value)
		if err != nil || v < time.Second {
			return nil, fmt.Errorf("%w: %s %q is not a duration of at least 1s, such as \"60s\"", manager.ErrBadConfig, d.name, d.value)
		}
		*d.out = uint64(v)
	}
	if cfg.UpcallRate < 1 || cfg.UpcallRate > 1_000_000 {
		return nil, fmt.Errorf("%w: upcall_rate %d is out of range: use 1 to 1000000 upcalls per second and CPU", manager.ErrBadConfig, cfg.UpcallRate)
	}
	// A session's last_seen is refreshed once per tick, not per packet: a tenth of the
	// shortest timeout, at most a second, is how late a session may expire.
	c.TouchNs = min(uint64(time.Second), c.TcpIdleNs/10, c.UdpIdleNs/10, c.ClosingNs/10)
	c.UpcallCostNs = uint64(time.Second) / uint64(cfg.UpcallRate)
	c.UpcallBurstNs = c.UpcallCostNs * uint64(cfg.UpcallRate)
	rng := node.Config().ServiceRange
	c.ServiceNet = be32(rng.Masked().Addr())
	c.ServiceMask = be32(netip.AddrFrom4(maskBytes(rng.Bits())))

	spec, err := loadProxy()
	if err != nil {
		return nil, fmt.Errorf("load proxy spec: %w", err)
	}
	if err := spec.Variables["config"].Set(c); err != nil {
		return nil, fmt.Errorf("configure proxy: %w", err)
	}
	u, _ := node.Underlay()
	p := &Proxy{node: node, cfg: cfg, timeouts: c, nodeIP: u.IP, logs: newLogLimiter(slog.Default().With("module", "proxy"), time.Second), done: make(chan struct{}),
		installed: map[netip.Addr]*installed{}, clients: map[int]*netsetup.Instance{}, inject: map[int]*injector{}}
	if err := load(spec, &p.objs); err != nil {
		return nil, fmt.Errorf("load proxy programs: %w", err)
	}
	p.reader, err = perf.NewReader(p.objs.PxUpcalls, 64*1024)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open proxy upcall ring: %w", err), p.objs.Close())
	}
	p.unsubscribe = node.Registry.Subscribe(p.onEvent)
	go p.upcalls()
	return p, nil
}

// Programs returns the translating program for TC ingress (packets an instance sends); the
// egress hook needs none.
func (p *Proxy) Programs() (ingress, egress *ebpf.Program) { return p.objs.ProxyIn, nil }

// Attached makes the instance a known client, so its sessions start in the kernel, and opens
// its re-injection socket.
func (p *Proxy) Attached(in *netsetup.Instance) error {
	if err := p.udpGSO(in, false); err != nil {
		return err
	}
	inj, err := newInjector(p.node, in)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.putClient(in); err != nil {
		return errors.Join(err, inj.close())
	}
	p.clients[in.VethIndex] = in
	p.inject[in.VethIndex] = inj
	return nil
}

// Detached forgets the instance as a client.
func (p *Proxy) Detached(in *netsetup.Instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.objs.PxClients.Delete(be32(in.NSIP))
	_ = p.udpGSO(in, true) // best effort: the instance may be gone
	delete(p.clients, in.VethIndex)
	if inj, ok := p.inject[in.VethIndex]; ok {
		_ = inj.close()
		delete(p.inject, in.VethIndex)
	}
}

func (p *Proxy) putClient(in *netsetup.Instance) error {
	v := proxyPxClient{InstanceIp: be32(in.InstanceIP), Ifindex: uint32(in.VethIndex)}
	copy(v.Mac[:], in.MAC)
	if err := p.objs.PxClients.Update(be32(in.NSIP), &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("install client %s: %w", in.Name, mapErr(err, p.objs.PxClients))
	}
	return nil
}

// Config returns the effective configuration.
func (p *Proxy) Config() any { return p.cfg }

// Shared is what the tunnel module works on: the proxy's session and client tables and its
// tunnel switch, with the timeouts its sessions expire by.
type Shared struct {
	Sessions, Clients, Tunnel *ebpf.Map
	TCPIdle, UDPIdle, Closing time.Duration
}

// Shared returns the maps and timeouts the tunnel module shares. The maps stay the proxy's:
// the manager keeps the proxy while a module that uses them exists.
func (p *Proxy) Shared() Shared {
	return Shared{Sessions: p.objs.PxSessions, Clients: p.objs.PxClients, Tunnel: p.objs.PxTunnel,
		TCPIdle: time.Duration(p.timeouts.TcpIdleNs), UDPIdle: time.Duration(p.timeouts.UdpIdleNs), Closing: time.Duration(p.timeouts.ClosingNs)}
}

// Close stops the upcall reader and releases everything.
func (p *Proxy) Close() error {
	p.unsubscribe()
	err := p.reader.Close()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	for idx, inj := range p.inject {
		err = errors.Join(err, inj.close())
		delete(p.inject, idx)
	}
	return errors.Join(err, p.objs.Close())
}

// Install translates ip to backends: a service IP with its instances, or an instance IP with
// its one instance. The new backend set replaces the old one atomically.
func (p *Proxy) Install(ip netip.Addr, service string, backends []*netsetup.Instance) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.install(ip, service, backends)
}

func (p *Proxy) install(ip netip.Addr, service string, backends []*netsetup.Instance) error {
	old := p.installed[ip]
	gen := uint32(1)
	if old != nil {
		gen = old.gen + 1
	}
	key := be32(ip)
	for i, b := range backends {
		v := proxyPxBackend{Nsip: be32(b.NSIP), Ifindex: uint32(b.VethIndex)}
		copy(v.Mac[:], b.MAC)
		if p.remote(b) {
			// On another worker: reached through the tunnel at its node IP, never by
			// redirect_peer (no veth here).
			if !b.NodeIP.Is4() {
				p.dropGen(key, gen, i)
				return fmt.Errorf("install %s: instance %s is on another worker whose node IP is unknown", ip, b.Name)
			}
			v.Ifindex, v.NodeIp = 0, be32(b.NodeIP)
		}
		k := proxyPxBackendKey{Ip: key, Gen: gen, Slot: uint32(i)}
		if err := p.objs.PxBackends.Update(&k, &v, ebpf.UpdateAny); err != nil {
			p.dropGen(key, gen, i)
			return fmt.Errorf("install %s: %w", ip, mapErr(err, p.objs.PxBackends))
		}
	}
	var svc proxyPxService
	_ = p.objs.PxServices.Lookup(key, &svc) // keep the round-robin cursor
	svc.Count, svc.Gen = uint32(len(backends)), gen
	if err := p.objs.PxServices.Update(key, &svc, ebpf.UpdateAny); err != nil {
		p.dropGen(key, gen, len(backends))
		return fmt.Errorf("install %s: %w", ip, mapErr(err, p.objs.PxServices))
	}
	if old != nil {
		p.dropGen(key, old.gen, len(old.backends))
	}
	p.installed[ip] = &installed{gen: gen, backends: backends, service: service}
	return nil
}

func (p *Proxy) dropGen(key, gen uint32, n int) {
	for i := range n {
		k := proxyPxBackendKey{Ip: key, Gen: gen, Slot: uint32(i)}
		_ = p.objs.PxBackends.Delete(&k)
	}
}

// Uninstall stops translating ip; its next packet goes up to the control plane again.
func (p *Proxy) Uninstall(ip netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.uninstall(ip)
}

func (p *Proxy) uninstall(ip netip.Addr) {
	old, ok := p.installed[ip]
	if !ok {
		return
	}
	_ = p.objs.PxServices.Delete(be32(ip))
	p.dropGen(be32(ip), old.gen, len(old.backends))
	delete(p.installed, ip)
}

// onEvent keeps installed translations current and ends sessions of removed instances.
func (p *Proxy) onEvent(ev netsetup.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch ev.Kind {
	case netsetup.ServiceRemoved:
		p.uninstall(ev.Service.IP)
	case netsetup.InstanceCreated, netsetup.InstanceRemoved:
		if ev.Kind == netsetup.InstanceRemoved {
			p.uninstall(ev.Instance.InstanceIP)
			p.purgeSessions(ev.Instance)
		}
		if _, ok := p.installed[ev.Service.IP]; ok {
			ins := p.node.Registry.Instances(ev.Service.Name)
			if ev.Kind == netsetup.InstanceRemoved {
				ins = without(ins, ev.Instance)
			}
			if err := p.install(ev.Service.IP, ev.Service.Name, ins); err != nil {
				return err
			}
		}
	}
	return nil
}

func without(ins []*netsetup.Instance, gone *netsetup.Instance) []*netsetup.Instance {
	out := ins[:0:0]
	for _, in := range ins {
		if in != gone {
			out = append(out, in)
		}
	}
	return out
}

// purgeSessions deletes every session from, to or through the instance, so no packet of an
// old session is sent towards a namespace that is gone.
func (p *Proxy) purgeSessions(in *netsetup.Instance) {
	nsip, iip := be32(in.NSIP), be32(in.InstanceIP)
	var k proxyPxSessionKey
	var v proxyPxSession
	var doomed []proxyPxSessionKey
	it := p.objs.PxSessions.Iterate()
	for it.Next(&k, &v) {
		// A remote instance has no veth (0), as every tunnelled session: only a local one's
		// veth names its sessions.
		if k.Saddr == nsip || k.Daddr == iip || v.NewDaddr == nsip || v.NewSaddr == iip || in.VethIndex != 0 && int(v.Ifindex) == in.VethIndex {
			doomed = append(doomed, k)
		}
	}
	for _, k := range doomed {
		_ = p.objs.PxSessions.Delete(&k)
	}
}

// Stats are the kernel's counters, summed over CPUs, and the control plane's.
type Stats struct {
	Translated   uint64   `json:"translated"`
	NewSessions  uint64   `json:"new_sessions"`
	Upcalls      uint64   `json:"upcalls"`
	SessionFull  uint64   `json:"session_insert_failed"`
	Fragments    uint64   `json:"fragments_dropped"`
	TooBig       uint64   `json:"too_big_dropped"` // misses too long to send up whole: destination installed, packet dropped
	Spoofed      uint64   `json:"spoofed_dropped"`
	UpcallsShed  uint64   `json:"upcalls_shed"`
	NoSession    uint64   `json:"tcp_without_session"`
	Tunnelled    uint64   `json:"tunnelled"`              // packets encapsulated to another worker
	NoTunnel     uint64   `json:"no_tunnel_dropped"`      // for a remote instance while no tunnel is deployed
	TunnelTooBig uint64   `json:"tunnel_too_big_dropped"` // too long for the underlay once encapsulated
	TunnelErrors uint64   `json:"tunnel_errors"`          // encapsulations the kernel refused
	Installed    int      `json:"installed_addresses"`
	ControlPlane Counters `json:"control_plane"`
}

// Stats reads the counters.
func (p *Proxy) Stats() (Stats, error) {
	var sums [13]uint64
	var vals []uint64
	for i := range sums {
		if err := p.objs.PxStats.Lookup(uint32(i), &vals); err != nil {
			return Stats{}, fmt.Errorf("read proxy stats: %w", err)
		}
		for _, v := range vals {
			sums[i] += v
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Translated: sums[0], NewSessions: sums[1], Upcalls: sums[2], SessionFull: sums[3], Fragments: sums[4],
		TooBig: sums[5], Spoofed: sums[6], UpcallsShed: sums[7], NoSession: sums[8],
		Tunnelled: sums[9], NoTunnel: sums[10], TunnelTooBig: sums[11], TunnelErrors: sums[12], Installed: len(p.installed), ControlPlane: p.counters}, nil
}

// Routes serves GET /stats.
func (p *Proxy) Routes() []manager.Route {
	return []manager.Route{manager.StatsRoute("proxy counters: translated packets, sessions, upcalls, refusals", p.Stats)}
}

// be32 returns an IPv4 address as the uint32 whose memory holds its network-order bytes, as
// the BPF program reads addresses from packets.
func be32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

func maskBytes(bits int) [4]byte {
	var m [4]byte
	binary.BigEndian.PutUint32(m[:], ^uint32(0)<<(32-bits))
	return m
}

func mapErr(err error, m *ebpf.Map) error {
	if errors.Is(err, errFull) {
		return fmt.Errorf("map %s is full (%d entries): %w", m.String(), m.MaxEntries(), err)
	}
	return err
}

// remote says the instance runs on another worker of a cluster (no veth on this node): the
// registry says so, or it names a node IP other than this worker's, as Oakestra's table does.
func (p *Proxy) remote(in *netsetup.Instance) bool {
	return in.Remote() || in.NodeIP.IsValid() && in.NodeIP != p.nodeIP
}
