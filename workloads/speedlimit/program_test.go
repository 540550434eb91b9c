package speedlimit

import (
	"bytes"
	"encoding/binary"
	"math"
	"net"
	"sync"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/workloads/speedlimit/wire"
)

// The program's tests run it through BPF_PROG_TEST_RUN on frames built with gopacket.

const (
	xdpDrop = 1
	xdpPass = 2
	xdpTX   = 3
	port    = 5300
)

var (
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	serverMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	clientIP  = net.IPv4(10, 18, 0, 2).To4()
	serverIP  = net.IPv4(10, 18, 0, 3).To4()
)

// req describes a test frame; zero fields take a well-formed GET_SPEED_LIMIT's values.
type req struct {
	op       wire.Op
	value    uint32
	payload  []byte // replaces the 8-byte message
	dport    uint16
	options  []layers.IPv4Option
	flags    layers.IPv4Flag
	fragOff  uint16
	proto    layers.IPProtocol
	dstMAC   net.HardwareAddr
	dstIP    net.IP
	noUDPSum bool
}

// frame serializes r with correct lengths and checksums.
func frame(t testing.TB, r req) []byte {
	t.Helper()
	if r.op == 0 {
		r.op = wire.GetSpeedLimit
	}
	if r.dport == 0 {
		r.dport = port
	}
	if r.proto == 0 {
		r.proto = layers.IPProtocolUDP
	}
	if r.dstMAC == nil {
		r.dstMAC = serverMAC
	}
	if r.dstIP == nil {
		r.dstIP = serverIP
	}
	payload := r.payload
	if payload == nil {
		payload = wire.Message{Op: r.op, Value: r.value}.Append(nil)
	}
	eth := &layers.Ethernet{SrcMAC: clientMAC, DstMAC: r.dstMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0x1234, Flags: r.flags, FragOffset: r.fragOff,
		Protocol: r.proto, SrcIP: clientIP, DstIP: r.dstIP, Options: r.options}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	var err error
	switch r.proto {
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(r.dport)}
		require.NoError(t, udp.SetNetworkLayerForChecksum(ip))
		err = gopacket.SerializeLayers(buf, opts, eth, ip, udp, gopacket.Payload(payload))
		if err == nil && r.noUDPSum {
			b := buf.Bytes()
			binary.BigEndian.PutUint16(b[14+int(ip.IHL)*4+6:], 0)
		}
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: 40000, DstPort: layers.TCPPort(r.dport), SYN: true, Window: 1000}
		require.NoError(t, tcp.SetNetworkLayerForChecksum(ip))
		err = gopacket.SerializeLayers(buf, opts, eth, ip, tcp, gopacket.Payload(payload))
	default:
		err = gopacket.SerializeLayers(buf, opts, eth, ip, gopacket.Payload(payload))
	}
	require.NoError(t, err)
	return unpadded(buf.Bytes())
}

// unpadded cuts gopacket's padding to the 60-byte Ethernet minimum off an IPv4 frame: veths
// do not pad, and the tests add padding where they mean it.
func unpadded(b []byte) []byte {
	if len(b) >= 18 && binary.BigEndian.Uint16(b[12:]) == 0x0800 {
		if n := 14 + int(binary.BigEndian.Uint16(b[16:])); n < len(b) {
			b = b[:n]
		}
	}
	return bytes.Clone(b)
}

// reply is the frame the program must answer a well-formed request with: built independently
// with gopacket, addresses and ports swapped, REPLY and the limit, checksums computed.
func reply(t testing.TB, limit uint32) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: serverMAC, DstMAC: clientMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0x1234, Protocol: layers.IPProtocolUDP, SrcIP: serverIP, DstIP: clientIP}
	udp := &layers.UDP{SrcPort: port, DstPort: 40000}
	require.NoError(t, udp.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(wire.Message{Op: wire.Reply, Value: limit}.Append(nil))))
	return unpadded(buf.Bytes())
}

// checkChecksums decodes a frame with gopacket and fails t unless its IPv4 and UDP
// checksums are valid and the UDP checksum is present.
func checkChecksums(t testing.TB, b []byte) {
	t.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	require.Nil(t, p.ErrorLayer(), "reply decodes")
	udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	require.True(t, ok, "reply is UDP")
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.NoError(t, udp.SetNetworkLayerForChecksum(ip))
	err, bad := p.VerifyChecksums()
	require.NoError(t, err)
	assert.Empty(t, bad, "checksums valid")
	assert.NotZero(t, udp.Checksum, "the reply carries a UDP checksum")
}

func newTestResponder(t testing.TB, compute bool) *Responder {
	t.Helper()
	testenv.RequirePrivileged(t)
	r, err := NewResponder(ResponderConfig{Port: port, Compute: compute})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, r.Close()) })
	assert.Equal(t, XDPNone, r.Mode())
	return r
}

func run(t testing.TB, r *Responder, in []byte) (uint32, []byte) {
	t.Helper()
	ret, out, err := r.objs.SpeedlimitXdp.Test(in)
	require.NoError(t, err)
	return ret, out
}

func setCars(t testing.TB, r *Responder, n uint64) {
	t.Helper()
	require.NoError(t, r.objs.SlCars.Update(uint32(0), n, 0))
}

func cars(t testing.TB, r *Responder) uint64 {
	t.Helper()
	n, err := r.Cars()
	require.NoError(t, err)
	return n
}

func TestReplyBytesAndChecksums(t *testing.T) {
	for _, compute := range []bool{false, true} {
		r := newTestResponder(t, compute)
		ret, out := run(t, r, frame(t, req{value: 0xdeadbeef}))
		require.Equal(t, uint32(xdpTX), ret)
		assert.Equal(t, reply(t, 120), out, "compute=%v: the reply, byte for byte", compute)
		checkChecksums(t, out)
		assert.Equal(t, uint64(1), cars(t, r))
		st, err := r.Stats()
		require.NoError(t, err)
		assert.Equal(t, uint64(1), st["replied"])
		assert.Zero(t, st.Passed())
	}
}

func TestMixedAnswersTheLimitUserSpaceWrote(t *testing.T) {
	r := newTestResponder(t, false)
	l, err := r.Limit()
	require.NoError(t, err)
	assert.Equal(t, uint32(120), l, "starts at no car's limit")
	require.NoError(t, r.SetLimit(77))
	setCars(t, r, 500)
	ret, out := run(t, r, frame(t, req{}))
	require.Equal(t, uint32(xdpTX), ret)
	assert.Equal(t, reply(t, 77), out, "the map's limit, whatever the count")
	assert.Equal(t, uint64(501), cars(t, r))
}

// TestFormulaEveryCount runs the eBPF-only program once per car count 0..1000 and compares
// its answer with the float formula: within 1 km/h (the requirement), and in fact equal to
// the formula rounded, as the other configurations answer. A request counts itself, so the
// counter is set one below the count; for 0 it wraps from 2^64-1.
func TestFormulaEveryCount(t *testing.T) {
	r := newTestResponder(t, true)
	in := frame(t, req{})
	worst := 0.0
	for c := uint64(0); c <= 1000; c++ {
		setCars(t, r, c-1)
		ret, out := run(t, r, in)
		require.Equal(t, uint32(xdpTX), ret, "count %d", c)
		msg, err := wire.Decode(out[42:50])
		require.NoError(t, err)
		require.Equal(t, wire.Reply, msg.Op)
		want := wire.Limit(c)
		diff := math.Abs(float64(msg.Value) - want)
		worst = max(worst, diff)
		require.LessOrEqual(t, diff, 1.0, "count %d: kernel %d km/h, formula %.4f", c, msg.Value, want)
		require.Equal(t, wire.LimitKmh(c), msg.Value, "count %d: kernel %d, formula %.4f rounded", c, msg.Value, want)
		require.Equal(t, c, cars(t, r))
	}
	t.Logf("largest difference from the float formula: %.4f km/h (rounding)", worst)
	// Not a step function (the prototype's defect): every value from 30 to 120 occurs in between.
	seen := map[uint32]bool{}
	for c := uint64(30); c < 100; c++ {
		seen[wire.LimitKmh(c)] = true
	}
	assert.Greater(t, len(seen), 40)
}

func TestCounterSemantics(t *testing.T) {
	r := newTestResponder(t, true)
	get, out := frame(t, req{}), frame(t, req{op: wire.OutOfRange})
	for range 3 {
		ret, _ := run(t, r, get)
		require.Equal(t, uint32(xdpTX), ret)
	}
	assert.Equal(t, uint64(3), cars(t, r))
	for i := range 5 {
		ret, o := run(t, r, out)
		require.Equal(t, uint32(xdpDrop), ret, "OUT_OF_RANGE is dropped, never answered")
		assert.Equal(t, out, o)
		assert.Equal(t, uint64(max(2-i, 0)), cars(t, r), "decrement floored at 0")
	}
	st, err := r.Stats()
	require.NoError(t, err)
	assert.Equal(t, uint64(3), st["left"])
	assert.Equal(t, uint64(2), st["left_empty"])
	assert.Equal(t, uint64(3), st["replied"])
}

// TestCounterConcurrent runs the program from two goroutines at once (on both CPUs where the
// scheduler puts them there): no increment or decrement is lost, none goes below 0.
func TestCounterConcurrent(t *testing.T) {
	r := newTestResponder(t, true)
	get, out := frame(t, req{}), frame(t, req{op: wire.OutOfRange})
	const per = 3000
	par := func(in []byte, n int) {
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for range n {
					if _, _, err := r.objs.SpeedlimitXdp.Test(in); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	par(get, per)
	assert.Equal(t, uint64(2*per), cars(t, r))
	par(out, per+500)
	assert.Zero(t, cars(t, r))
	st, err := r.Stats()
	require.NoError(t, err)
	assert.Equal(t, uint64(2*per), st["left"]+st["left_contended"], "every car uncounted once")
	assert.Zero(t, st["left_contended"], "no compare-and-exchange gave up")
	assert.Equal(t, uint64(1000), st["left_empty"])
}

func TestMalformedIsPassedUntouched(t *testing.T) {
	r := newTestResponder(t, true)
	good := frame(t, req{})
	ipv6 := bytes.Clone(good)
	binary.BigEndian.PutUint16(ipv6[12:], 0x86dd)
	badIPSum := bytes.Clone(good)
	badIPSum[24] ^= 0xff
	badUDPSum := bytes.Clone(good)
	badUDPSum[40] ^= 0x01
	version6 := bytes.Clone(good)
	version6[14] = 0x65
	shortIHL := bytes.Clone(good)
	shortIHL[14] = 0x44
	totLen := bytes.Clone(good)
	binary.BigEndian.PutUint16(totLen[16:], 40)
	cases := []struct {
		name string
		in   []byte
		stat string
	}{
		{"not ipv4", ipv6, "pass_not_ipv4"},
		{"arp", append(bytes.Clone(good[:12]), append([]byte{0x08, 0x06}, make([]byte, 28)...)...), "pass_not_ipv4"},
		{"ip version 6 in an ipv4 frame", version6, "pass_malformed"},
		{"ihl below 5", shortIHL, "pass_malformed"},
		{"not udp", frame(t, req{proto: layers.IPProtocolTCP}), "pass_not_udp"},
		{"icmp", frame(t, req{proto: layers.IPProtocolICMPv4}), "pass_not_udp"},
		{"other port", frame(t, req{dport: port + 1}), "pass_other_port"},
		{"ipv4 options", frame(t, req{options: []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}}), "pass_options"},
		{"more fragments", frame(t, req{flags: layers.IPv4MoreFragments}), "pass_fragment"},
		{"fragment offset", frame(t, req{fragOff: 100}), "pass_fragment"},
		{"payload 7 bytes", frame(t, req{payload: make([]byte, 7)}), "pass_size"},
		{"payload 9 bytes", frame(t, req{payload: append(wire.Message{Op: wire.GetSpeedLimit}.Append(nil), 0)}), "pass_size"},
		{"payload empty", frame(t, req{payload: []byte{}}), "pass_size"},
		{"ip total length disagrees", totLen, "pass_size"},
		{"truncated udp header", good[:38], "pass_truncated"},
		{"truncated payload", good[:46], "pass_truncated"},
		{"op 0", frame(t, req{op: 0xffffffff}), "pass_unknown_op"},
		{"op REPLY", frame(t, req{op: wire.Reply}), "pass_unknown_op"},
		{"op 6", frame(t, req{op: 6}), "pass_unknown_op"},
		{"op host byte order", frame(t, req{payload: []byte{4, 0, 0, 0, 0, 0, 0, 0}}), "pass_unknown_op"},
		{"bad ip checksum", badIPSum, "pass_checksum"},
		{"bad udp checksum", badUDPSum, "pass_checksum"},
		{"broadcast mac", frame(t, req{dstMAC: layers.EthernetBroadcast}), "pass_address"},
		{"broadcast ip", frame(t, req{dstIP: net.IPv4bcast.To4()}), "pass_address"},
		{"multicast ip", frame(t, req{dstIP: net.IPv4(239, 1, 1, 1).To4()}), "pass_address"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, err := r.Stats()
			require.NoError(t, err)
			ret, out := run(t, r, c.in)
			assert.Equal(t, uint32(xdpPass), ret)
			assert.Equal(t, c.in, out, "a passed frame is not modified")
			assert.Zero(t, cars(t, r), "no state changes")
			after, err := r.Stats()
			require.NoError(t, err)
			assert.Equal(t, before[c.stat]+1, after[c.stat], "counted as %s", c.stat)
			assert.Equal(t, before.Passed()+1, after.Passed())
		})
	}
	// Frames shorter than an IPv4 header. XDP test runs take any frame from 14 bytes on
	// (reference.md §5's refusal of IPv4 frames under 34 bytes holds for skb programs); the
	// program bounds-checks them and passes them as malformed.
	for _, n := range []int{14, 20, 33} {
		ret, out := run(t, r, good[:n])
		assert.Equal(t, uint32(xdpPass), ret, "%d bytes", n)
		assert.Equal(t, good[:n], out)
	}
	assert.Zero(t, cars(t, r))
}

func TestAcceptedChecksumStates(t *testing.T) {
	r := newTestResponder(t, true)
	t.Run("no checksum", func(t *testing.T) {
		ret, out := run(t, r, frame(t, req{noUDPSum: true}))
		require.Equal(t, uint32(xdpTX), ret)
		checkChecksums(t, out)
	})
	t.Run("left to offload", func(t *testing.T) {
		// What a local sender with TX checksum offload on puts in the field: the folded
		// pseudo-header sum (CHECKSUM_PARTIAL).
		in := frame(t, req{})
		var sum uint32
		for _, w := range [][]byte{in[26:28], in[28:30], in[30:32], in[32:34]} {
			sum += uint32(binary.BigEndian.Uint16(w))
		}
		sum += 17 + 16
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(in[40:], uint16(sum))
		ret, out := run(t, r, in)
		require.Equal(t, uint32(xdpTX), ret)
		checkChecksums(t, out)
		st, err := r.Stats()
		require.NoError(t, err)
		assert.Equal(t, uint64(1), st["csum_offloaded"])
	})
	t.Run("ethernet padding", func(t *testing.T) {
		in := append(frame(t, req{}), make([]byte, 10)...) // 60 bytes, a minimum Ethernet frame
		ret, out := run(t, r, in)
		require.Equal(t, uint32(xdpTX), ret)
		require.Len(t, out, 60)
		assert.Equal(t, reply(t, wire.LimitKmh(cars(t, r))), out[:50])
		checkChecksums(t, out)
	})
}

// FuzzProgram runs the program on arbitrary frames. Whatever it gets, it never answers
// anything but a well-formed GET_SPEED_LIMIT, never drops anything but a well-formed
// OUT_OF_RANGE, and passes everything else unmodified.
func FuzzProgram(f *testing.F) {
	f.Add(frame(f, req{}))
	f.Add(frame(f, req{op: wire.OutOfRange}))
	f.Add(frame(f, req{payload: make([]byte, 9)}))
	f.Add(frame(f, req{options: []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}}))
	f.Add(frame(f, req{proto: layers.IPProtocolTCP}))
	r := newTestResponder(f, true)
	f.Fuzz(func(t *testing.T, in []byte) {
		ret, out, err := r.objs.SpeedlimitXdp.Test(in)
		if err != nil {
			// Frames the kernel's test run refuses: shorter than an Ethernet header, or
			// longer than fits one page.
			require.True(t, len(in) < 14 || len(in) > 3000, "test run failed on a %d-byte frame: %v", len(in), err)
			require.ErrorIs(t, err, unix.EINVAL)
			return
		}
		op, ok := wellFormed(in)
		switch ret {
		case xdpTX:
			require.True(t, ok && op == wire.GetSpeedLimit, "answered only a well-formed GET_SPEED_LIMIT")
			checkChecksums(t, out)
			require.Equal(t, in[0:6], out[6:12], "MACs swapped")
			require.Equal(t, in[26:30], out[30:34], "IPs swapped")
			require.Equal(t, in[34:36], out[36:38], "ports swapped")
			msg, err := wire.Decode(out[42:50])
			require.NoError(t, err)
			require.Equal(t, wire.Reply, msg.Op)
			require.True(t, msg.Value >= wire.MinLimit && msg.Value <= wire.MaxLimit)
		case xdpDrop:
			require.True(t, ok && op == wire.OutOfRange, "dropped only a well-formed OUT_OF_RANGE")
		case xdpPass:
			require.Equal(t, in, out, "a passed frame is not modified")
		default:
			t.Fatalf("verdict %d", ret)
		}
	})
}

// wellFormed decides, independently of the program and with gopacket, whether a frame is a
// request the program must handle, and returns its op.
func wellFormed(b []byte) (wire.Op, bool) {
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if eth == nil || ip == nil || udp == nil || ip.IHL != 5 || ip.Length != 36 || udp.Length != 16 ||
		udp.DstPort != port || ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 || len(udp.Payload) != 8 {
		return 0, false
	}
	group := func(a net.IP) bool { return a.IsUnspecified() || a.Equal(net.IPv4bcast) || a.IsMulticast() }
	if eth.SrcMAC[0]&1 != 0 || eth.DstMAC[0]&1 != 0 || group(ip.SrcIP) || group(ip.DstIP) {
		return 0, false
	}
	msg, err := wire.Decode(udp.Payload)
	if err != nil {
		return 0, false
	}
	return msg.Op, msg.Op == wire.GetSpeedLimit || msg.Op == wire.OutOfRange
}
