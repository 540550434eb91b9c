package netsetup

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// ErrPeerSilent is returned by ProbePeers when a peer did not answer.
var ErrPeerSilent = errors.New("peer did not answer")

// ProbePeers asks every peer's node IP for its MAC address with ARP, from the worker's
// underlay link, until each has answered or wait has passed: a peer answers once its own
// `edgebpf node` has joined, so members started at about the same time find each other. ARP
// sends nothing to the tunnel port, so no data plane sees the probe. It returns an error
// wrapping ErrPeerSilent that names every silent peer.
func (m *Member) ProbePeers(ctx context.Context, wait time.Duration) error {
	u, _ := m.Node.Underlay()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var mu sync.Mutex
	var silent []string
	var wg sync.WaitGroup
	for _, p := range u.Peers {
		wg.Go(func() {
			if _, err := arpProbe(ctx, m.Node.NS, u, p.IP); err != nil {
				mu.Lock()
				silent = append(silent, fmt.Sprintf("%s at %s (%v)", p.Name, p.IP, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(silent) > 0 {
		return fmt.Errorf("%w within %s on %s: %s: start `edgebpf node` with its --worker there, and check that the address is its --underlay-ip, not the host's own",
			ErrPeerSilent, wait, m.cfg.Device, strings.Join(silent, "; "))
	}
	return nil
}

// arpProbe sends ARP requests for target from the underlay link every 200 ms until a reply
// from target arrives or ctx ends, and returns the replying MAC address.
func arpProbe(ctx context.Context, ns *Namespace, u UnderlayInfo, target netip.Addr) (net.HardwareAddr, error) {
	fd := -1
	err := ns.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open an ARP socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: u.Index}); err != nil {
		return nil, fmt.Errorf("bind the ARP socket to %s: %w", u.Link, err)
	}
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, err
	}
	req, err := arpRequest(u.MAC, u.IP, target)
	if err != nil {
		return nil, err
	}
	dst := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: u.Index, Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	buf := make([]byte, 128)
	for {
		if err := unix.Sendto(fd, req, 0, dst); err != nil {
			return nil, fmt.Errorf("send ARP request: %w", err)
		}
		deadline := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(deadline) {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				break // timeout (EAGAIN) or interrupted: send again
			}
			if mac, ok := arpReplyFrom(buf[:n], target); ok {
				return mac, nil
			}
		}
		if ctx.Err() != nil {
			return nil, errors.New("no ARP reply")
		}
	}
}

// arpRequest builds a broadcast "who has target, tell src" frame.
func arpRequest(mac net.HardwareAddr, src, target netip.Addr) ([]byte, error) {
	s, t := src.As4(), target.As4()
	eth := &layers.Ethernet{SrcMAC: mac, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: mac, SourceProtAddress: s[:],
		DstHwAddress: make([]byte, 6), DstProtAddress: t[:],
	}
	b := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{}, eth, arp); err != nil {
		return nil, fmt.Errorf("build ARP request: %w", err)
	}
	return b.Bytes(), nil
}

// arpReplyFrom reports whether frame is an ARP reply from target, with target's MAC.
func arpReplyFrom(frame []byte, target netip.Addr) (net.HardwareAddr, bool) {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.NoCopy)
	arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if !ok || arp.Operation != layers.ARPReply {
		return nil, false
	}
	if ip, ok := netip.AddrFromSlice(arp.SourceProtAddress); !ok || ip != target {
		return nil, false
	}
	return net.HardwareAddr(arp.SourceHwAddress), true
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
