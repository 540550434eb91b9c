package firewall

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// RuleRequest is the body of POST /rule: the thesis's fields, with prefixes and port ranges.
// An omitted address is any address; an omitted port is any port.
type RuleRequest struct {
	Proto   string    `json:"proto"`   // tcp, udp or icmp (any case)
	SrcIP   string    `json:"srcIp"`   // "10.30.0.2" (a /32) or a prefix "10.30.0.0/16"
	DstIP   string    `json:"dstIp"`   //
	SrcPort PortRange `json:"srcPort"` // 5201, "5201" or "5000-5999"
	DstPort PortRange `json:"dstPort"` //
}

// Rule is an installed allow rule.
type Rule struct {
	ID      int          `json:"id"`
	Proto   string       `json:"proto"`
	Src     netip.Prefix `json:"srcIp"`
	Dst     netip.Prefix `json:"dstIp"`
	SrcPort PortRange    `json:"srcPort"`
	DstPort PortRange    `json:"dstPort"`
}

// PortRange is an inclusive range of ports. In JSON it is a number, a string "lo-hi", or
// absent for any port, which is written back as "any". The zero value means unset.
type PortRange struct {
	Lo, Hi uint16
}

var anyPort = PortRange{Lo: 0, Hi: 65535}

// UnmarshalJSON accepts 80, "80" and "1000-2000"; 0 and values above 65535 are errors.
func (p *PortRange) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		return p.parse(n.String())
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("a port is a number such as 5201 or a range such as \"5000-5999\"")
	}
	return p.parse(s)
}

func (p *PortRange) parse(s string) error {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := port(lo)
	if err != nil {
		return err
	}
	b := a
	if isRange {
		if b, err = port(hi); err != nil {
			return err
		}
		if b < a {
			return fmt.Errorf("port range %q is reversed: give low-high", s)
		}
	}
	*p = PortRange{Lo: a, Hi: b}
	return nil
}

func port(s string) (uint16, error) {
	// Digits only, as the API's pattern says: strconv.Atoi alone would take "+80".
	digits := s != "" && strings.Trim(s, "0123456789") == ""
	v, err := strconv.Atoi(s)
	if !digits || err != nil {
		return 0, fmt.Errorf("port %q is not a number", s)
	}
	if v < 1 || v > 65535 {
		return 0, fmt.Errorf("port %d is out of range: use 1 to 65535", v)
	}
	return uint16(v), nil
}

// MarshalJSON writes "any", a single port as a number, or "lo-hi".
func (p PortRange) MarshalJSON() ([]byte, error) {
	switch {
	case p == anyPort || p == PortRange{}:
		return json.Marshal("any")
	case p.Lo == p.Hi:
		return json.Marshal(p.Lo)
	}
	return json.Marshal(fmt.Sprintf("%d-%d", p.Lo, p.Hi))
}

var protocols = map[string]uint8{"tcp": 6, "udp": 17, "icmp": 1}

// validate turns a request into a rule, or says what is wrong with it.
func (r RuleRequest) validate() (Rule, error) {
	var errs []error
	rule := Rule{Proto: strings.ToLower(r.Proto), SrcPort: anyPort, DstPort: anyPort}
	if _, ok := protocols[rule.Proto]; !ok {
		errs = append(errs, fmt.Errorf("proto %q is not tcp, udp or icmp", r.Proto))
	}
	var err error
	if rule.Src, err = prefix(r.SrcIP); err != nil {
		errs = append(errs, fmt.Errorf("srcIp: %w", err))
	}
	if rule.Dst, err = prefix(r.DstIP); err != nil {
		errs = append(errs, fmt.Errorf("dstIp: %w", err))
	}
	for _, p := range []struct {
		name string
		in   PortRange
		out  *PortRange
	}{{"srcPort", r.SrcPort, &rule.SrcPort}, {"dstPort", r.DstPort, &rule.DstPort}} {
		if p.in == (PortRange{}) {
			continue
		}
		if rule.Proto == "icmp" {
			errs = append(errs, fmt.Errorf("%s: icmp has no ports: leave it out", p.name))
		}
		*p.out = p.in
	}
	return rule, errors.Join(errs...)
}

func prefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.MustParsePrefix("0.0.0.0/0"), nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 address or prefix such as 10.30.0.0/16", s)
		}
		if !p.Addr().Is4() {
			return netip.Prefix{}, fmt.Errorf("%q is not IPv4: the firewall matches IPv4 only", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 address or prefix such as 10.30.0.0/16", s)
	}
	if !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not IPv4: the firewall matches IPv4 only", s)
	}
	return netip.PrefixFrom(a, 32), nil
}

// bpf encodes the rule as firewall.c reads it: addresses and masks as their network-order
// bytes in memory, ports in host order.
func (r Rule) bpf() firewallFwRule {
	addr := func(p netip.Prefix) (uint32, uint32) {
		a := p.Addr().As4()
		var m [4]byte
		binary.BigEndian.PutUint32(m[:], ^uint32(0)<<(32-p.Bits()))
		if p.Bits() == 0 {
			m = [4]byte{}
		}
		return binary.NativeEndian.Uint32(a[:]), binary.NativeEndian.Uint32(m[:])
	}
	var out firewallFwRule
	out.Saddr, out.Smask = addr(r.Src)
	out.Daddr, out.Dmask = addr(r.Dst)
	out.SportLo, out.SportHi = r.SrcPort.Lo, r.SrcPort.Hi
	out.DportLo, out.DportHi = r.DstPort.Lo, r.DstPort.Hi
	out.Proto = protocols[r.Proto]
	return out
}
