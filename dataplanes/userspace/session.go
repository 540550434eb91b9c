package userspace

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgebpf/edgebpf/netsetup"
)

// key is one direction of a session: a packet's protocol, addresses and ports as it comes
// out of the TUN device. For ICMP echo both ports are the echo identifier.
type key struct {
	src, dst     [4]byte
	sport, dport uint16
	proto        uint8
}

// session is one translated flow. It is stored under both of its keys.
//
// A client C (namespace IP Cns, instance IP Cinst) that addresses A (a service IP or an
// instance IP) and is given server S (namespace IP Sns):
//
//	fwd  Cns:p  -> A:q      becomes  Cinst:p -> Sns:q
//	rev  Sns:q  -> Cinst:p  becomes  A:q     -> Cns:p
type session struct {
	fwd, rev       key
	fwdSrc, fwdDst [4]byte // Cinst, Sns
	revSrc, revDst [4]byte // A, Cns
	deadline       int64   // monotonic ns; the session is gone from then on
	finFwd, finRev bool
	rst            bool
	// dead marks a session whose client or server instance was removed: its packets are
	// refused (RST or ICMP unreachable to the sender), never sent on, until it expires.
	dead bool
}

// closing says whether a TCP session has ended (FIN both ways, or RST).
func (s *session) closing() bool { return s.rst || (s.finFwd && s.finRev) }

// involves says whether a is one of the addresses in the session's keys.
func (s *session) involves(a [4]byte) bool {
	return s.fwd.src == a || s.fwd.dst == a || s.rev.src == a || s.rev.dst == a
}

// resolver is the table query: the node's registry (*netsetup.Registry) or a fake in tests.
type resolver interface {
	ByServiceIP(ip netip.Addr) (netsetup.Service, []*netsetup.Instance, bool)
	ByInstanceIP(ip netip.Addr) (*netsetup.Instance, bool)
	ByNamespaceIP(ip netip.Addr) (*netsetup.Instance, bool)
}

// counters are the proxy's statistics; Stats reads them while the reader writes them.
type counters struct {
	forwarded   atomic.Uint64 // packets translated and written back
	created     atomic.Uint64 // sessions created (table misses resolved from the registry)
	refused     atomic.Uint64 // packets answered with a TCP RST or an ICMP unreachable
	noInstance  atomic.Uint64 // of which: service without instances
	deadSession atomic.Uint64 // of which: session to or from a removed instance
	unknownDst  atomic.Uint64 // of which: address in the service range that nothing has
	unknownSrc  atomic.Uint64 // of which: sender is not a service instance
	unknownTCP  atomic.Uint64 // of which: TCP segment other than SYN without a session
	tableFull   atomic.Uint64 // of which: the session table was full
	malformed   atomic.Uint64 // dropped: truncated, inconsistent lengths, not IP
	notIPv4     atomic.Uint64 // dropped: IPv6
	unsupported atomic.Uint64 // dropped: ICMP other than echo and errors, stray replies
	fragments   atomic.Uint64 // dropped: IP fragments, first and later ones
	evicted     atomic.Uint64 // sessions replaced by a newer one with the same reply key
	expired     atomic.Uint64 // sessions removed after their timeout
	writeErrors atomic.Uint64 // writes to the TUN device that failed
}

// verdict is what becomes of a packet.
type verdict int

const (
	drop verdict = iota
	forward
	refuse
)

// core is the proxy without its device: the session cache, the translation and the table
// query. handle runs on the reader goroutine; the registry's events and the reaper run on
// others, so the cache is guarded by mu.
type core struct {
	cfg Config
	res resolver
	now func() int64 // monotonic nanoseconds

	mu       sync.Mutex
	sessions map[key]*session              // each session twice, under fwd and rev
	live     int                           // sessions in the map
	rr       map[netip.Addr]*atomic.Uint64 // per service IP: sessions balanced so far

	st counters
}

func newCore(cfg Config, res resolver) *core {
	start := time.Now()
	return &core{
		cfg: cfg, res: res, now: func() int64 { return int64(time.Since(start)) },
		sessions: map[key]*session{}, rr: map[netip.Addr]*atomic.Uint64{},
	}
}

// lookup finds or creates the session of packet k and returns the addresses the packet is
// to carry, or why it is not forwarded. h is the packet's header and flags its TCP flags.
func (c *core) lookup(k key, h *ipv4, flags uint8) (src, dst [4]byte, v verdict) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[k]
	if s != nil {
		newSYN := k.proto == protoTCP && k == s.fwd && flags&(tcpSYN|tcpACK|tcpRST) == tcpSYN
		if now >= s.deadline {
			c.remove(s)
			c.st.expired.Add(1)
			s = nil
		} else if newSYN && (s.closing() || s.dead) {
			// A new connection reusing the tuple of one that ended: balance it afresh.
			c.remove(s)
			s = nil
		}
	}
	if s == nil {
		if s, v = c.create(k, h, flags, now); s == nil {
			return src, dst, v
		}
	}
	fwd := k == s.fwd
	s.touch(c.cfg, now, fwd, flags)
	if s.dead {
		c.st.deadSession.Add(1)
		return src, dst, refuse
	}
	if fwd {
		return s.fwdSrc, s.fwdDst, forward
	}
	return s.revSrc, s.revDst, forward
}

// touch records a packet of the session: TCP state and the new deadline.
func (s *session) touch(cfg Config, now int64, fwd bool, flags uint8) {
	idle := cfg.UDPIdle
	if s.fwd.proto == protoTCP {
		if flags&tcpRST != 0 {
			s.rst = true
		}
		if flags&tcpFIN != 0 {
			if fwd {
				s.finFwd = true
			} else {
				s.finRev = true
			}
		}
		idle = cfg.TCPIdle
		if s.closing() {
			idle = cfg.TCPClosing
		}
	}
	s.deadline = now + int64(idle)
}

// create resolves a miss from the registry (the table query) and stores the new session.
// It returns nil and the verdict for packets that cannot open a session.
func (c *core) create(k key, h *ipv4, flags uint8, now int64) (*session, verdict) {
	switch {
	case k.proto == protoTCP && flags&(tcpSYN|tcpACK|tcpRST) != tcpSYN:
		// Not the opening of a connection: it expired here or never went through the proxy.
		// Sending it to a freshly balanced instance would only provoke a reset from there.
		if flags&tcpRST != 0 {
			return nil, drop
		}
		c.st.unknownTCP.Add(1)
		return nil, refuse
	case k.proto == protoICMP && h.l4[0] != icmpEchoRequest:
		c.st.unsupported.Add(1)
		return nil, drop
	}
	client, ok := c.res.ByNamespaceIP(netip.AddrFrom4(k.src))
	if !ok {
		c.st.unknownSrc.Add(1)
		return nil, refuse
	}
	dst := netip.AddrFrom4(k.dst)
	var server *netsetup.Instance
	if svc, ins, ok := c.res.ByServiceIP(dst); ok {
		if len(ins) == 0 || checkPolicy(svc) != nil {
			c.st.noInstance.Add(1)
			return nil, refuse
		}
		server = ins[c.pick(svc.IP, len(ins))]
	} else if server, ok = c.res.ByInstanceIP(dst); !ok {
		c.st.unknownDst.Add(1)
		return nil, refuse
	}
	if c.live >= c.cfg.MaxSessions {
		c.st.tableFull.Add(1)
		return nil, refuse
	}
	s := &session{
		fwd:    k,
		fwdSrc: client.InstanceIP.As4(), fwdDst: server.NSIP.As4(),
		revSrc: k.dst, revDst: k.src,
	}
	s.rev = key{proto: k.proto, src: s.fwdDst, dst: s.fwdSrc, sport: k.dport, dport: k.sport}
	if s.rev == s.fwd {
		// An instance addressing its own instance IP from port p to port p: both directions
		// would look alike.
		c.st.unknownDst.Add(1)
		return nil, refuse
	}
	if old := c.sessions[s.rev]; old != nil {
		// Without port translation (Oakestra has none) two sessions can share the reply key,
		// e.g. one client port to a service IP and to the same instance's IP at once. The
		// replies can only reach one of them: the newer.
		c.remove(old)
		c.st.evicted.Add(1)
	}
	c.sessions[s.fwd] = s
	c.sessions[s.rev] = s
	c.live++
	c.st.created.Add(1)
	return s, forward
}

// pick is round-robin balancing: the service's n-th session goes to instance n mod count.
func (c *core) pick(svc netip.Addr, count int) int {
	ctr := c.rr[svc]
	if ctr == nil {
		ctr = new(atomic.Uint64)
		c.rr[svc] = ctr
	}
	return int((ctr.Add(1) - 1) % uint64(count))
}

// remove deletes s under both keys; a session is stored under both or neither. c.mu is
// held.
func (c *core) remove(s *session) {
	if c.sessions[s.fwd] != s {
		return
	}
	delete(c.sessions, s.fwd)
	delete(c.sessions, s.rev)
	c.live--
}

// quoted finds the session of the packet quoted in an ICMP error: the quoted packet went
// from the error's recipient to its sender, so the session's key is the quote reversed.
// It returns the addresses the quoted packet's reverse direction is translated to.
func (c *core) quoted(k key) (src, dst [4]byte, ok bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[k]
	if s == nil || s.dead || now >= s.deadline {
		return src, dst, false
	}
	if k == s.fwd {
		return s.fwdSrc, s.fwdDst, true
	}
	return s.revSrc, s.revDst, true
}

// instanceRemoved marks every session to or from in dead, so that none of its packets is
// sent towards a namespace that is going away and its peers learn at once that it ended.
func (c *core) instanceRemoved(in *netsetup.Instance) {
	ns := in.NSIP.As4()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sessions {
		// The client's namespace IP is the forward source, the server's the forward target.
		if s.fwd.src == ns || s.fwdDst == ns {
			s.dead = true
		}
	}
}

// instanceAdded forgets sessions that involve the new instance's addresses: they belonged
// to a removed instance whose addresses were given out again.
func (c *core) instanceAdded(in *netsetup.Instance) {
	ns, inst := in.NSIP.As4(), in.InstanceIP.As4()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sessions {
		if s.involves(ns) || s.involves(inst) {
			c.remove(s)
		}
	}
}

// serviceRemoved forgets the service's round-robin position.
func (c *core) serviceRemoved(svc netsetup.Service) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.rr, svc.IP)
}

// reap removes expired sessions.
func (c *core) reap() {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, s := range c.sessions {
		if now >= s.deadline && k == s.fwd {
			c.remove(s)
			c.st.expired.Add(1)
		}
	}
}

// sessionCount is the number of sessions in the cache, dead ones included.
func (c *core) sessionCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}
