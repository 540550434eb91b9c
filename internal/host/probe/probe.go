// Package probe finds out which kernel features and tools (package features) this machine
// offers edgebpf, by trying each for real. It is the part of internal/host that needs
// netsetup, kept apart so that host and reports do not.
//
// Each privileged probe does for real what the experiments do, on a throwaway node of the
// caller's session (a namespace with a bridge and one veth-joined instance): it attaches a TCX
// program and an XDP program built in memory (no clang, no object file), creates a TUN
// device and an nftables NAT table, and removes all of it.
package probe

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

	"github.com/edgebpf/edgebpf/internal/features"
	"github.com/edgebpf/edgebpf/netsetup"
)

// Features runs every probe. The privileged ones need sess; with a nil session (the process
// is not root) they are reported missing with the reason. Features never fails: what it
// cannot find out is a missing feature with a detail saying why.
func Features(sess *netsetup.Session) features.Report {
	var r features.Report
	probeBPF(&r)
	probeBTF(&r)
	if sess == nil {
		for _, n := range []features.Name{features.Netns, features.Veth, features.Bridge, features.TCX, features.XDP, features.TUN, features.NFTables} {
			r.Set(n, false, "not probed: needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF)")
		}
	} else {
		probeNode(&r, sess)
	}
	for _, n := range []features.Name{features.Iperf3, features.Sockperf} {
		if p, err := exec.LookPath(string(n)); err != nil {
			r.Set(n, false, fmt.Sprintf("%s is not installed (not found in PATH)", n))
		} else {
			r.Set(n, true, p)
		}
	}
	// In the order features.All shows them.
	var sorted features.Report
	for _, n := range features.All {
		sorted.Features = append(sorted.Features, r.Get(n))
	}
	return sorted
}

func probeBPF(r *features.Report) {
	var errs []error
	for _, pt := range []ebpf.ProgramType{ebpf.SchedCLS, ebpf.XDP} {
		if err := ebpffeatures.HaveProgramType(pt); err != nil {
			errs = append(errs, fmt.Errorf("%s programs: %w", pt, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		r.Set(features.BPF, false, explain(err))
		return
	}
	r.Set(features.BPF, true, "bpf(2) with TC and XDP programs")
}

func probeBTF(r *features.Report) {
	const path = "/sys/kernel/btf/vmlinux"
	if _, err := os.Stat(path); err != nil {
		r.Set(features.BTF, false, fmt.Sprintf("%s is missing: the kernel was built without CONFIG_DEBUG_INFO_BTF", path))
		return
	}
	if _, err := btf.LoadKernelSpec(); err != nil {
		r.Set(features.BTF, false, fmt.Sprintf("%s cannot be read: %v", path, err))
		return
	}
	r.Set(features.BTF, true, path)
}

// probeNode builds a throwaway node and tries everything on it.
func probeNode(r *features.Report, sess *netsetup.Session) {
	ns, err := sess.NewNamespace("probe-netns")
	if err != nil {
		r.Set(features.Netns, false, explain(err))
		for _, n := range []features.Name{features.Veth, features.Bridge, features.TCX, features.XDP, features.TUN, features.NFTables} {
			r.Set(n, false, "not probed: network namespaces are missing")
		}
		return
	}
	if err := sess.DeleteNamespace(ns); err != nil {
		r.Set(features.Netns, false, explain(err))
		return
	}
	r.Set(features.Netns, true, "network namespaces")
	node, err := netsetup.NewNode(sess, netsetup.NodeConfig{Name: "probe"})
	if err != nil {
		r.Set(features.Bridge, false, explain(err))
		for _, n := range []features.Name{features.Veth, features.TCX, features.XDP, features.TUN, features.NFTables} {
			r.Set(n, false, "not probed: a node with a bridge could not be built")
		}
		return
	}
	defer node.Close()
	r.Set(features.Bridge, true, "Linux bridge")
	in, err := addInstance(node)
	if err != nil {
		r.Set(features.Veth, false, explain(err))
		r.Set(features.TCX, false, "not probed: no veth")
		r.Set(features.XDP, false, "not probed: no veth")
	} else {
		r.Set(features.Veth, true, "veth pairs")
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
func probeTCX(r *features.Report, node *netsetup.Node, in *netsetup.Instance) {
	prog, err := program(ebpf.SchedCLS, -1) // TCX_NEXT
	if err != nil {
		r.Set(features.TCX, false, "load a TC program: "+explain(err))
		return
	}
	defer prog.Close()
	idx, err := ifindex(node.NS, in.Veth)
	if err != nil {
		r.Set(features.TCX, false, explain(err))
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
		r.Set(features.TCX, false, explain(err))
		return
	}
	r.Set(features.TCX, true, "TCX links")
}

// probeXDP attaches an XDP_PASS program to the instance's veth, natively (with a pass program
// on the bridge-side peer, as the speed-limit responder does) and in generic mode.
func probeXDP(r *features.Report, in *netsetup.Instance, node *netsetup.Node) {
	prog, err := program(ebpf.XDP, 2) // XDP_PASS
	if err != nil {
		r.Set(features.XDP, false, "load an XDP program: "+explain(err))
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
		r.Set(features.XDP, false, explain(errors.Join(errs...)))
	case len(modes) == 1:
		r.Set(features.XDP, true, fmt.Sprintf("%s mode only on veth (%s)", modes[0], explain(errors.Join(errs...))))
	default:
		r.Set(features.XDP, true, "native and generic mode on veth")
	}
}

// probeTUN creates a TUN device in ns and closes it, which removes it.
func probeTUN(r *features.Report, ns *netsetup.Namespace) {
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
		r.Set(features.TUN, false, explain(err))
		return
	}
	r.Set(features.TUN, true, "/dev/net/tun")
}

// probeNFTables creates a table with a NAT chain and a verdict map in ns, as the nftables
// data plane does, and deletes it.
func probeNFTables(r *features.Report, ns *netsetup.Namespace) {
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
		r.Set(features.NFTables, false, explain(err))
		return
	}
	r.Set(features.NFTables, true, "nf_tables with NAT chains and verdict maps")
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
