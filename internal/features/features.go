// Package features probes what the kernel and the machine offer edgebpf: network namespaces,
// veths and bridges (every experiment), TUN devices (the userspace data plane), nf_tables (the
// nftables data plane), BPF with BTF and TCX links (the ebpf data plane), XDP on veths (the
// speed-limit responder's mixed and ebpf configurations), and the external tools of the
// calibration experiment. The runner skips what the machine cannot run, with the reason, and
// `edgebpf check` shows it.
//
// Each privileged probe does for real what the experiments do, on a throwaway node of the
// caller's session (a namespace with a bridge and one veth-joined instance): it attaches a TCX
// program and an XDP program built in memory (no clang, no object file), creates a TUN
// device and an nftables NAT table, and removes all of it.
package features

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	ebpffeatures "github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/netsetup"
)

// Name names a feature.
type Name string

// The features edgebpf probes.
const (
	Netns    Name = "netns"    // network namespaces
	Veth     Name = "veth"     // veth pairs
	Bridge   Name = "bridge"   // Linux bridges
	BPF      Name = "bpf"      // the bpf(2) syscall with TC and XDP program types
	BTF      Name = "btf"      // kernel BTF at /sys/kernel/btf/vmlinux
	TCX      Name = "tcx"      // TCX links (Linux 6.6)
	XDP      Name = "xdp"      // XDP programs on a veth
	TUN      Name = "tun"      // TUN devices (/dev/net/tun)
	NFTables Name = "nftables" // nf_tables over netlink, with NAT chains and verdict maps
	Iperf3   Name = "iperf3"   // the iperf3 binary, for calibration
	Sockperf Name = "sockperf" // the sockperf binary, for calibration
)

// All lists every feature in the order they are shown.
var All = []Name{Netns, Veth, Bridge, BPF, BTF, TCX, XDP, TUN, NFTables, Iperf3, Sockperf}

// Feature is one probe's outcome.
type Feature struct {
	Name Name `json:"name"`
	OK   bool `json:"ok"`
	// Detail says what was found (such as "native and generic mode" for XDP) or why the
	// feature is missing.
	Detail string `json:"detail"`
}

// Report is the outcome of every probe.
type Report struct {
	Features []Feature
}

// Get returns the named feature's outcome; a feature that was not probed is missing.
func (r Report) Get(n Name) Feature {
	for _, f := range r.Features {
		if f.Name == n {
			return f
		}
	}
	return Feature{Name: n, Detail: "not probed"}
}

// Set records a feature's outcome, replacing an earlier one.
func (r *Report) Set(n Name, ok bool, detail string) {
	for i := range r.Features {
		if r.Features[i].Name == n {
			r.Features[i] = Feature{n, ok, detail}
			return
		}
	}
	r.Features = append(r.Features, Feature{n, ok, detail})
}

// Missing returns the features of names the machine lacks.
func (r Report) Missing(names ...Name) []Feature {
	var out []Feature
	for _, n := range names {
		if f := r.Get(n); !f.OK {
			out = append(out, f)
		}
	}
	return out
}

// AllOK says whether every probed feature is available.
func (r Report) AllOK() bool {
	for _, f := range r.Features {
		if !f.OK {
			return false
		}
	}
	return true
}

// Probe runs every probe. The privileged ones need sess; with a nil session (the process is
// not root) they are reported missing with the reason. Probe never fails: what it cannot
// find out is a missing feature with a detail saying why.
func Probe(sess *netsetup.Session) Report {
	var r Report
	probeBPF(&r)
	probeBTF(&r)
	if sess == nil {
		for _, n := range []Name{Netns, Veth, Bridge, TCX, XDP, TUN, NFTables} {
			r.Set(n, false, "not probed: needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF)")
		}
	} else {
		probeNode(&r, sess)
	}
	for _, n := range []Name{Iperf3, Sockperf} {
		if p, err := exec.LookPath(string(n)); err != nil {
			r.Set(n, false, fmt.Sprintf("%s is not installed (not found in PATH)", n))
		} else {
			r.Set(n, true, p)
		}
	}
	r.sort()
	return r
}

func (r *Report) sort() {
	var out []Feature
	for _, n := range All {
		out = append(out, r.Get(n))
	}
	r.Features = out
}

func probeBPF(r *Report) {
	var errs []error
	for _, pt := range []ebpf.ProgramType{ebpf.SchedCLS, ebpf.XDP} {
		if err := ebpffeatures.HaveProgramType(pt); err != nil {
			errs = append(errs, fmt.Errorf("%s programs: %w", pt, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		r.Set(BPF, false, explain(err))
		return
	}
	r.Set(BPF, true, "bpf(2) with TC and XDP programs")
}

func probeBTF(r *Report) {
	const path = "/sys/kernel/btf/vmlinux"
	if _, err := os.Stat(path); err != nil {
		r.Set(BTF, false, fmt.Sprintf("%s is missing: the kernel was built without CONFIG_DEBUG_INFO_BTF", path))
		return
	}
	if _, err := btf.LoadKernelSpec(); err != nil {
		r.Set(BTF, false, fmt.Sprintf("%s cannot be read: %v", path, err))
		return
	}
	r.Set(BTF, true, path)
}

// probeNode builds a throwaway node and tries everything on it.
func probeNode(r *Report, sess *netsetup.Session) {
	ns, err := sess.NewNamespace("probe-netns")
	if err != nil {
		r.Set(Netns, false, explain(err))
		for _, n := range []Name{Veth, Bridge, TCX, XDP, TUN, NFTables} {
			r.Set(n, false, "not probed: network namespaces are missing")
		}
		return
	}
	if err := sess.DeleteNamespace(ns); err != nil {
		r.Set(Netns, false, explain(err))
		return
	}
	r.Set(Netns, true, "network namespaces")
	node, err := netsetup.NewNode(sess, netsetup.NodeConfig{Name: "probe"})
	if err != nil {
		r.Set(Bridge, false, explain(err))
		for _, n := range []Name{Veth, TCX, XDP, TUN, NFTables} {
			r.Set(n, false, "not probed: a node with a bridge could not be built")
		}
		return
	}
	defer node.Close()
	r.Set(Bridge, true, "Linux bridge")
	in, err := addInstance(node)
	if err != nil {
		r.Set(Veth, false, explain(err))
		r.Set(TCX, false, "not probed: no veth")
		r.Set(XDP, false, "not probed: no veth")
	} else {
		r.Set(Veth, true, "veth pairs")
		probeTCX(r, node, in)
		probeXDP(r, in, node)
	}
	probeTUN(r, node.NS)
	probeNFTables(r, node.NS)
}

func addInstance(node *netsetup.Node) (*netsetup.Instance, error) {
	if _, err := node.AddService("probe"); err != nil {
		return nil, err
	}
	return node.AddInstance("probe")
}

// ifindex returns the index of the link name inside ns.
func ifindex(ns *netsetup.Namespace, name string) (int, error) {
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

func program(t ebpf.ProgramType, ret int32) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: t, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, ret), asm.Return()},
	})
}

// probeTCX attaches a TC program that passes everything on (TCX_NEXT) to the bridge-side
// veth, as the eBPF manager does.
func probeTCX(r *Report, node *netsetup.Node, in *netsetup.Instance) {
	prog, err := program(ebpf.SchedCLS, -1) // TCX_NEXT
	if err != nil {
		r.Set(TCX, false, "load a TC program: "+explain(err))
		return
	}
	defer prog.Close()
	idx, err := ifindex(node.NS, in.Veth)
	if err != nil {
		r.Set(TCX, false, explain(err))
		return
	}
	// TCX resolves the interface index in the calling thread's namespace.
	err = node.NS.Do(func() error {
		l, err := link.AttachTCX(link.TCXOptions{Interface: idx, Program: prog, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		return l.Close()
	})
	if err != nil {
		r.Set(TCX, false, explain(err))
		return
	}
	r.Set(TCX, true, "TCX links")
}

// probeXDP attaches an XDP_PASS program to the instance's veth, natively (with a pass program
// on the bridge-side peer, as the speed-limit responder does) and in generic mode.
func probeXDP(r *Report, in *netsetup.Instance, node *netsetup.Node) {
	prog, err := program(ebpf.XDP, 2) // XDP_PASS
	if err != nil {
		r.Set(XDP, false, "load an XDP program: "+explain(err))
		return
	}
	defer prog.Close()
	attach := func(ns *netsetup.Namespace, iface string, flags link.XDPAttachFlags) (link.Link, error) {
		idx, err := ifindex(ns, iface)
		if err != nil {
			return nil, err
		}
		var l link.Link
		err = ns.Do(func() (err error) {
			l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx, Flags: flags})
			return err
		})
		return l, err
	}
	var modes []string
	var errs []error
	for _, m := range []struct {
		name  string
		flags link.XDPAttachFlags
	}{{"native", link.XDPDriverMode}, {"generic", link.XDPGenericMode}} {
		l, err := attach(in.NS, in.Peer, m.flags)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s mode: %w", m.name, err))
			continue
		}
		if m.name == "native" {
			// Native XDP_TX on a veth needs a program on the peer, too.
			if pl, err := attach(node.NS, in.Veth, m.flags); err != nil {
				errs = append(errs, fmt.Errorf("native mode on the peer: %w", err))
				l.Close()
				continue
			} else {
				pl.Close()
			}
		}
		l.Close()
		modes = append(modes, m.name)
	}
	switch {
	case len(modes) == 0:
		r.Set(XDP, false, explain(errors.Join(errs...)))
	case len(modes) == 1:
		r.Set(XDP, true, fmt.Sprintf("%s mode only on veth (%s)", modes[0], explain(errors.Join(errs...))))
	default:
		r.Set(XDP, true, "native and generic mode on veth")
	}
}

// probeTUN creates a TUN device in ns and closes it, which removes it.
func probeTUN(r *Report, ns *netsetup.Namespace) {
	err := ns.Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq(netsetup.LinkPrefix + "probetun")
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			return fmt.Errorf("create a tun device: %w", err)
		}
		return nil
	})
	if err != nil {
		r.Set(TUN, false, explain(err))
		return
	}
	r.Set(TUN, true, "/dev/net/tun")
}

// probeNFTables creates a table with a NAT chain and a verdict map in ns, as the nftables
// data plane does, and deletes it.
func probeNFTables(r *Report, ns *netsetup.Namespace) {
	err := func() error {
		c, err := nftables.New(nftables.WithNetNSFd(int(ns.Handle())))
		if err != nil {
			return err
		}
		t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "edgebpf_probe"})
		c.AddChain(&nftables.Chain{Name: "pre", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
		if err := c.AddSet(&nftables.Set{Table: t, Name: "probe", IsMap: true, KeyType: nftables.TypeIPAddr,
			DataType: nftables.TypeVerdict}, nil); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("create an nftables NAT table: %w", err)
		}
		c.DelTable(t)
		return c.Flush()
	}()
	if err != nil {
		r.Set(NFTables, false, explain(err))
		return
	}
	r.Set(NFTables, true, "nf_tables with NAT chains and verdict maps")
}

// explain adds what a kernel error usually means.
func explain(err error) string {
	s := err.Error()
	switch {
	case errors.Is(err, ebpf.ErrNotSupported):
		if !strings.Contains(s, "requires") {
			s += ": this kernel is too old or built without it"
		}
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		s += ": run as root"
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENODEV), errors.Is(err, unix.EAFNOSUPPORT):
		s += ": the kernel lacks it (a missing module or build option)"
	}
	return s
}
