package firewall

import (
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cilium/ebpf"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/internal/testpkt"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	next = 0xffffffff // TCX_NEXT (-1): allowed, on to the next program
	shot = 2          // TC_ACT_SHOT: dropped
)

func load(t testing.TB, config string) *Firewall {
	testenv.RequirePrivileged(t)
	var raw json.RawMessage
	if config != "" {
		raw = json.RawMessage(config)
	}
	f, err := New(raw)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })
	return f
}

func verdict(t *testing.T, f *Firewall, frame []byte) uint32 {
	t.Helper()
	in, _ := f.Programs()
	ret, err := in.Run(&ebpf.RunOptions{Data: frame})
	require.NoError(t, err)
	return ret
}

func tcp(src, dst string, sport, dport uint16) []byte {
	return testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: src, Dst: dst, Sport: sport, Dport: dport, SYN: true})
}

func TestVerdicts(t *testing.T) {
	f := load(t, "")
	_, err := f.Add(
		RuleRequest{Proto: "tcp", SrcIP: "10.18.0.2", DstIP: "10.18.0.3", DstPort: PortRange{5201, 5201}},
		RuleRequest{Proto: "UDP", SrcIP: "10.18.0.0/24", DstPort: PortRange{5000, 5999}},
		RuleRequest{Proto: "icmp", DstIP: "10.18.0.9"},
	)
	require.NoError(t, err)
	cases := []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"tcp allowed by exact rule", tcp("10.18.0.2", "10.18.0.3", 40000, 5201), next},
		{"tcp other port", tcp("10.18.0.2", "10.18.0.3", 40000, 5202), shot},
		{"tcp other source", tcp("10.18.0.4", "10.18.0.3", 40000, 5201), shot},
		{"udp in prefix and range", testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "10.18.0.77", Dst: "10.30.0.1", Sport: 1, Dport: 5999}), next},
		{"udp range end+1", testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "10.18.0.77", Dst: "10.30.0.1", Sport: 1, Dport: 6000}), shot},
		{"udp outside prefix", testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "10.19.0.1", Dst: "10.30.0.1", Sport: 1, Dport: 5000}), shot},
		{"icmp allowed", testpkt.IPv4(testpkt.Spec{Proto: "icmp", Src: "10.18.0.2", Dst: "10.18.0.9"}), next},
		{"icmp default drop", testpkt.IPv4(testpkt.Spec{Proto: "icmp", Src: "10.18.0.2", Dst: "10.18.0.8"}), shot},
		{"other ipv4 protocol passes", testpkt.IPv4(testpkt.Spec{Proto: "gre", Src: "10.18.0.2", Dst: "10.18.0.8"}), next},
		{"arp passes", testpkt.ARP(), next},
		{"ipv6 passes", testpkt.IPv6UDP(), next},
		{"ipv4 options are parsed", testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.2", Dst: "10.18.0.3", Sport: 40001, Dport: 5201, IPOptions: true}), next},
		{"ipv4 options, wrong port", testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.2", Dst: "10.18.0.3", Sport: 40001, Dport: 22, IPOptions: true}), shot},
		{"truncated tcp header", tcp("10.18.0.2", "10.18.0.3", 40002, 5201)[:14+20+10], shot},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, verdict(t, f, c.frame))
		})
	}
}

func TestRepliesOfAllowedFlowsPass(t *testing.T) {
	f := load(t, "")
	reply := tcp("10.18.0.3", "10.18.0.2", 5201, 40000)
	assert.EqualValues(t, shot, verdict(t, f, reply), "no rule, no flow: a reply alone is dropped")
	_, err := f.Add(RuleRequest{Proto: "tcp", SrcIP: "10.18.0.2", DstIP: "10.18.0.3", DstPort: PortRange{5201, 5201}})
	require.NoError(t, err)
	assert.EqualValues(t, next, verdict(t, f, tcp("10.18.0.2", "10.18.0.3", 40000, 5201)))
	assert.EqualValues(t, next, verdict(t, f, reply), "the reply of an allowed flow passes")
	assert.EqualValues(t, shot, verdict(t, f, tcp("10.18.0.3", "10.18.0.2", 5201, 40001)), "another flow from the server does not")
	st, err := f.Stats()
	require.NoError(t, err)
	assert.EqualValues(t, 1, st.AllowedByRule)
	assert.EqualValues(t, 1, st.AllowedByFlow)
	assert.EqualValues(t, 2, st.Dropped)

	// Deleting the rule forgets the flow at once.
	require.NoError(t, f.Delete(f.Rules()[0].ID))
	assert.EqualValues(t, shot, verdict(t, f, reply))
	assert.EqualValues(t, shot, verdict(t, f, tcp("10.18.0.2", "10.18.0.3", 40000, 5201)))
}

func TestDefaultPass(t *testing.T) {
	f := load(t, `{"default":"pass"}`)
	assert.EqualValues(t, next, verdict(t, f, tcp("10.18.0.2", "10.18.0.3", 1, 2)))
	assert.Equal(t, Config{Default: "pass", FlowTimeout: "120s"}, f.Config())
}

func TestBadConfigAndRules(t *testing.T) {
	testenv.RequirePrivileged(t)
	for cfg, want := range map[string]string{
		`{"default":"allow"}`:        `default "allow" is neither drop nor pass`,
		`{"flow_timeout":"1ms"}`:     "flow_timeout",
		`{"colour":"red"}`:           `unknown field "colour"`,
		`{"default":1}`:              `field "default" must be string`,
		`[1,2]`:                      "must be",
		`{"default":"drop"} trailer`: "data after the object",
	} {
		_, err := New(json.RawMessage(cfg))
		require.Error(t, err, cfg)
		assert.Contains(t, err.Error(), want, cfg)
	}
	f := load(t, "")
	for _, c := range []struct {
		req  string
		want string
	}{
		{`{"proto":"sctp"}`, `proto "sctp" is not tcp, udp or icmp`},
		{`{"proto":"tcp","srcIp":"10.18.0.300"}`, `srcIp: "10.18.0.300" is not an IPv4 address`},
		{`{"proto":"tcp","dstIp":"10.18.0.0/33"}`, `dstIp: "10.18.0.0/33"`},
		{`{"proto":"tcp","dstIp":"fd00::1"}`, "not IPv4"},
		{`{"proto":"tcp","dstPort":0}`, "port 0 is out of range"},
		{`{"proto":"tcp","dstPort":65536}`, "port 65536 is out of range"},
		{`{"proto":"tcp","dstPort":"9-3"}`, "reversed"},
		{`{"proto":"icmp","dstPort":80}`, "icmp has no ports"},
	} {
		var r RuleRequest
		err := json.Unmarshal([]byte(c.req), &r)
		if err == nil {
			_, err = f.Add(r)
		}
		require.Error(t, err, c.req)
		assert.Contains(t, err.Error(), c.want, c.req)
	}
	assert.Empty(t, f.Rules(), "nothing half-applied")

	// A batch with one bad rule adds none; a full table refuses.
	_, err := f.Add(RuleRequest{Proto: "tcp"}, RuleRequest{Proto: "nope"})
	require.Error(t, err)
	assert.Empty(t, f.Rules())
	many := make([]RuleRequest, MaxRules)
	for i := range many {
		many[i] = RuleRequest{Proto: "udp", DstPort: PortRange{uint16(i + 1), uint16(i + 1)}}
	}
	_, err = f.Add(many...)
	require.NoError(t, err)
	_, err = f.Add(RuleRequest{Proto: "tcp"})
	assert.ErrorIs(t, err, ErrFull)
	assert.EqualValues(t, next, verdict(t, f, testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "1.1.1.1", Dst: "2.2.2.2", Sport: 9, Dport: MaxRules})),
		"the last of 256 rules is reached")
}

// FuzzFirewall runs arbitrary frames through the program: it must never fail to run, and
// never let unmatched TCP through with the default policy and no rules.
func FuzzFirewall(f *testing.F) {
	f.Add(tcp("10.18.0.2", "10.18.0.3", 1, 2))
	f.Add(testpkt.ARP())
	f.Add(testpkt.IPv6UDP())
	f.Add(testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "1.2.3.4", Dst: "5.6.7.8", Sport: 1, Dport: 2, IPOptions: true}))
	fw := load(f, "")
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 {
			return // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header
		}
		in, _ := fw.Programs()
		ret, err := in.Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			return // the kernel refused the frame (e.g. IPv4 EtherType under 34 bytes)
		}
		if ret != next && ret != shot {
			t.Fatalf("verdict %d is neither TCX_NEXT nor TC_ACT_SHOT", ret)
		}
	})
}

// TestFlowStampedAheadIsFresh: a flow stamped by another CPU after this one read the clock is
// fresh, not expired (an unsigned underflow once dropped replies of allowed flows).
func TestFlowStampedAheadIsFresh(t *testing.T) {
	f := load(t, "")
	_, err := f.Add(RuleRequest{Proto: "tcp", DstPort: PortRange{5201, 5201}})
	require.NoError(t, err)
	require.EqualValues(t, next, verdict(t, f, tcp("10.18.0.2", "10.18.0.3", 40000, 5201)))
	rev := firewallFlowKey{Saddr: ip4("10.18.0.3"), Daddr: ip4("10.18.0.2"), Sport: be16(5201), Dport: be16(40000), Proto: 6}
	var ts unix.Timespec
	require.NoError(t, unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts))
	ahead := uint64(ts.Nano()) + uint64(time.Second)
	require.NoError(t, f.objs.FwFlows.Update(&rev, ahead, ebpf.UpdateExist))
	assert.EqualValues(t, next, verdict(t, f, tcp("10.18.0.3", "10.18.0.2", 5201, 40000)), "the reply still passes")
}

func ip4(s string) uint32 {
	a := netip.MustParseAddr(s).As4()
	return binary.NativeEndian.Uint32(a[:])
}

func be16(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
