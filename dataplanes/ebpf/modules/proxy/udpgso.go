package proxy

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/netsetup"
)

// The eBPF tunnel cannot carry a UDP GSO packet (UDP_SEGMENT) whole: the encapsulation marks it
// tunnelled (SKB_GSO_UDP_TUNNEL, skb->encapsulation), this kernel's bpf_skb_adjust_room keeps
// both marks when the peer strips the outer headers, and the server's socket, segmenting the
// packet, takes its UDP header for a tunnel's, fails and drops every datagram (uncounted: Udp
// InErrors adds the packet's gso_segs, which the decapsulation zeroed). Unmarked, the packet
// fails the veth underlay's transmit validation instead. So on a worker with an underlay the
// instance's own veth does not take UDP GSO (ethtool -K tx-udp-segmentation off): the kernel
// segments such a send as it leaves the instance, as for a NIC without USO, and each datagram
// is tunnelled alone. TCP GSO is untouched (it needs no segmentation at the receiver).
//
// udpL4Feature is NETIF_F_GSO_UDP_L4_BIT: NETIF_F_GSO_SHIFT (16) plus the bit of SKB_GSO_UDP_L4
// (1 << 17) among the GSO types, as every kernel since 4.18 numbers them (this one's BTF agrees).
const udpL4Feature = 16 + 17

// ethtoolReq is struct ifreq with ifr_data, as SIOCETHTOOL wants it.
type ethtoolReq struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtoolIoctl runs SIOCETHTOOL on iface with buf (the command's struct, cmd first) in the
// calling thread's network namespace.
func ethtoolIoctl(iface string, buf []byte) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for ethtool: %w", err)
	}
	defer unix.Close(fd)
	var req ethtoolReq
	copy(req.name[:], iface)
	req.data = unsafe.Pointer(&buf[0])
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req)))
	runtime.KeepAlive(buf)
	if errno != 0 {
		return errno
	}
	return nil
}

// setFeature turns feature bit of iface on or off (ETHTOOL_SFEATURES, as ethtool -K does).
func setFeature(iface string, bit int, on bool) error {
	blocks := bit/32 + 1
	buf := make([]byte, 8+8*blocks)
	binary.NativeEndian.PutUint32(buf[0:], unix.ETHTOOL_SFEATURES)
	binary.NativeEndian.PutUint32(buf[4:], uint32(blocks))
	off := 8 + 8*(bit/32)
	binary.NativeEndian.PutUint32(buf[off:], 1<<(bit%32)) // valid
	if on {
		binary.NativeEndian.PutUint32(buf[off+4:], 1<<(bit%32)) // requested
	}
	if err := ethtoolIoctl(iface, buf); err != nil {
		return fmt.Errorf("set feature %d to %v on %s: %w", bit, on, iface, err)
	}
	return nil
}

// udpGSO sets whether the instance's own veth takes UDP GSO packets; only a worker with an
// underlay (a tunnel to the other workers) turns it off.
func (p *Proxy) udpGSO(in *netsetup.Instance, on bool) error {
	if _, ok := p.node.Underlay(); !ok || in.NS == nil || in.Peer == "" {
		return nil
	}
	return in.NS.Do(func() error { return setFeature(in.Peer, udpL4Feature, on) })
}
