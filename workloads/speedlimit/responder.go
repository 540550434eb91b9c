package speedlimit

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/workloads/speedlimit/wire"
)

// NS runs a function inside a network namespace (netsetup.Doer; netsetup.Namespace
// implements it). Everything here that depends on a namespace — interface indexes, XDP
// attachment, sockets — happens inside Do.
type NS = netsetup.Doer

// XDPMode says how an XDP program is attached.
type XDPMode string

// The XDP attach modes. Auto tries native and falls back to generic; None is what the
// user-space configuration reports.
const (
	XDPAuto    XDPMode = "auto"
	XDPNative  XDPMode = "native"
	XDPGeneric XDPMode = "generic"
	XDPNone    XDPMode = "none"
)

// ParseXDPMode checks a user's choice of attach mode.
func ParseXDPMode(s string) (XDPMode, error) {
	switch m := XDPMode(s); m {
	case XDPAuto, XDPNative, XDPGeneric:
		return m, nil
	case "":
		return XDPAuto, nil
	}
	return "", fmt.Errorf("unknown xdp mode %q: choose auto, native or generic", s)
}

// ResponderConfig configures a Responder.
type ResponderConfig struct {
	// Port is the UDP port whose requests the program answers. Default wire.DefaultPort.
	Port uint16
	// Compute makes the program compute the limit per request in fixed point (the eBPF-only
	// configuration); otherwise it answers the limit user space last wrote (mixed).
	Compute bool

	// NS and Iface say where to attach: the interface requests arrive on, in its namespace.
	// With NS nil the program is loaded but not attached (tests run it with
	// BPF_PROG_TEST_RUN).
	NS    NS
	Iface string
	// PeerNS and PeerIface name the other end of Iface's veth pair. Native XDP on a veth
	// delivers XDP_TX frames only while the peer runs an XDP program too, so native mode
	// attaches a pass-everything program there. Without a peer only generic mode works.
	PeerNS    NS
	PeerIface string
	// XDP is the attach mode. Default XDPAuto: native with the peer program where both
	// attach, generic otherwise.
	XDP XDPMode
}

// Responder is the XDP speed-limit responder of bpf/speedlimit.c: its programs and maps,
// and its attachments. Close detaches and unloads it; since the attachments are bpf_links,
// the kernel also detaches them when the process dies or the namespace is deleted.
type Responder struct {
	objs speedlimitObjects
	mode XDPMode

	mu     sync.Mutex
	links  []link.Link
	closed bool
}

// NewResponder loads the program with cfg's port and mode and, if cfg.NS is set, attaches
// it. On error everything it created is released.
func NewResponder(cfg ResponderConfig) (r *Responder, err error) {
	if cfg.Port == 0 {
		cfg.Port = wire.DefaultPort
	}
	xdp := cfg.XDP
	if xdp == "" {
		xdp = XDPAuto
	}
	if _, err := ParseXDPMode(string(xdp)); err != nil {
		return nil, err
	}
	spec, err := loadSpeedlimit()
	if err != nil {
		return nil, err
	}
	mode := speedlimitSpeedlimitModeSPEEDLIMIT_MODE_LOOKUP
	if cfg.Compute {
		mode = speedlimitSpeedlimitModeSPEEDLIMIT_MODE_COMPUTE
	}
	if err := spec.Variables[speedlimitVarConfig].Set(speedlimitSpeedlimitConfig{Port: cfg.Port, Mode: uint32(mode)}); err != nil {
		return nil, fmt.Errorf("configure the speed-limit program: %w", err)
	}
	r = &Responder{mode: XDPNone}
	loaded := r // the named result is nil once an error is returned
	if err := spec.LoadAndAssign(&r.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load the speed-limit program: %+v", ve)
		}
		return nil, fmt.Errorf("load the speed-limit program: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, loaded.Close())
		}
	}()
	// The limit starts where the formula starts: no car, 120 km/h.
	if err := r.SetLimit(wire.LimitKmh(0)); err != nil {
		return nil, err
	}
	if cfg.NS == nil {
		return r, nil
	}
	if cfg.Iface == "" {
		return nil, errors.New("attach the speed-limit program: no interface given")
	}
	if err := r.attach(cfg, xdp); err != nil {
		return nil, err
	}
	return r, nil
}

// attach attaches in the mode asked for: native first unless generic was asked for, generic
// if native failed and auto allows it.
func (r *Responder) attach(cfg ResponderConfig, want XDPMode) error {
	var nativeErr error
	if want != XDPGeneric {
		if cfg.PeerNS == nil || cfg.PeerIface == "" {
			nativeErr = errors.New("native XDP on a veth needs the peer interface, to run a program there too")
		} else {
			nativeErr = r.attachNative(cfg)
			if nativeErr == nil {
				r.mode = XDPNative
				return nil
			}
		}
		if want == XDPNative {
			return fmt.Errorf("attach the speed-limit program in native mode to %s: %w", cfg.Iface, nativeErr)
		}
	}
	l, err := attachXDP(cfg.NS, cfg.Iface, r.objs.SpeedlimitXdp, link.XDPGenericMode)
	if err != nil {
		if nativeErr != nil {
			err = errors.Join(fmt.Errorf("native: %w", nativeErr), fmt.Errorf("generic: %w", err))
		}
		return fmt.Errorf("attach the speed-limit program to %s: %w", cfg.Iface, err)
	}
	r.addLink(l)
	r.mode = XDPGeneric
	return nil
}

func (r *Responder) attachNative(cfg ResponderConfig) error {
	peer, err := attachXDP(cfg.PeerNS, cfg.PeerIface, r.objs.SpeedlimitPeer, link.XDPDriverMode)
	if err != nil {
		return fmt.Errorf("peer %s: %w", cfg.PeerIface, err)
	}
	l, err := attachXDP(cfg.NS, cfg.Iface, r.objs.SpeedlimitXdp, link.XDPDriverMode)
	if err != nil {
		return errors.Join(err, peer.Close())
	}
	r.addLink(peer)
	r.addLink(l)
	return nil
}

func (r *Responder) addLink(l link.Link) {
	r.mu.Lock()
	r.links = append(r.links, l)
	r.mu.Unlock()
}

// attachXDP attaches prog to the interface named iface in ns through a bpf_link. Interface
// indexes are per namespace, and so is the kernel's lookup of the link's target: both
// happen inside ns.
func attachXDP(ns NS, iface string, prog *ebpf.Program, flags link.XDPAttachFlags) (link.Link, error) {
	var l link.Link
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return fmt.Errorf("find interface %s: %w", iface, err)
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: flags})
		return err
	})
	return l, err
}

// Mode returns how the program is attached: native, generic, or none if it is not.
func (r *Responder) Mode() XDPMode { return r.mode }

// Cars returns the number of cars the program counts. Only the program writes the counter
// (atomically); user space only reads it.
func (r *Responder) Cars() (uint64, error) {
	var n uint64
	if err := r.objs.SlCars.Lookup(uint32(0), &n); err != nil {
		return 0, fmt.Errorf("read the car counter: %w", err)
	}
	return n, nil
}

// SetLimit writes the limit the program answers in the mixed configuration. Only user space
// writes it; the program reads it with one aligned 32-bit load, so it sees the old or the new
// value, never a mix.
func (r *Responder) SetLimit(kmh uint32) error {
	if err := r.objs.SlLimit.Update(uint32(0), kmh, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write the speed limit: %w", err)
	}
	return nil
}

// Limit returns the limit user space last wrote.
func (r *Responder) Limit() (uint32, error) {
	var v uint32
	if err := r.objs.SlLimit.Lookup(uint32(0), &v); err != nil {
		return 0, fmt.Errorf("read the speed limit: %w", err)
	}
	return v, nil
}

// statNames name the program's per-CPU counters, in the order of enum speedlimit_stat.
var statNames = [...]string{
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_REPLIED:        "replied",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_LEFT:           "left",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_LEFT_EMPTY:     "left_empty",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_CSUM_OFFLOADED: "csum_offloaded",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_NOT_IPV4:       "pass_not_ipv4",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_MALFORMED:      "pass_malformed",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_NOT_UDP:        "pass_not_udp",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_FRAGMENT:       "pass_fragment",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_OTHER_PORT:     "pass_other_port",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_OPTIONS:        "pass_options",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_TRUNCATED:      "pass_truncated",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_SIZE:           "pass_size",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_UNKNOWN_OP:     "pass_unknown_op",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_CHECKSUM:       "pass_checksum",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_ADDRESS:        "pass_address",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_CONTENDED:      "left_contended",
	speedlimitSpeedlimitStatSPEEDLIMIT_STAT_NO_STATE:       "pass_no_state",
}

// Stats counts what the program did with the frames it saw, by outcome: "replied" (answered
// with XDP_TX), "left" and "left_empty" (OUT_OF_RANGE, dropped), "left_contended",
// "csum_offloaded" (accepted with a checksum left to offload), and "pass_<reason>" for every
// frame handed to the stack.
type Stats map[string]uint64

// Passed returns how many frames the program handed to the stack.
func (s Stats) Passed() uint64 {
	var n uint64
	for k, v := range s {
		if strings.HasPrefix(k, "pass_") {
			n += v
		}
	}
	return n
}

// String lists the non-zero counters in a fixed order.
func (s Stats) String() string {
	var parts []string
	for _, name := range statNames {
		if s[name] != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", name, s[name]))
		}
	}
	if len(parts) == 0 {
		return "nothing seen"
	}
	return strings.Join(parts, " ")
}

// Stats sums the program's per-CPU counters.
func (r *Responder) Stats() (Stats, error) {
	out := Stats{}
	var perCPU []uint64
	for i, name := range statNames {
		if err := r.objs.SlStats.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read counter %s: %w", name, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		out[name] = sum
	}
	return out, nil
}

// RunStats returns how often the kernel ran the responder program and for how long in total.
// The kernel counts only while BPF statistics are enabled (ebpf.EnableStats,
// kernel.bpf_stats_enabled), which costs two clock reads per run.
func (r *Responder) RunStats() (runs uint64, total time.Duration, err error) {
	st, err := r.objs.SpeedlimitXdp.Stats()
	if err != nil {
		return 0, 0, fmt.Errorf("read the program's run statistics: %w", err)
	}
	return st.RunCount, st.Runtime, nil
}

// Close detaches the program and unloads it with its maps. It is idempotent.
func (r *Responder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	for i := len(r.links) - 1; i >= 0; i-- {
		if err := r.links[i].Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach xdp: %w", err))
		}
	}
	r.links = nil
	if err := r.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("unload the speed-limit program: %w", err))
	}
	return errors.Join(errs...)
}
