package userspace

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/netsetup"
)

// tunnelConfig is what the proxy process of a cluster's worker needs for the tunnel: its own
// node IP (the UDP socket is bound to it, port netsetup.TunnelPort), the other workers' node
// IPs (the only senders it accepts) and the overlay MTU (the largest packet it carries).
type tunnelConfig struct {
	Self  netip.Addr   `json:"self"`
	Peers []netip.Addr `json:"peers"`
	MTU   int          `json:"mtu"`
}

func (t *tunnelConfig) validate() error {
	if !t.Self.Is4() || len(t.Peers) == 0 || t.MTU < 68 || t.MTU > 65535-28 {
		return fmt.Errorf("userspace tunnel needs this worker's IPv4 node IP, its peers and an MTU of 68 to 65507: got %v, %d peers, mtu %d",
			t.Self, len(t.Peers), t.MTU)
	}
	for _, p := range t.Peers {
		if !p.Is4() || p == t.Self {
			return fmt.Errorf("userspace tunnel: peer %v is not another worker's IPv4 node IP", p)
		}
	}
	return nil
}

// tunnelCounters count the tunnel's packets: what was sent and received, and every datagram
// or packet dropped, by cause. None of the dropped ones reaches the device.
type tunnelCounters struct {
	sent        atomic.Uint64 // datagrams sent to another worker
	sendErrors  atomic.Uint64 // datagrams the socket refused (e.g. no route to the peer)
	tooBig      atomic.Uint64 // packets for the tunnel larger than the overlay MTU, not sent
	received    atomic.Uint64 // datagrams received and written into the device
	reversed    atomic.Uint64 // of which: replies reverse-translated from a session here
	unknownPeer atomic.Uint64 // dropped: sender is not a worker of the cluster
	oversized   atomic.Uint64 // dropped: payload larger than the overlay MTU
	truncated   atomic.Uint64 // dropped: shorter than its IPv4 header or total length says, or longer
	notIPv4     atomic.Uint64 // dropped: payload is not an IPv4 packet
	fragment    atomic.Uint64 // dropped: an IP fragment (the proxy forwards none)
	unknownDst  atomic.Uint64 // dropped: inner destination neither a local instance nor a session's reply
	unknownSrc  atomic.Uint64 // dropped: inner source not an instance of the sending worker
	dead        atomic.Uint64 // dropped: the session's instance was removed
	unsupported atomic.Uint64 // dropped: ICMP other than echo and errors about a session
}

func (t *tunnelCounters) stats(m map[string]uint64) {
	for name, v := range map[string]*atomic.Uint64{
		"tunnel_sent": &t.sent, "tunnel_send_errors": &t.sendErrors, "tunnel_dropped_too_big": &t.tooBig,
		"tunnel_received": &t.received, "tunnel_reversed": &t.reversed,
		"tunnel_dropped_unknown_peer": &t.unknownPeer, "tunnel_dropped_oversized": &t.oversized,
		"tunnel_dropped_truncated": &t.truncated, "tunnel_dropped_not_ipv4": &t.notIPv4,
		"tunnel_dropped_fragment": &t.fragment, "tunnel_dropped_unknown_dst": &t.unknownDst,
		"tunnel_dropped_unknown_src": &t.unknownSrc, "tunnel_dropped_dead_session": &t.dead,
		"tunnel_dropped_unsupported": &t.unsupported,
	} {
		m[name] = v.Load()
	}
}

// setTunnel makes the core a cluster worker's: it accepts datagrams from peers and tunnels
// packets of at most mtu bytes. It is called before the first packet.
func (c *core) setTunnel(peers []netip.Addr, mtu int) {
	c.peers = make(map[[4]byte]bool, len(peers))
	for _, p := range peers {
		c.peers[p.As4()] = true
	}
	c.mtu = mtu
}

// receive decides what becomes of the payload of a datagram that peer sent to the tunnel
// port: the packet to write into the device (pkt itself, reverse-translated in place when
// it is a reply to a session here, else unchanged), or nil when it is dropped, which is
// counted. A packet forwarded unchanged must go from an instance IP of an instance on the
// sending worker to the namespace IP of an instance here; it opens (or refreshes) a transit
// session, so the local instance's replies go back to that worker unchanged. receive never
// panics on any input.
func (c *core) receive(peer [4]byte, pkt []byte) []byte {
	t := &c.st.tunnel
	if !c.peers[peer] {
		t.unknownPeer.Add(1)
		return nil
	}
	if len(pkt) > c.mtu {
		t.oversized.Add(1)
		return nil
	}
	if len(pkt) == 0 || pkt[0]>>4 != 4 {
		t.notIPv4.Add(1)
		return nil
	}
	h, ok := parseIPv4(pkt)
	if !ok || h.total != len(pkt) {
		// The datagram is the packet, exactly: one whose header says otherwise was cut or
		// padded on the way.
		t.truncated.Add(1)
		return nil
	}
	if h.mf || h.fragOff != 0 {
		t.fragment.Add(1)
		return nil
	}
	k := key{proto: h.proto, src: h.src, dst: h.dst}
	var flags uint8
	switch {
	case h.proto == protoTCP && len(h.l4) >= 20:
		flags = h.l4[13]
		k.sport, k.dport = binary.BigEndian.Uint16(h.l4), binary.BigEndian.Uint16(h.l4[2:])
	case h.proto == protoUDP && len(h.l4) >= 8:
		k.sport, k.dport = binary.BigEndian.Uint16(h.l4), binary.BigEndian.Uint16(h.l4[2:])
	case h.proto == protoICMP && len(h.l4) >= 8:
		switch h.l4[0] {
		case icmpEchoRequest, icmpEchoReply:
			id := binary.BigEndian.Uint16(h.l4[4:])
			k.sport, k.dport = id, id
		case icmpUnreachable, icmpTimeExceeded, icmpParamProblem:
			p, _ := c.icmpError(pkt, &h, true)
			if p == nil {
				t.unsupported.Add(1)
				return nil
			}
			t.received.Add(1)
			return p
		default:
			t.unsupported.Add(1)
			return nil
		}
	case h.proto == protoTCP || h.proto == protoUDP || h.proto == protoICMP:
		t.truncated.Add(1)
		return nil
	default:
		t.unsupported.Add(1)
		return nil
	}
	return c.arrive(peer, k, &h, pkt, flags)
}

// arrive is receive for a well-formed packet with key k: a reply to a session here is
// reverse-translated, else it is forwarded unchanged through a transit session.
func (c *core) arrive(peer [4]byte, k key, h *ipv4, pkt []byte, flags uint8) []byte {
	t := &c.st.tunnel
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.index[k]
	if i != 0 && c.expired(&c.slots[i], now) {
		c.remove(i)
		c.st.expired.Add(1)
		i = 0
	}
	if i != 0 {
		s := &c.slots[i]
		fwd := k == s.fwd
		switch {
		case s.transit != fwd:
			// A transit session's reply key, or a local client's own key: neither comes
			// through the tunnel.
			t.unknownSrc.Add(1)
			return nil
		case s.transit && s.via != peer:
			t.unknownSrc.Add(1)
			return nil
		case s.dead:
			c.touch(i, now, fwd, flags)
			t.dead.Add(1)
			return nil
		case !s.transit && s.via != peer:
			t.unknownSrc.Add(1) // a reply from a worker the session's server is not on
			return nil
		}
		c.touch(i, now, fwd, flags)
		if !s.transit {
			rewriteAddrs(pkt, h, s.revSrc, s.revDst)
			t.reversed.Add(1)
		}
		t.received.Add(1)
		return pkt[:h.total]
	}
	if !c.localNS(k.dst) {
		t.unknownDst.Add(1)
		return nil
	}
	from, ok := c.res.ByInstanceIP(netip.AddrFrom4(k.src))
	if ok {
		node, remote := c.res.RemoteNode(from)
		ok = remote && node.As4() == peer
	}
	if !ok {
		t.unknownSrc.Add(1)
		return nil
	}
	s := session{
		fwd: k, rev: key{proto: k.proto, src: k.dst, dst: k.src, sport: k.dport, dport: k.sport},
		via: peer, transit: true, used: true,
	}
	s.fwdSrc, s.fwdDst, s.revSrc, s.revDst = k.src, k.dst, k.dst, k.src
	if s.rev == s.fwd {
		t.unknownDst.Add(1)
		return nil
	}
	c.touch(c.store(s), now, true, flags)
	t.received.Add(1)
	return pkt[:h.total]
}

// localNS says whether a is the namespace IP of an instance on this worker.
func (c *core) localNS(a [4]byte) bool {
	in, ok := c.res.ByNamespaceIP(netip.AddrFrom4(a))
	if !ok {
		return false
	}
	_, remote := c.res.RemoteNode(in)
	return !remote
}

// tunnel is the worker's end of the tunnel: a UDP socket bound to its node IP, port
// netsetup.TunnelPort, in the node's namespace, sending each packet as the whole payload of
// one datagram to a peer's node IP and port (Oakestra's wire format, reference.md §8).
type tunnel struct {
	fd    int
	peers map[[4]byte]*unix.SockaddrInet4 // built once: sending allocates nothing
	pfd   []unix.PollFd
}

// openTunnel binds the tunnel's socket to cfg.Self in the calling process's namespace (the
// proxy process runs in the node's).
func openTunnel(cfg *tunnelConfig) (*tunnel, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("tunnel socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: netsetup.TunnelPort, Addr: cfg.Self.As4()}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("bind the tunnel to %v:%d: %w", cfg.Self, netsetup.TunnelPort, err)
	}
	t := &tunnel{fd: fd, peers: map[[4]byte]*unix.SockaddrInet4{}, pfd: []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}}
	for _, p := range cfg.Peers {
		t.peers[p.As4()] = &unix.SockaddrInet4{Port: netsetup.TunnelPort, Addr: p.As4()}
	}
	return t, nil
}

// send sends pkt to the worker with node IP via, one datagram, and counts it.
func (t *tunnel) send(st *tunnelCounters, via [4]byte, pkt []byte) {
	to := t.peers[via]
	if to == nil {
		st.sendErrors.Add(1)
		return
	}
	if err := unix.Sendto(t.fd, pkt, 0, to); err != nil {
		st.sendErrors.Add(1)
		return
	}
	st.sent.Add(1)
}

// recv reads the next datagram into buf and returns its length (the datagram's, which may
// exceed len(buf)) and sender, waiting in poll(2) when there is none. It allocates nothing.
func (t *tunnel) recv(buf []byte) (int, [4]byte, error) {
	var from unix.RawSockaddrInet4
	for {
		fromLen := uint32(unsafe.Sizeof(from))
		n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(t.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
			unix.MSG_TRUNC, uintptr(unsafe.Pointer(&from)), uintptr(unsafe.Pointer(&fromLen)))
		if errno == 0 {
			return int(n), from.Addr, nil
		}
		if errno != unix.EAGAIN && errno != unix.EINTR {
			return 0, from.Addr, fmt.Errorf("receive on the tunnel: %w", errno)
		}
		t.pfd[0].Revents = 0
		if _, err := unix.Poll(t.pfd, int(pollInterval/time.Millisecond)); err != nil && err != unix.EINTR {
			return 0, from.Addr, fmt.Errorf("poll the tunnel: %w", err)
		}
	}
}

// receiveLoop is the tunnel's receiving side: it reads each datagram, hands its payload to
// the core and writes what the core returns into the device, until the socket fails.
func receiveLoop(t *tunnel, tunFD int, c *core) error {
	buf := make([]byte, 1<<16)
	for {
		n, from, err := t.recv(buf)
		if err != nil {
			return err
		}
		if n > len(buf) {
			n = len(buf) // longer than any overlay MTU: receive drops it as oversized
		}
		if p := c.receive(from, buf[:n]); p != nil {
			if _, err := unix.Write(tunFD, p); err != nil {
				c.st.writeErrors.Add(1)
			}
		}
	}
}
