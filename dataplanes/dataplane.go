// Package dataplanes defines the interface every data plane of edgebpf implements and
// selects one by name. A data plane is what carries traffic from one service instance to
// another on a node: no proxy at all (direct), a user-space proxy, eBPF modules, nftables.
// All of them run on the same topology, addresses and MTU, so results are comparable.
package dataplanes

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/edgebpf/edgebpf/dataplanes/direct"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/dataplanes/nftables"
	"github.com/edgebpf/edgebpf/dataplanes/userspace"
	"github.com/edgebpf/edgebpf/netsetup"
)

// DataPlane carries traffic between the services of one node.
type DataPlane interface {
	// Name is the data plane's name as users select it.
	Name() string
	// Deploy sets the data plane up on node and subscribes it to the node's registry.
	Deploy(ctx context.Context, node *netsetup.Node) error
	// Target is the address a client uses to reach svc through this data plane.
	Target(svc netsetup.Service) (netip.Addr, error)
	// Settings describes how the data plane is configured, for meta.json.
	Settings() map[string]string
	// Close undoes Deploy. It is idempotent.
	Close() error
}

// ProgramRunner is implemented by data planes whose packets run BPF programs: it returns the
// kernel's run statistics of each, so a run can report their cost per packet.
type ProgramRunner interface {
	ProgramRuns() ([]manager.ProgramRun, error)
}

var _ ProgramRunner = (*ebpf.DataPlane)(nil)

var constructors = map[string]func() DataPlane{
	"direct":    func() DataPlane { return direct.New() },
	"userspace": func() DataPlane { return userspace.New() },
	"ebpf":      func() DataPlane { return ebpf.New() },
	"nftables":  func() DataPlane { return nftables.New() },
}

// planned are data planes the design names that this build does not have yet.
var planned []string

// Names lists the available data planes, sorted.
func Names() []string {
	names := make([]string, 0, len(constructors))
	for n := range constructors {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// New returns a fresh, undeployed data plane by name.
func New(name string) (DataPlane, error) {
	if c, ok := constructors[name]; ok {
		return c(), nil
	}
	if slices.Contains(planned, name) {
		return nil, fmt.Errorf("data plane %q is not built yet: available are %s", name, strings.Join(Names(), ", "))
	}
	return nil, fmt.Errorf("unknown data plane %q: choose from %s", name, strings.Join(Names(), ", "))
}

// Parse splits a comma-separated list of data plane names, checking every name and
// rejecting duplicates; "all" means every available data plane.
func Parse(list string) ([]string, error) {
	if strings.TrimSpace(list) == "all" {
		return Names(), nil
	}
	var out []string
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			return nil, fmt.Errorf("empty data plane name in %q: give a comma-separated list such as direct,userspace", list)
		}
		if _, err := New(n); err != nil {
			return nil, err
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("data plane %q is listed twice", n)
		}
		out = append(out, n)
	}
	return out, nil
}
