package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/cilium/ebpf/perf"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/internal/inetcsum"
	"github.com/edgebpf/edgebpf/netsetup"
)

// errFull is what a hash map answers when it has no room for a new key.
var errFull = unix.E2BIG

// upcallHeader is struct px_upcall in proxy.c, written by hand (bpf2go sees no BTF for a type
// used only on the stack); a test checks the size.
type upcallHeader struct {
	Ifindex uint32
	Len     uint32
}

const upcallHeaderLen = 8

// upcalls reads packets the kernel could not translate until the reader is closed.
func (p *Proxy) upcalls() {
	defer close(p.done)
	for {
		rec, err := p.reader.Read()
		if err != nil {
			if errors.Is(err, perf.ErrClosed) {
				return
			}
			p.fail(because("reading upcalls failed", fmt.Errorf("read upcall: %w", err)))
			continue
		}
		if rec.LostSamples > 0 {
			p.mu.Lock()
			p.counters.Lost += rec.LostSamples
			p.mu.Unlock()
			continue
		}
		if err := p.handle(rec.RawSample); err != nil {
			p.fail(err)
		}
	}
}

func (p *Proxy) fail(err error) {
	p.mu.Lock()
	p.counters.Errors++
	p.counters.LastError = err.Error()
	p.mu.Unlock()
	p.logs.Warn(causeOf(err, "upcall failed"), err)
}

// handle resolves one packet: the sender must be an attached instance; the destination is
// looked up in the registry (the table query) and installed; then the packet goes back.
func (p *Proxy) handle(raw []byte) error {
	if len(raw) < upcallHeaderLen {
		return because("malformed upcall", fmt.Errorf("upcall of %d bytes is shorter than its header", len(raw)))
	}
	h := upcallHeader{Ifindex: binary.NativeEndian.Uint32(raw), Len: binary.NativeEndian.Uint32(raw[4:])}
	if int(h.Len) > len(raw)-upcallHeaderLen {
		return because("malformed upcall", fmt.Errorf("upcall says %d packet bytes but carries %d", h.Len, len(raw)-upcallHeaderLen))
	}
	pkt := raw[upcallHeaderLen : upcallHeaderLen+int(h.Len)] // perf records may be padded
	src, dst, ok := ipv4Addrs(pkt)
	if !ok {
		return because("malformed upcall", errors.New("upcall is not an IPv4 packet"))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counters.Upcalls++
	from, ok := p.clients[int(h.Ifindex)]
	inj := p.inject[int(h.Ifindex)]
	if !ok || inj == nil {
		return because("upcall from an unattached interface", fmt.Errorf("upcall from interface %d, which is no attached instance's", h.Ifindex))
	}
	if from.NSIP != src {
		// A packet with a source that is not the instance's own: not a client we translate.
		return because("upcall with a spoofed source", fmt.Errorf("upcall from %s with source %s, not its namespace IP %s", from.Name, src, from.NSIP))
	}
	// The sender is a known client: Attached installed it, so no map write here.
	target, known := p.installed[dst]
	if !known {
		if svc, ins, ok := p.node.Registry.ByServiceIP(dst); ok {
			if err := p.install(dst, svc.Name, ins); err != nil {
				return err
			}
		} else if in, ok := p.node.Registry.ByInstanceIP(dst); ok {
			if err := p.install(dst, "", []*netsetup.Instance{in}); err != nil {
				return err
			}
		} else {
			p.counters.Unknown++
			return inj.refuse(pkt, from, icmpNetUnreachable)
		}
		target = p.installed[dst]
	}
	if len(target.backends) == 0 {
		p.counters.Refused++
		return inj.refuse(pkt, from, icmpPortUnreachable)
	}
	if truncated(pkt) {
		// A GSO packet, sent up cut (the kernel counted it too big): its destination is
		// installed now, and the packet, whose tail user space never saw, is dropped.
		return nil
	}
	p.counters.Reinject++
	return inj.reinject(pkt)
}

// truncated says whether the IPv4 packet pkt (an Ethernet frame) is longer than the bytes at hand.
func truncated(pkt []byte) bool {
	return 14+int(binary.BigEndian.Uint16(pkt[16:])) > len(pkt)
}

func ipv4Addrs(pkt []byte) (src, dst netip.Addr, ok bool) {
	if len(pkt) < 14+20 || binary.BigEndian.Uint16(pkt[12:]) != unix.ETH_P_IP {
		return src, dst, false
	}
	src = netip.AddrFrom4([4]byte(pkt[26:30]))
	dst = netip.AddrFrom4([4]byte(pkt[30:34]))
	return src, dst, true
}

// injector holds the sockets that put packets back for one instance: one in the instance's
// namespace on its own veth (what it sends there crosses the bridge-side TC ingress hook
// again, now translated), one in the node namespace on the bridge-side veth (what it sends
// there reaches the instance, for refusals).
type injector struct {
	instFD, nodeFD int
	bridgeMAC      net.HardwareAddr
}

func newInjector(node *netsetup.Node, in *netsetup.Instance) (*injector, error) {
	inj := &injector{instFD: -1, nodeFD: -1}
	open := func(ns *netsetup.Namespace, ifname string, fd *int, mac *net.HardwareAddr) error {
		h, err := ns.Netlink()
		if err != nil {
			return err
		}
		defer h.Close()
		l, err := h.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", ifname, ns.Name, err)
		}
		if mac != nil {
			br, err := h.LinkByName(node.Bridge)
			if err != nil {
				return fmt.Errorf("find bridge %s: %w", node.Bridge, err)
			}
			*mac = br.Attrs().HardwareAddr
		}
		return ns.Do(func() error {
			s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // protocol 0: send only
			if err != nil {
				return fmt.Errorf("open packet socket: %w", err)
			}
			if err := unix.Bind(s, &unix.SockaddrLinklayer{Ifindex: l.Attrs().Index}); err != nil {
				unix.Close(s)
				return fmt.Errorf("bind packet socket to %s: %w", ifname, err)
			}
			*fd = s
			return nil
		})
	}
	if err := open(in.NS, in.Peer, &inj.instFD, nil); err != nil {
		return nil, fmt.Errorf("re-injection socket for %s: %w", in.Name, err)
	}
	if err := open(node.NS, in.Veth, &inj.nodeFD, &inj.bridgeMAC); err != nil {
		return nil, errors.Join(fmt.Errorf("refusal socket for %s: %w", in.Name, err), inj.close())
	}
	return inj, nil
}

// reinject sends pkt again from the instance. The kernel handed it up with the checksum the
// sender's stack left to offload (only the pseudo-header sum): the L4 checksum is completed
// first, or the receiver would drop the packet.
func (inj *injector) reinject(pkt []byte) error {
	completeL4Checksum(pkt)
	if _, err := unix.Write(inj.instFD, pkt); err != nil {
		return fmt.Errorf("re-inject packet: %w", err)
	}
	return nil
}

// ICMP destination-unreachable codes the proxy answers with.
const (
	icmpNetUnreachable  = 0
	icmpPortUnreachable = 3
)

// refuse answers pkt with an ICMP destination unreachable from its destination, so that the
// sender's connect fails at once instead of timing out.
func (inj *injector) refuse(pkt []byte, to *netsetup.Instance, code byte) error {
	frame := unreachable(pkt, to.MAC, inj.bridgeMAC, code)
	if frame == nil {
		return nil
	}
	if _, err := unix.Write(inj.nodeFD, frame); err != nil {
		return fmt.Errorf("send icmp unreachable to %s: %w", to.Name, err)
	}
	return nil
}

func (inj *injector) close() error {
	var errs []error
	for _, fd := range []*int{&inj.instFD, &inj.nodeFD} {
		if *fd >= 0 {
			errs = append(errs, unix.Close(*fd))
			*fd = -1
		}
	}
	return errors.Join(errs...)
}

// unreachable builds an Ethernet frame carrying an ICMP destination unreachable for pkt (an
// Ethernet frame with IPv4), from pkt's destination to its source, quoting its IP header and
// the first 8 bytes after it, as RFC 792 asks.
func unreachable(pkt []byte, dstMAC, srcMAC net.HardwareAddr, code byte) []byte {
	if len(pkt) < 14+20 {
		return nil
	}
	ip := pkt[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ihl < 20 || len(ip) < ihl {
		return nil
	}
	quote := ip[:min(len(ip), ihl+8)]
	out := make([]byte, 14+20+8+len(quote))
	copy(out[0:6], dstMAC)
	copy(out[6:12], srcMAC)
	binary.BigEndian.PutUint16(out[12:], unix.ETH_P_IP)
	h := out[14:34]
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+8+len(quote)))
	h[8] = 64 // TTL
	h[9] = unix.IPPROTO_ICMP
	copy(h[12:16], ip[16:20]) // from the address the sender tried
	copy(h[16:20], ip[12:16]) // to the sender
	binary.BigEndian.PutUint16(h[10:], checksum(h))
	icmp := out[34:]
	icmp[0], icmp[1] = 3, code
	copy(icmp[8:], quote)
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return out
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 { return inetcsum.Checksum(b) }

// completeL4Checksum recomputes the TCP or UDP checksum of an Ethernet frame with IPv4 in
// place. A UDP checksum of zero (none) stays zero; fragments and malformed frames are left
// alone.
func completeL4Checksum(pkt []byte) {
	if len(pkt) < 14+20 || binary.BigEndian.Uint16(pkt[12:]) != unix.ETH_P_IP {
		return
	}
	ip := pkt[14:]
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ihl < 20 || total < ihl || total > len(ip) || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		return
	}
	seg := ip[ihl:total]
	var off int
	switch ip[9] {
	case unix.IPPROTO_TCP:
		off = 16
	case unix.IPPROTO_UDP:
		off = 6
		if len(seg) >= 8 && binary.BigEndian.Uint16(seg[6:]) == 0 {
			return
		}
	default:
		return
	}
	if len(seg) < off+2 {
		return
	}
	seg[off], seg[off+1] = 0, 0
	var pseudo [12]byte
	copy(pseudo[0:8], ip[12:20])
	pseudo[9] = ip[9]
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)))
	sum := ^checksum2(pseudo[:], seg)
	if sum == 0 && ip[9] == unix.IPPROTO_UDP {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(seg[off:], sum)
}

// checksum2 is the one's-complement sum (not inverted) over a then b; a has even length.
func checksum2(a, b []byte) uint16 { return ^inetcsum.Fold(inetcsum.Add(inetcsum.Add(0, a), b)) }
