// Package features is the vocabulary of what the kernel and the machine offer edgebpf:
// network namespaces, veths and bridges (every experiment), TUN devices (the userspace data
// plane), nf_tables (the nftables data plane), BPF with BTF and TCX links (the ebpf data
// plane), XDP on veths (the speed-limit responder's mixed and ebpf configurations), and the
// external tools of the calibration experiment. A Report holds each feature's outcome; the
// runner skips what the machine cannot run, with the reason, and `edgebpf check` shows it.
//
// The probes that fill a Report live in internal/host/probe; this package imports nothing
// of edgebpf, so scenarios and tests can speak of features without building nodes.
package features

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
