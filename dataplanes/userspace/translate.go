package userspace

import "encoding/binary"

// handle translates the IPv4 packet in pkt, as read from the TUN device, in place. It
// returns what to send and where: the translated packet, a refusal (TCP RST or ICMP
// destination unreachable) built in out, which must hold replySize bytes, or nil to drop
// the packet; via is zero to write it back to the device, else the node IP of the worker to
// tunnel it to (the chosen instance runs there, or the packet is a reply whose session that
// worker holds). handle never allocates once a session exists, and never panics on any
// input.
func (c *core) handle(pkt, out []byte) (p []byte, via [4]byte) {
	p, via = c.translate(pkt, out)
	if via != ([4]byte{}) && len(p) > c.mtu {
		// The device's MTU is the overlay's, so the kernel hands the proxy nothing larger;
		// a packet that would not fit the tunnel is dropped rather than fragmented.
		c.st.tunnel.tooBig.Add(1)
		return nil, [4]byte{}
	}
	return p, via
}

// translate is handle without the tunnel's size check.
func (c *core) translate(pkt, out []byte) ([]byte, [4]byte) {
	var none [4]byte
	h, ok := parseIPv4(pkt)
	if !ok {
		if len(pkt) > 0 && pkt[0]>>4 == 6 {
			c.st.notIPv4.Add(1) // e.g. the kernel's IPv6 router solicitations on the device
		} else {
			c.st.malformed.Add(1)
		}
		return nil, none
	}
	if h.mf || h.fragOff != 0 {
		// Every fragment, the first one included, is dropped and counted: the proxy does not
		// reassemble, and a later fragment carries no ports to find its session by.
		c.st.fragments.Add(1)
		return nil, none
	}
	k := key{proto: h.proto, src: h.src, dst: h.dst}
	var flags uint8
	switch h.proto {
	case protoTCP:
		if len(h.l4) < 20 {
			c.st.malformed.Add(1)
			return nil, none
		}
		flags = h.l4[13]
		k.sport, k.dport = binary.BigEndian.Uint16(h.l4), binary.BigEndian.Uint16(h.l4[2:])
	case protoUDP:
		if len(h.l4) < 8 {
			c.st.malformed.Add(1)
			return nil, none
		}
		k.sport, k.dport = binary.BigEndian.Uint16(h.l4), binary.BigEndian.Uint16(h.l4[2:])
	case protoICMP:
		if len(h.l4) < 8 {
			c.st.malformed.Add(1)
			return nil, none
		}
		switch h.l4[0] {
		case icmpEchoRequest, icmpEchoReply:
			id := binary.BigEndian.Uint16(h.l4[4:])
			k.sport, k.dport = id, id
		case icmpUnreachable, icmpTimeExceeded, icmpParamProblem:
			return c.icmpError(pkt, &h, false)
		default:
			c.st.unsupported.Add(1)
			return nil, none
		}
	default:
		c.st.refused.Add(1)
		return buildUnreachable(out, pkt, &h, codeProtoUnreach), none
	}
	src, dst, via, v := c.lookup(k, &h, flags)
	switch v {
	case forward:
		rewriteAddrs(pkt, &h, src, dst)
		c.st.forwarded.Add(1)
		return pkt[:h.total], via
	case passOn:
		c.st.forwarded.Add(1)
		return pkt[:h.total], via
	case refuse:
		return c.refuse(out, pkt, &h, flags), none
	}
	return nil, none
}

// refuse answers a packet that cannot be forwarded, from the address it was sent to, so the
// sender fails at once instead of timing out: a TCP RST (which ends a connection in any
// state), ICMP port unreachable for UDP (a connected socket reports ECONNREFUSED), ICMP host
// unreachable for an echo request. Resets and other ICMP messages are dropped silently.
func (c *core) refuse(out, pkt []byte, h *ipv4, flags uint8) []byte {
	switch {
	case h.proto == protoTCP && flags&tcpRST == 0:
		c.st.refused.Add(1)
		return buildRST(out, h)
	case h.proto == protoUDP:
		c.st.refused.Add(1)
		return buildUnreachable(out, pkt, h, codePortUnreach)
	case h.proto == protoICMP && h.l4[0] == icmpEchoRequest:
		c.st.refused.Add(1)
		return buildUnreachable(out, pkt, h, codeHostUnreach)
	}
	return nil
}

// icmpError translates an ICMP error (unreachable, time exceeded, parameter problem) about a
// packet of a known session, so that e.g. a server's "port unreachable" reaches the client
// as if it came from the service IP: the outer addresses are translated like the session's
// packets in the error's direction, the quoted packet's like those in the other direction,
// with the quoted IPv4 and transport checksums fixed incrementally and the ICMP checksum
// recomputed. Errors about unknown packets are dropped. fromTunnel says whether the error
// came through the tunnel rather than from the device; via is where it goes (quoted).
func (c *core) icmpError(pkt []byte, h *ipv4, fromTunnel bool) (p []byte, via [4]byte) {
	quote := h.l4[8:]
	if len(quote) < 20 || quote[0]>>4 != 4 {
		c.st.malformed.Add(1)
		return nil, via
	}
	ih := ipv4{ihl: int(quote[0]&0x0f) * 4, proto: quote[9]}
	if ih.ihl < 20 || len(quote) < ih.ihl+8 {
		c.st.malformed.Add(1)
		return nil, via
	}
	frag := binary.BigEndian.Uint16(quote[6:])
	ih.mf, ih.fragOff = frag&0x2000 != 0, frag&0x1fff
	copy(ih.src[:], quote[12:16])
	copy(ih.dst[:], quote[16:20])
	ih.l4 = quote[ih.ihl:]
	// The session key of the direction the error travels: the quoted packet reversed.
	k := key{proto: ih.proto, src: ih.dst, dst: ih.src}
	switch ih.proto {
	case protoTCP, protoUDP:
		k.sport, k.dport = binary.BigEndian.Uint16(ih.l4[2:]), binary.BigEndian.Uint16(ih.l4)
	case protoICMP:
		id := binary.BigEndian.Uint16(ih.l4[4:])
		k.sport, k.dport = id, id
	default:
		c.st.unsupported.Add(1)
		return nil, via
	}
	if ih.mf || ih.fragOff != 0 { // the proxy forwards no fragments
		c.st.unsupported.Add(1)
		return nil, via
	}
	src, dst, via, ok := c.quoted(k, fromTunnel)
	if !ok {
		c.st.unsupported.Add(1)
		return nil, via
	}
	outerSrc := h.src
	if outerSrc == k.src { // sent by the peer itself, not by a router on the way
		outerSrc = src
	}
	rewriteAddrs(quote, &ih, dst, src)
	rewriteAddrs(pkt, h, outerSrc, dst)
	icmp := h.l4
	icmp[2], icmp[3] = 0, 0
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	c.st.forwarded.Add(1)
	return pkt[:h.total], via
}
