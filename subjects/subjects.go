// Package subjects lists every subject this build of edgebpf can compare, by kind: the data
// planes (the Riegel experiments' axis) and the speed-limit responder's configurations (the
// Weinhold experiments'). It is the one place that enumerates them; each spec lives with its
// implementation. The runner, `edgebpf list`, `check`, `node` and the report read names,
// needs, colours and order from here. To add a data plane, give its package a Spec
// (dataplanes.Spec) and add it to DataPlanes.
package subjects

import (
	"image/color"

	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/dataplanes/direct"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf"
	"github.com/edgebpf/edgebpf/dataplanes/nftables"
	"github.com/edgebpf/edgebpf/dataplanes/userspace"
	"github.com/edgebpf/edgebpf/subject"
	"github.com/edgebpf/edgebpf/workloads/speedlimit"
)

// DataPlanes returns the registry of the built-in data planes, in the order tables and
// figures list them: the physical limit first, then the thesis baseline, ours, and what
// operators use today.
func DataPlanes() dataplanes.Registry {
	return dataplanes.Registry{direct.Spec, userspace.Spec, ebpf.Spec, nftables.Spec}
}

// Mixed returns the mixed subjects of a cluster that `--dataplane all` includes under
// `--topology cross-node`: the eBPF worker on the client side, the user-space one on the
// server side. Other combinations are named as A+B and get a generic description. Their
// needs are filled in by DataPlanes().Mixed.
func Mixed() []dataplanes.Mixed {
	return []dataplanes.Mixed{{
		Workers: []string{"ebpf", "userspace"},
		Spec: subject.Spec{
			Kind: subject.DataPlane, Name: "ebpf+userspace", Order: 20,
			Description: "mixed cluster: ebpf on worker 0 (the client's), userspace on worker 1 (the server's); cross-node only",
			Colour:      color.RGBA{0x94, 0x67, 0xbd, 0xff}, // the speed-limit responder's mixed configuration's
		},
	}}
}

// Responders returns the speed-limit responder's configurations.
func Responders() subject.Catalogue { return speedlimit.Specs }

// All returns every subject's spec, data planes first: what the report needs to colour and
// order any run's results.
func All() subject.Catalogue {
	all := DataPlanes().Catalogue()
	for _, m := range Mixed() {
		all = append(all, m.Spec)
	}
	return append(all, Responders()...)
}
