package nftables

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table (family ip) the data plane owns in the node namespace.
const TableName = "edgebpf"

// Names of the table's fixed objects.
const (
	servicesMap     = "services"     // service IP or instance IP -> goto its chain
	clientIPsMap    = "client-ips"   // namespace IP -> instance IP, for SNAT
	endedSet        = "ended"        // original 5-tuples of sessions whose instance is gone
	preroutingChain = "prerouting"   // nat, dstnat: ended sessions, then @services
	postroutingChn  = "postrouting"  // nat, srcnat: proxied sessions get the client's instance IP
	noInstances     = "no-instances" // reject: TCP reset, else ICMP port unreachable
)

// endedTimeout is how long a session to a removed instance keeps being refused before its
// 5-tuple may start a new session: the UDP conntrack "stream" timeout.
const endedTimeout = 120 * time.Second

// maxElemsPerMsg bounds the set elements in one netlink message: a message's element list is
// one netlink attribute, whose length field is 16 bits.
const maxElemsPerMsg = 256

// socketBuffer is the send and receive buffer of the nftables netlink socket (set with
// SO_*BUFFORCE, as nft does for large batches): a batch is one sendmsg and every message in
// it is acknowledged, so installing 10,000 services at once needs tens of megabytes.
const socketBuffer = 256 << 20

// backend is one instance behind a service.
type backend struct {
	NSIP       netip.Addr // where its sessions are DNATed to
	InstanceIP netip.Addr // reaches exactly it; the source its own sessions are SNATed to
}

// entry is a service and its backends in round-robin order: what the ruleset installs,
// whether it comes from the registry or from a benchmark.
type entry struct {
	IP       netip.Addr
	Backends []backend
}

// ruleset is the table in the node namespace and the model of what is installed in it. Every
// change is one netlink batch (one nftables transaction), so the kernel switches from the
// old rules to the new ones atomically; the model is updated only once the batch committed.
// A ruleset is not safe for concurrent use.
type ruleset struct {
	conn   *nftables.Conn
	nsFD   int
	svcNet netip.Prefix

	table                    *nftables.Table
	services, clients, ended *nftables.Set

	installed map[netip.Addr][]backend // service IP -> backends
}

// newRuleset connects to nftables in the namespace nsFD refers to and creates the table
// afresh (replacing a stale one), with the fixed sets and chains. svcNet is the service range:
// a destination in it that matches nothing is rejected.
func newRuleset(nsFD int, svcNet netip.Prefix) (*ruleset, error) {
	r := &ruleset{nsFD: nsFD, svcNet: svcNet, installed: map[netip.Addr][]backend{}}
	if err := r.dial(); err != nil {
		return nil, err
	}
	r.table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	r.services = &nftables.Set{Table: r.table, Name: servicesMap, IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict}
	r.clients = &nftables.Set{Table: r.table, Name: clientIPsMap, IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeIPAddr}
	r.ended = &nftables.Set{
		Table: r.table, Name: endedSet, Concatenation: true, HasTimeout: true, Timeout: endedTimeout,
		KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService, nftables.TypeIPAddr, nftables.TypeInetService, nftables.TypeInetProto),
	}
	if err := r.create(); err != nil {
		return nil, errors.Join(err, r.conn.CloseLasting())
	}
	return r, nil
}

// dial opens the lasting netlink socket inside the namespace, with room for large batches.
func (r *ruleset) dial() error {
	c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(r.nsFD), nftables.WithSockOptions(bigBuffers))
	if err != nil {
		return fmt.Errorf("connect to nftables in the node namespace: %w", err)
	}
	r.conn = c
	return nil
}

func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, socketBuffer); e != nil {
				serr = fmt.Errorf("set netlink socket buffer: %w", e)
			}
		}
	})
	return errors.Join(err, serr)
}

// flush commits the queued batch. After a failed batch the socket may still hold
// acknowledgements of it, so it is replaced.
func (r *ruleset) flush(what string) error {
	if err := r.conn.Flush(); err != nil {
		err = fmt.Errorf("nftables: %s: %w", what, err)
		if cerr := r.conn.CloseLasting(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if derr := r.dial(); derr != nil {
			err = errors.Join(err, derr)
		}
		return err
	}
	return nil
}

// create installs the fixed part of the table:
//
//	table ip edgebpf {
//	  map services   { type ipv4_addr : verdict }       # service/instance IP -> goto chain
//	  map client-ips { type ipv4_addr : ipv4_addr }     # namespace IP -> instance IP
//	  set ended      { type ipv4_addr . inet_service . ipv4_addr . inet_service . inet_proto; timeout 2m }
//	  chain prerouting { type nat hook prerouting priority dstnat
//	    meta l4proto tcp tcp flags & syn == 0 ip saddr . th sport . ip daddr . th dport . meta l4proto @ended reject with tcp reset
//	    meta l4proto udp ip saddr . th sport . ip daddr . th dport . meta l4proto @ended reject
//	    ip daddr vmap @services
//	    ip daddr 10.30.0.0/16 goto no-instances }
//	  chain postrouting { type nat hook postrouting priority srcnat
//	    ct status dnat snat to ip saddr map @client-ips }
//	  chain no-instances { meta l4proto tcp reject with tcp reset; reject }
//	}
func (r *ruleset) create() error {
	c := r.conn
	// Adding, deleting and adding again replaces a table left by an earlier run in one step.
	c.AddTable(r.table)
	c.DelTable(r.table)
	c.AddTable(r.table)
	for _, s := range []*nftables.Set{r.services, r.clients, r.ended} {
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("nftables: set %s: %w", s.Name, err)
		}
	}
	pre := c.AddChain(&nftables.Chain{Name: preroutingChain, Table: r.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	post := c.AddChain(&nftables.Chain{Name: postroutingChn, Table: r.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	reject := c.AddChain(&nftables.Chain{Name: noInstances, Table: r.table})

	c.AddRule(&nftables.Rule{Table: r.table, Chain: pre, Exprs: slices.Concat(
		l4proto(unix.IPPROTO_TCP), tcpFlagsClear(0x02), r.endedLookup(), rejectTCP())})
	c.AddRule(&nftables.Rule{Table: r.table, Chain: pre, Exprs: slices.Concat(
		l4proto(unix.IPPROTO_UDP), r.endedLookup(), rejectICMP())})
	c.AddRule(&nftables.Rule{Table: r.table, Chain: pre, Exprs: []expr.Any{
		ipDaddr(1),
		&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: r.services.Name, SetID: r.services.ID},
	}})
	c.AddRule(&nftables.Rule{Table: r.table, Chain: pre, Exprs: slices.Concat(
		inPrefix(r.svcNet), []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: noInstances}})})

	c.AddRule(&nftables.Rule{Table: r.table, Chain: post, Exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(ipsDstNAT), Xor: native32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: native32(0)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: r.clients.Name, SetID: r.clients.ID},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
	}})

	c.AddRule(&nftables.Rule{Table: r.table, Chain: reject, Exprs: slices.Concat(l4proto(unix.IPPROTO_TCP), rejectTCP())})
	c.AddRule(&nftables.Rule{Table: r.table, Chain: reject, Exprs: rejectICMP()})
	return r.flush("create table " + TableName)
}

// destroy deletes the table and closes the socket.
func (r *ruleset) destroy() error {
	r.conn.DelTable(r.table)
	err := r.conn.Flush()
	if err != nil && !errors.Is(err, unix.ENOENT) {
		err = fmt.Errorf("nftables: delete table %s: %w", TableName, err)
	} else {
		err = nil
	}
	return errors.Join(err, r.conn.CloseLasting())
}

// Chain names carry the address they stand for, as kube-proxy's carry the service or
// endpoint, so `nft list table ip edgebpf` reads without a legend.
func serviceChain(ip netip.Addr) string { return "svc-" + ip.String() }
func backendChain(ip netip.Addr) string { return "ep-" + ip.String() }

func (r *ruleset) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: r.table}
}

// queueService queues a new, empty service: its chain, which rejects until the service has
// backends, its balancing map, and its element in @services.
func (r *ruleset) queueService(ip netip.Addr) error {
	ch := r.conn.AddChain(r.chain(serviceChain(ip)))
	if err := r.conn.AddSet(r.turns(ip), nil); err != nil {
		return fmt.Errorf("nftables: balancing map of %s: %w", ip, err)
	}
	r.conn.AddRule(&nftables.Rule{Table: r.table, Chain: ch, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: noInstances}}})
	return r.setElems(r.services, []nftables.SetElement{gotoElem(ip, ch.Name)}, false)
}

// turns is a service's balancing map: turn -> goto the backend's chain. It is named, not
// anonymous as kube-proxy's (see the package's Note).
func (r *ruleset) turns(ip netip.Addr) *nftables.Set {
	return &nftables.Set{Table: r.table, Name: "turns-" + ip.String(), IsMap: true, KeyType: nftables.TypeInteger, DataType: nftables.TypeVerdict}
}

// queueBalancing queues the replacement of the service's balancing: its map's elements and
// its chain's one rule, round-robin over backends (numgen inc mod N vmap @turns-IP), or a
// reject without backends. The kernel counts per rule, so the turn restarts at the first
// backend after a change. fresh says the service is new in this batch: nothing to flush.
func (r *ruleset) queueBalancing(ip netip.Addr, backends []backend, fresh bool) error {
	ch, turns := r.chain(serviceChain(ip)), r.turns(ip)
	if !fresh {
		r.conn.FlushChain(ch)
		r.conn.FlushSet(turns)
	}
	if len(backends) == 0 {
		r.conn.AddRule(&nftables.Rule{Table: r.table, Chain: ch, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: noInstances}}})
		return nil
	}
	elems := make([]nftables.SetElement, len(backends))
	for i, b := range backends {
		elems[i] = nftables.SetElement{Key: native32(uint32(i)), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: backendChain(b.NSIP)}}
	}
	if err := r.setElems(turns, elems, false); err != nil {
		return err
	}
	r.conn.AddRule(&nftables.Rule{Table: r.table, Chain: ch, Exprs: []expr.Any{
		&expr.Numgen{Register: 1, Modulus: uint32(len(backends)), Type: unix.NFT_NG_INCREMENTAL},
		&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: turns.Name},
	}})
	return nil
}

// queueBackendChains queues the backends' chains (dnat to the namespace IP); queueBackendElems
// queues their instance IPs in @services and their namespace IPs in @client-ips. The chains
// must come first in a batch, the elements after them.
func (r *ruleset) queueBackendChains(bs []backend) {
	for _, b := range bs {
		ch := r.conn.AddChain(r.chain(backendChain(b.NSIP)))
		r.conn.AddRule(&nftables.Rule{Table: r.table, Chain: ch, Exprs: []expr.Any{
			&expr.Immediate{Register: 1, Data: b.NSIP.AsSlice()},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
		}})
	}
}

func (r *ruleset) queueBackendElems(bs []backend, del bool) error {
	svc := make([]nftables.SetElement, 0, len(bs))
	cli := make([]nftables.SetElement, 0, len(bs))
	for _, b := range bs {
		svc = append(svc, gotoElem(b.InstanceIP, backendChain(b.NSIP)))
		cli = append(cli, nftables.SetElement{Key: b.NSIP.AsSlice(), Val: b.InstanceIP.AsSlice()})
	}
	return errors.Join(r.setElems(r.services, svc, del), r.setElems(r.clients, cli, del))
}

// setElems queues adding (or deleting) elements, at most maxElemsPerMsg per message.
func (r *ruleset) setElems(s *nftables.Set, elems []nftables.SetElement, del bool) error {
	for chunk := range slices.Chunk(elems, maxElemsPerMsg) {
		var err error
		if del {
			err = r.conn.SetDeleteElements(s, chunk)
		} else {
			err = r.conn.SetAddElements(s, chunk)
		}
		if err != nil {
			return fmt.Errorf("nftables: elements of %s: %w", s.Name, err)
		}
	}
	return nil
}

// addService installs a service without backends, in one batch.
func (r *ruleset) addService(ip netip.Addr) error {
	if _, ok := r.installed[ip]; ok {
		return nil
	}
	if !r.svcNet.Contains(ip) {
		return fmt.Errorf("service IP %s is outside the service range %s", ip, r.svcNet)
	}
	if err := r.queueService(ip); err != nil {
		return err
	}
	if err := r.flush("add service " + ip.String()); err != nil {
		return err
	}
	r.installed[ip] = nil
	return nil
}

// setBackends makes backends the service's instances, in one batch: new backends get their
// chains and elements, the service chain balances over the new list, and removed backends
// lose their elements and chains. It returns the removed backends.
func (r *ruleset) setBackends(ip netip.Addr, backends []backend) (removed []backend, err error) {
	old, ok := r.installed[ip]
	if !ok {
		return nil, fmt.Errorf("service %s is not installed", ip)
	}
	for _, b := range backends {
		if !r.svcNet.Contains(b.InstanceIP) {
			return nil, fmt.Errorf("instance IP %s is outside the service range %s", b.InstanceIP, r.svcNet)
		}
	}
	added := diff(backends, old)
	removed = diff(old, backends)
	r.queueBackendChains(added)
	err = errors.Join(
		r.queueBackendElems(added, false),
		r.queueBalancing(ip, backends, false),
		r.queueBackendElems(removed, true),
	)
	for _, b := range removed {
		r.conn.DelChain(r.chain(backendChain(b.NSIP)))
	}
	if err == nil {
		err = r.flush(fmt.Sprintf("service %s: %d instances", ip, len(backends)))
	}
	if err != nil {
		return nil, err
	}
	r.installed[ip] = slices.Clone(backends)
	return removed, nil
}

// removeService deletes a service and its backends in one batch.
func (r *ruleset) removeService(ip netip.Addr) error {
	old, ok := r.installed[ip]
	if !ok {
		return nil
	}
	err := errors.Join(
		r.setElems(r.services, []nftables.SetElement{{Key: ip.AsSlice()}}, true),
		r.queueBackendElems(old, true),
	)
	r.conn.DelChain(r.chain(serviceChain(ip)))
	r.conn.DelSet(r.turns(ip))
	for _, b := range old {
		r.conn.DelChain(r.chain(backendChain(b.NSIP)))
	}
	if err == nil {
		err = r.flush("remove service " + ip.String())
	}
	if err != nil {
		return err
	}
	delete(r.installed, ip)
	return nil
}

// install adds many new services with their backends in one batch: all chains, then the
// balancing rules, then the map elements.
func (r *ruleset) install(entries []entry) error {
	var all []backend
	for _, e := range entries {
		if _, ok := r.installed[e.IP]; ok {
			return fmt.Errorf("service %s is already installed", e.IP)
		}
		r.conn.AddChain(r.chain(serviceChain(e.IP)))
		if err := r.conn.AddSet(r.turns(e.IP), nil); err != nil {
			return fmt.Errorf("nftables: balancing map of %s: %w", e.IP, err)
		}
		all = append(all, e.Backends...)
	}
	r.queueBackendChains(all)
	svcElems := make([]nftables.SetElement, 0, len(entries))
	var errs []error
	for _, e := range entries {
		errs = append(errs, r.queueBalancing(e.IP, e.Backends, true))
		svcElems = append(svcElems, gotoElem(e.IP, serviceChain(e.IP)))
	}
	errs = append(errs, r.setElems(r.services, svcElems, false), r.queueBackendElems(all, false))
	err := errors.Join(errs...)
	if err == nil {
		err = r.flush(fmt.Sprintf("install %d services with %d instances", len(entries), len(all)))
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		r.installed[e.IP] = slices.Clone(e.Backends)
	}
	return nil
}

// endSessions queues the original tuples of sessions to a removed backend into @ended, so
// that their next packets are refused instead of balanced to another instance.
func (r *ruleset) endSessions(tuples []tuple) error {
	elems := make([]nftables.SetElement, len(tuples))
	for i, t := range tuples {
		elems[i] = nftables.SetElement{Key: t.key()}
	}
	if err := r.setElems(r.ended, elems, false); err != nil {
		return err
	}
	return r.flush(fmt.Sprintf("end %d sessions", len(tuples)))
}

// serviceIPs returns the installed services, for tests.
func (r *ruleset) serviceIPs() []netip.Addr { return slices.Collect(maps.Keys(r.installed)) }

// diff returns the backends of a that b lacks, in a's order.
func diff(a, b []backend) []backend {
	var out []backend
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func gotoElem(ip netip.Addr, chain string) nftables.SetElement {
	return nftables.SetElement{Key: ip.AsSlice(), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}}
}
