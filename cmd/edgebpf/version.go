package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/edgebpf/edgebpf/reports"
)

// versionText is what `edgebpf --version` prints: the version and commit (from the
// Makefile's ldflags, else from Go's embedded module and VCS information; a build with
// -buildvcs=false has neither and says "dev" and "unknown"), and the versions of Go and
// cilium/ebpf the binary was built with.
func versionText() string {
	version, ebpf := reports.Version, "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version = bi.Main.Version // go install github.com/edgebpf/edgebpf/cmd/edgebpf@v...
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/cilium/ebpf" {
				ebpf = d.Version
				if d.Replace != nil {
					ebpf += " => " + d.Replace.Path + " " + d.Replace.Version
				}
			}
		}
	}
	return fmt.Sprintf("edgebpf %s\ncommit %s\ngo %s %s/%s\ncilium/ebpf %s\n",
		version, reports.BuildCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH, ebpf)
}
