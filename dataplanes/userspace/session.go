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

// class is what a session is to the table: how long it lives without packets and how soon
// it is evicted. The table keeps the sessions of each class in a list, most recently used
// first; since a session's deadline is its last packet plus its class's timeout, each list
// is in deadline order too.
type class uint8

const (
	tcpHalfOpen    class = iota // SYN seen, nothing from the server yet (TCPHalfOpen)
	tcpClosing                  // FIN both ways or RST (TCPClosing)
	unreplied                   // UDP or echo, nothing from the server yet (UDPIdle)
	replied                     // UDP or echo the server answered (UDPIdle)
	tcpEstablished              // TCP the server answered (TCPIdle)
	numClasses
)

// expendable says whether sessions of the class are evicted before any other: they were
// never answered, or they have ended.
func (k class) expendable() bool { return k < replied }

// slot indexes session slots; slot 0 is never used, so a zero link or list is empty.
type slot int32

// link chains a session into one list.
type link struct{ prev, next slot }

// list is a doubly linked list of sessions, most recently used at head.
type list struct{ head, tail slot }

// Which of its two links a list uses: every session is in its class's list of the whole
// table and in its class's list of its client.
const (
	inTable  = 0
	inClient = 1
)

// session is one translated flow. It is stored under both of its keys.
//
// A client C (namespace IP Cns, instance IP Cinst) that addresses A (a service IP or an
// instance IP) and is given server S (namespace IP Sns):
//
//	fwd  Cns:p  -> A:q      becomes  Cinst:p -> Sns:q
//	rev  Sns:q  -> Cinst:p  becomes  A:q     -> Cns:p
//
// Sessions hold no pointers, so the preallocated slots cost the garbage collector nothing.
type session struct {
	fwd, rev       key
	fwdSrc, fwdDst [4]byte // Cinst, Sns
	revSrc, revDst [4]byte // A, Cns
	// via is the node IP of the worker the forward direction is tunnelled to: the server's
	// when it runs on another worker, the sending peer's for a transit session; zero when
	// the server is local.
	via            [4]byte
	last           int64   // monotonic ns of the last packet; the deadline follows from class
	links          [2]link // inTable, inClient
	client         int32   // index into core.clients
	class          class
	used           bool
	replied        bool // the server has sent a packet
	finFwd, finRev bool
	rst            bool
	// transit marks a session this worker only carries: a packet that came in through the
	// tunnel without a session here (fwd, from a remote client's instance IP to a local
	// namespace IP) was written into the device unchanged, and the local server's replies
	// (rev) go back through the tunnel to via unchanged; the sender's worker, which holds
	// the translating session, reverse-translates them. Addresses stay as they are.
	transit bool
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

// classify is the class the session's state puts it in.
func (s *session) classify() class {
	switch {
	case s.fwd.proto != protoTCP && s.replied:
		return replied
	case s.fwd.proto != protoTCP:
		return unreplied
	case s.closing():
		return tcpClosing
	case s.replied:
		return tcpEstablished
	}
	return tcpHalfOpen
}

// lru is the sessions of one client (or of the whole table), a list per class.
type lru struct {
	lists [numClasses]list
	n     int
	addr  [4]byte // the client's namespace IP
}

// resolver is the table query: the proxy process's copy of the registry (mirror) or a fake
// in tests. On a worker of a cluster it holds every instance of the cluster; RemoteNode
// says which worker runs one that is not local.
type resolver interface {
	ByServiceIP(ip netip.Addr) (netsetup.Service, []*netsetup.Instance, bool)
	ByInstanceIP(ip netip.Addr) (*netsetup.Instance, bool)
	ByNamespaceIP(ip netip.Addr) (*netsetup.Instance, bool)
	// RemoteNode returns the node IP of the worker that runs in, or false when in is local.
	RemoteNode(in *netsetup.Instance) (netip.Addr, bool)
}

// counters are the proxy's statistics; Stats reads them while the reader writes them.
type counters struct {
	forwarded    atomic.Uint64 // packets translated and written back
	created      atomic.Uint64 // sessions created (table misses resolved from the registry)
	refused      atomic.Uint64 // packets answered with a TCP RST or an ICMP unreachable
	noInstance   atomic.Uint64 // of which: service without instances
	deadSession  atomic.Uint64 // of which: session to or from a removed instance
	unknownDst   atomic.Uint64 // of which: address in the service range that nothing has
	unknownSrc   atomic.Uint64 // of which: sender is not a service instance
	unknownTCP   atomic.Uint64 // of which: TCP segment other than SYN without a session
	malformed    atomic.Uint64 // dropped: truncated, inconsistent lengths, not IP
	notIPv4      atomic.Uint64 // dropped: IPv6
	unsupported  atomic.Uint64 // dropped: ICMP other than echo and errors, stray replies
	fragments    atomic.Uint64 // dropped: IP fragments, first and later ones
	replaced     atomic.Uint64 // sessions replaced by a newer one with the same reply key
	evicted      atomic.Uint64 // sessions evicted because the table was full
	evictedShare atomic.Uint64 // sessions evicted because their client held its share
	expired      atomic.Uint64 // sessions removed after their timeout
	writeErrors  atomic.Uint64 // writes to the TUN device that failed

	tunnel tunnelCounters
}

// verdict is what becomes of a packet.
type verdict int

const (
	drop verdict = iota
	forward
	refuse
	passOn // through the tunnel unchanged: a reply whose session the client's worker holds
)

// core is the proxy without its device: the session table, the translation and the table
// query. handle runs on the reader goroutine; the registry's events and the reaper run on
// others, so the table is guarded by mu.
//
// The table is bounded: its session slots are allocated once (the pages are touched only
// as slots are first used) and a new session never waits for room. When the client already
// holds MaxSessionsPerClient sessions, its own least recently used session makes way;
// otherwise, when the table holds MaxSessions, the table's. Either way an expendable
// session (half-open, unreplied or ended) goes before an established one, so a flood of
// SYNs that nothing answers displaces only its own kind and expires within TCPHalfOpen.
type core struct {
	cfg Config
	res resolver
	now func() int64 // monotonic nanoseconds

	mu       sync.Mutex
	index    map[key]slot // each session twice, under fwd and rev
	slots    []session    // slot 0 unused
	next     slot         // the next slot never used
	free     slot         // chained through links[inTable].next
	live     int          // sessions in the table
	table    lru          // every session
	clients  []lru        // per client, index 0 unused
	clientOf map[[4]byte]int32
	freeLRUs []int32
	rr       map[netip.Addr]*atomic.Uint64 // per service IP: sessions balanced so far
	timeouts [numClasses]int64
	// peers are the node IPs of the cluster's other workers, the only senders the tunnel
	// accepts; empty on a standalone node. mtu bounds a tunnelled packet (the overlay MTU).
	// Both are set before the first packet and never change.
	peers map[[4]byte]bool
	mtu   int

	st counters
}

func newCore(cfg Config, res resolver) *core {
	start := time.Now()
	c := &core{
		cfg: cfg, res: res, now: func() int64 { return int64(time.Since(start)) },
		index: map[key]slot{}, slots: make([]session, cfg.MaxSessions+1), next: 1,
		clients: make([]lru, 1), clientOf: map[[4]byte]int32{}, rr: map[netip.Addr]*atomic.Uint64{},
	}
	c.timeouts = [numClasses]int64{
		tcpHalfOpen: int64(cfg.TCPHalfOpen), tcpClosing: int64(cfg.TCPClosing),
		unreplied: int64(cfg.UDPIdle), replied: int64(cfg.UDPIdle), tcpEstablished: int64(cfg.TCPIdle),
	}
	return c
}

// expired says whether s has outlived its class's timeout.
func (c *core) expired(s *session, now int64) bool { return now >= s.last+c.timeouts[s.class] }

// lookup finds or creates the session of packet k, read from the device, and returns the
// addresses the packet is to carry and the worker to tunnel it to (zero: this one), or why
// it is not forwarded as translated. h is the packet's header and flags its TCP flags.
func (c *core) lookup(k key, h *ipv4, flags uint8) (src, dst, via [4]byte, v verdict) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.index[k]
	if i != 0 {
		s := &c.slots[i]
		newSYN := k.proto == protoTCP && k == s.fwd && flags&(tcpSYN|tcpACK|tcpRST) == tcpSYN
		if c.expired(s, now) {
			c.remove(i)
			c.st.expired.Add(1)
			i = 0
		} else if newSYN && (s.closing() || s.dead) {
			// A new connection reusing the tuple of one that ended: balance it afresh.
			c.remove(i)
			i = 0
		}
	}
	if i == 0 {
		if i, via, v = c.create(k, h, flags); i == 0 {
			return src, dst, via, v
		}
	}
	s := &c.slots[i]
	fwd := k == s.fwd
	if (s.transit && fwd) || (!s.transit && !fwd && s.via != [4]byte{}) {
		// A transit session's forward packets, and a remote server's replies, come from the
		// tunnel: read from the device, they were sent by something else.
		c.st.unsupported.Add(1)
		return src, dst, via, drop
	}
	c.touch(i, now, fwd, flags)
	switch {
	case s.dead:
		c.st.deadSession.Add(1)
		return src, dst, via, refuse
	case s.transit:
		return s.rev.src, s.rev.dst, s.via, passOn
	case fwd:
		return s.fwdSrc, s.fwdDst, s.via, forward
	}
	return s.revSrc, s.revDst, via, forward
}

// touch records a packet of session i: TCP state, whether the server has answered, the
// time, and the session's place in its class's lists (at their heads).
func (c *core) touch(i slot, now int64, fwd bool, flags uint8) {
	s := &c.slots[i]
	if !fwd {
		s.replied = true
	}
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
	}
	s.last = now
	cl := &c.clients[s.client]
	c.unlink(&c.table.lists[s.class], i, inTable)
	c.unlink(&cl.lists[s.class], i, inClient)
	s.class = s.classify()
	c.pushFront(&c.table.lists[s.class], i, inTable)
	c.pushFront(&cl.lists[s.class], i, inClient)
}

// create resolves a miss from the registry (the table query) and stores the new session,
// evicting one if the client holds its share or the table is full. It returns the session
// and the worker its forward packets are tunnelled to (zero: this one), or 0 and the verdict
// for packets that cannot open a session (with the worker for passOn).
func (c *core) create(k key, h *ipv4, flags uint8) (slot, [4]byte, verdict) {
	var none [4]byte
	switch {
	case k.proto == protoTCP && flags&(tcpSYN|tcpACK|tcpRST) != tcpSYN:
		// Not the opening of a connection: it expired here or never went through the proxy.
		// Sending it to a freshly balanced instance would only provoke a reset from there.
		// A local server's segment to a remote client's instance IP is a reply whose session
		// the client's worker holds: it goes back through the tunnel unchanged.
		if via, ok := c.replyToRemote(k); ok {
			return 0, via, passOn
		}
		if flags&tcpRST != 0 {
			return 0, none, drop
		}
		c.st.unknownTCP.Add(1)
		return 0, none, refuse
	case k.proto == protoICMP && h.l4[0] != icmpEchoRequest:
		if via, ok := c.replyToRemote(k); ok && h.l4[0] == icmpEchoReply {
			return 0, via, passOn
		}
		c.st.unsupported.Add(1)
		return 0, none, drop
	}
	client, ok := c.res.ByNamespaceIP(netip.AddrFrom4(k.src))
	if ok {
		_, ok = c.res.RemoteNode(client)
		ok = !ok // a remote instance's packets come through the tunnel, not the device
	}
	if !ok {
		c.st.unknownSrc.Add(1)
		return 0, none, refuse
	}
	dst := netip.AddrFrom4(k.dst)
	var server *netsetup.Instance
	if svc, ins, ok := c.res.ByServiceIP(dst); ok {
		if len(ins) == 0 || checkPolicy(svc) != nil {
			c.st.noInstance.Add(1)
			return 0, none, refuse
		}
		server = ins[c.pick(svc.IP, len(ins))]
	} else if server, ok = c.res.ByInstanceIP(dst); !ok {
		c.st.unknownDst.Add(1)
		return 0, none, refuse
	}
	s := session{
		fwd:    k,
		fwdSrc: client.InstanceIP.As4(), fwdDst: server.NSIP.As4(),
		revSrc: k.dst, revDst: k.src,
		used: true,
	}
	if node, remote := c.res.RemoteNode(server); remote {
		s.via = node.As4()
	}
	s.rev = key{proto: k.proto, src: s.fwdDst, dst: s.fwdSrc, sport: k.dport, dport: k.sport}
	if s.rev == s.fwd {
		// An instance addressing its own instance IP from port p to port p: both directions
		// would look alike.
		c.st.unknownDst.Add(1)
		return 0, none, refuse
	}
	i := c.store(s)
	return i, s.via, forward
}

// replyToRemote says whether k, read from the device without a session, goes from a local
// instance to the instance IP of an instance on another worker, and returns that worker.
func (c *core) replyToRemote(k key) ([4]byte, bool) {
	if len(c.peers) == 0 {
		return [4]byte{}, false
	}
	from, ok := c.res.ByNamespaceIP(netip.AddrFrom4(k.src))
	if !ok {
		return [4]byte{}, false
	}
	if _, remote := c.res.RemoteNode(from); remote {
		return [4]byte{}, false
	}
	to, ok := c.res.ByInstanceIP(netip.AddrFrom4(k.dst))
	if !ok {
		return [4]byte{}, false
	}
	node, remote := c.res.RemoteNode(to)
	if !remote {
		return [4]byte{}, false
	}
	return node.As4(), true
}

// store makes room for s and inserts it: a session with the same reply key goes, then the
// client's least recently used one if it holds its share, else the table's if it is full.
func (c *core) store(s session) slot {
	if old := c.index[s.rev]; old != 0 {
		// Without port translation (Oakestra has none) two sessions can share the reply key,
		// e.g. one client port to a service IP and to the same instance's IP at once. The
		// replies can only reach one of them: the newer.
		c.remove(old)
		c.st.replaced.Add(1)
	}
	if ci := c.clientOf[s.fwd.src]; ci != 0 && c.clients[ci].n >= c.cfg.MaxSessionsPerClient {
		c.remove(c.victim(&c.clients[ci], inClient))
		c.st.evictedShare.Add(1)
	} else if c.live >= c.cfg.MaxSessions {
		c.remove(c.victim(&c.table, inTable))
		c.st.evicted.Add(1)
	}
	c.st.created.Add(1)
	return c.insert(s)
}

// victim is the session of l to evict: the least recently used expendable one, or the least
// recently used of all when none is expendable. l holds at least one session.
func (c *core) victim(l *lru, w int) slot {
	var best slot
	for _, expendable := range []bool{true, false} {
		for k := range numClasses {
			if k.expendable() != expendable {
				continue
			}
			if t := l.lists[k].tail; t != 0 && (best == 0 || c.slots[t].last < c.slots[best].last) {
				best = t
			}
		}
		if best != 0 {
			return best
		}
	}
	return best
}

// insert stores s in a free slot (one exists: create made room), under both keys and in its
// lists, and returns the slot.
func (c *core) insert(s session) slot {
	i := c.free
	if i != 0 {
		c.free = c.slots[i].links[inTable].next
	} else {
		i = c.next
		c.next++
	}
	ci := c.clientOf[s.fwd.src]
	if ci == 0 {
		if n := len(c.freeLRUs); n > 0 {
			ci, c.freeLRUs = c.freeLRUs[n-1], c.freeLRUs[:n-1]
		} else {
			ci = int32(len(c.clients))
			c.clients = append(c.clients, lru{})
		}
		c.clients[ci] = lru{addr: s.fwd.src}
		c.clientOf[s.fwd.src] = ci
	}
	s.client = ci
	s.class = s.classify()
	c.slots[i] = s
	c.index[s.fwd] = i
	c.index[s.rev] = i
	c.pushFront(&c.table.lists[s.class], i, inTable)
	c.pushFront(&c.clients[ci].lists[s.class], i, inClient)
	c.table.n++
	c.clients[ci].n++
	c.live++
	return i
}

// remove deletes session i under both keys and from its lists and frees its slot. c.mu is
// held.
func (c *core) remove(i slot) {
	s := &c.slots[i]
	if !s.used {
		return
	}
	delete(c.index, s.fwd)
	delete(c.index, s.rev)
	cl := &c.clients[s.client]
	c.unlink(&c.table.lists[s.class], i, inTable)
	c.unlink(&cl.lists[s.class], i, inClient)
	c.table.n--
	if cl.n--; cl.n == 0 {
		delete(c.clientOf, cl.addr)
		c.freeLRUs = append(c.freeLRUs, s.client)
	}
	c.live--
	*s = session{}
	s.links[inTable].next = c.free
	c.free = i
}

// pushFront makes session i the head of l, through its link w.
func (c *core) pushFront(l *list, i slot, w int) {
	c.slots[i].links[w] = link{next: l.head}
	if l.head != 0 {
		c.slots[l.head].links[w].prev = i
	} else {
		l.tail = i
	}
	l.head = i
}

// unlink takes session i out of l, through its link w.
func (c *core) unlink(l *list, i slot, w int) {
	lk := c.slots[i].links[w]
	if lk.prev != 0 {
		c.slots[lk.prev].links[w].next = lk.next
	} else {
		l.head = lk.next
	}
	if lk.next != 0 {
		c.slots[lk.next].links[w].prev = lk.prev
	} else {
		l.tail = lk.prev
	}
	c.slots[i].links[w] = link{}
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

// quoted finds the session of the packet quoted in an ICMP error: the quoted packet went
// from the error's recipient to its sender, so the session's key is the quote reversed.
// It returns the addresses the quoted packet's reverse direction is translated to, the
// worker the error is tunnelled to (zero: this one), and whether the error is carried: an
// error read from the device (fromTunnel false) travels as the session's packets from the
// device do, one that came through the tunnel as theirs from the tunnel do (a reply
// reverse-translated, or a transit session's forward direction unchanged).
func (c *core) quoted(k key, fromTunnel bool) (src, dst, via [4]byte, ok bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.index[k]
	if i == 0 {
		return src, dst, via, false
	}
	s := &c.slots[i]
	if s.dead || c.expired(s, now) {
		return src, dst, via, false
	}
	fwd := k == s.fwd
	switch {
	case s.transit && fwd == fromTunnel:
		return k.src, k.dst, s.via, true
	case s.transit:
		return src, dst, via, false
	case fromTunnel && !fwd:
		return s.revSrc, s.revDst, via, true
	case fromTunnel:
		return src, dst, via, false
	case fwd:
		return s.fwdSrc, s.fwdDst, s.via, true
	}
	return s.revSrc, s.revDst, via, s.via == [4]byte{}
}

// instanceRemoved marks every session to or from in dead, so that none of its packets is
// sent towards a namespace that is going away and its peers learn at once that it ended.
func (c *core) instanceRemoved(in *netsetup.Instance) {
	ns, inst := in.NSIP.As4(), in.InstanceIP.As4()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.slots[:c.next] {
		s := &c.slots[i]
		// The client's namespace IP is the forward source, the server's the forward target;
		// a transit session's client is a remote instance, known by its instance IP.
		if s.used && (s.fwd.src == ns || s.fwdDst == ns || (s.transit && s.fwd.src == inst)) {
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
	for i := range c.slots[:c.next] {
		if s := &c.slots[i]; s.used && (s.involves(ns) || s.involves(inst)) {
			c.remove(slot(i))
		}
	}
}

// serviceRemoved forgets the service's round-robin position.
func (c *core) serviceRemoved(svc netsetup.Service) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.rr, svc.IP)
}

// reap removes expired sessions: each class's list is in deadline order, so it stops at
// the first session of each that is still alive.
func (c *core) reap() {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range numClasses {
		for t := c.table.lists[k].tail; t != 0 && c.expired(&c.slots[t], now); t = c.table.lists[k].tail {
			c.remove(t)
			c.st.expired.Add(1)
		}
	}
}

// sessionCount is the number of sessions in the table, dead ones included.
func (c *core) sessionCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

// stats returns the counters and the number of sessions in the table.
func (c *core) stats() map[string]uint64 {
	st := &c.st
	m := map[string]uint64{
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
	if len(c.peers) > 0 {
		st.tunnel.stats(m)
	}
	return m
}
