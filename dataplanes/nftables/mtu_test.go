package nftables_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/dataplanes/proxytest"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

// TestVXLANMTU: a full 1450-byte inner packet with DF crosses as one 1500-byte outer packet,
// unfragmented, and the outer header's DF is clear (the device's df is unset, as flannel
// leaves it). A larger datagram with DF is refused at the client by the overlay MTU of its
// own veth (EMSGSIZE), so no too-big inner packet reaches the VXLAN device; without DF the
// client fragments it, the proxy's worker reassembles it for conntrack and fragments it again
// to the VXLAN device's MTU, and it is delivered whole.
func TestVXLANMTU(t *testing.T) {
	c := testenv.Cluster(t, netsetup.ClusterConfig{}, "client@0", "server@1")
	proxytest.DeployCluster(t, c, newDP)
	client, _ := c.Workers[0].Instance("client", 0)
	srv, _ := c.Workers[1].Instance("server", 0)
	proxytest.Serve(t, srv)
	svc, _ := c.Workers[0].Registry.Service("server")

	frames := capture(t, c.Underlay, "ebu-0")
	n, err := sendUDP(client.NS, svc.IP, 1450-28, unix.IP_PMTUDISC_DO)
	require.NoError(t, err, "a full overlay packet with DF crosses and is answered")
	assert.Positive(t, n)
	outer := frames.find(t, func(o outerPacket) bool { return o.innerLen == 1450 })
	assert.Equal(t, 1500, outer.len, "1450 + 50 bytes of VXLAN fill the underlay exactly")
	assert.False(t, outer.df, "outer DF is clear")
	assert.False(t, outer.fragment, "the outer packet is not fragmented")
	assert.True(t, outer.innerDF, "the inner packet keeps its DF")

	_, err = sendUDP(client.NS, svc.IP, 1450-28+1, unix.IP_PMTUDISC_DO)
	assert.ErrorIs(t, err, unix.EMSGSIZE, "the client's overlay MTU stops a too-big packet with DF")

	n, err = sendUDP(client.NS, svc.IP, 4000, unix.IP_PMTUDISC_DONT)
	require.NoError(t, err, "a datagram without DF is fragmented and delivered whole")
	assert.Positive(t, n)
	big := frames.find(t, func(o outerPacket) bool { return o.innerFragment })
	assert.LessOrEqual(t, big.len, 1500, "every fragment fits the underlay")
}

// sendUDP sends one datagram of size bytes with the given IP_MTU_DISCOVER mode from ns to
// target:proxytest.Port and returns the length of the answer.
func sendUDP(ns *netsetup.Namespace, target netip.Addr, size, pmtudisc int) (int, error) {
	var n int
	err := ns.Do(func() error {
		c, err := net.Dial("udp4", netip.AddrPortFrom(target, proxytest.Port).String())
		if err != nil {
			return err
		}
		defer c.Close()
		raw, err := c.(*net.UDPConn).SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, pmtudisc)
		}); err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		if _, err := c.Write(make([]byte, size)); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err = c.Read(make([]byte, 256))
		return err
	})
	return n, err
}

// outerPacket is what the test needs of a VXLAN packet on the underlay.
type outerPacket struct {
	len                    int // outer IPv4 total length
	df, fragment           bool
	innerLen               int
	innerDF, innerFragment bool
}

type frameLog struct{ ch chan outerPacket }

// capture records the VXLAN packets on an underlay link (in the underlay namespace) until
// the test ends.
func capture(t *testing.T, ns *netsetup.Namespace, link string) *frameLog {
	t.Helper()
	ifi, err := interfaceIndex(ns, link)
	require.NoError(t, err)
	var fd int
	require.NoError(t, ns.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		tv := unix.Timeval{Usec: 200000}
		return errors.Join(
			unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi}),
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))
	}))
	log := &frameLog{ch: make(chan outerPacket, 1024)}
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-done; unix.Close(fd) })
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			if o, ok := parseOuter(buf[:n]); ok {
				select {
				case log.ch <- o:
				default:
				}
			}
		}
	}()
	return log
}

// find returns the first captured packet that matches, waiting up to two seconds.
func (l *frameLog) find(t *testing.T, match func(outerPacket) bool) outerPacket {
	t.Helper()
	deadline := time.After(2 * time.Second)
	for {
		select {
		case o := <-l.ch:
			if match(o) {
				return o
			}
		case <-deadline:
			t.Fatal("no matching VXLAN packet was seen on the underlay")
			return outerPacket{}
		}
	}
}

func parseOuter(frame []byte) (outerPacket, bool) {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	ips := p.Layers()
	var v4 []*layers.IPv4
	var sawVXLAN bool
	for _, l := range ips {
		switch x := l.(type) {
		case *layers.IPv4:
			v4 = append(v4, x)
		case *layers.VXLAN:
			sawVXLAN = true
		}
	}
	if !sawVXLAN || len(v4) != 2 {
		return outerPacket{}, false
	}
	o, in := v4[0], v4[1]
	return outerPacket{
		len: int(o.Length), df: o.Flags&layers.IPv4DontFragment != 0,
		fragment: o.Flags&layers.IPv4MoreFragments != 0 || o.FragOffset != 0,
		innerLen: int(in.Length), innerDF: in.Flags&layers.IPv4DontFragment != 0,
		innerFragment: in.Flags&layers.IPv4MoreFragments != 0 || in.FragOffset != 0,
	}, true
}

func interfaceIndex(ns *netsetup.Namespace, name string) (int, error) {
	h, err := ns.Netlink()
	if err != nil {
		return 0, err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("find %s: %w", name, err)
	}
	return l.Attrs().Index, nil
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
