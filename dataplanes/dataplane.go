// Package dataplanes defines the interface every data plane of edgebpf implements and the
// spec each one describes itself with. A data plane is what carries traffic from one service
// instance to another on a node: no proxy at all (direct), a user-space proxy, eBPF modules,
// nftables. All of them run on the same topology, addresses and MTU, so results are
// comparable.
//
// The package imports no implementation: each data plane's package exports its Spec, and
// dataplanes/builtin lists the specs this build has in a Registry.
package dataplanes

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/subject"
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

// ProgramRunner is implemented by data planes whose packets run BPF programs.
type ProgramRunner = subject.ProgramRunner

// Spec describes a data plane: its subject facts (name, needs, colour, order) and how to make
// a fresh, undeployed one.
type Spec struct {
	subject.Spec
	New func() DataPlane
	// CrossNode says the data plane carries traffic between the workers of a cluster (routes
	// or a tunnel over the underlay) when deployed on each of them. Without it, a cross-node
	// run skips the data plane with the reason, and `edgebpf check` says so.
	CrossNode bool
}

// Registry is the set of data planes a build offers, in their order.
type Registry []Spec

// Names lists the registry's data planes in order.
func (r Registry) Names() []string { return r.Catalogue().Names() }

// Catalogue returns the registry's subject specs.
func (r Registry) Catalogue() subject.Catalogue {
	out := make(subject.Catalogue, len(r))
	for i, s := range r {
		out[i] = s.Spec
	}
	return out
}

// Lookup returns the named data plane's spec, or an error that lists the choices.
func (r Registry) Lookup(name string) (Spec, error) {
	i := slices.IndexFunc(r, func(s Spec) bool { return s.Name == name })
	if i < 0 {
		return Spec{}, fmt.Errorf("unknown data plane %q: choose from %s", name, strings.Join(r.Names(), ", "))
	}
	return r[i], nil
}

// Parse splits a comma-separated list of data plane names, checking every name and
// rejecting duplicates; "all" means every data plane of the registry.
func (r Registry) Parse(list string) ([]string, error) {
	if strings.TrimSpace(list) == "all" {
		return r.Names(), nil
	}
	var out []string
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			return nil, fmt.Errorf("empty data plane name in %q: give a comma-separated list such as direct,userspace", list)
		}
		if _, err := r.Lookup(n); err != nil {
			return nil, err
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("data plane %q is listed twice", n)
		}
		out = append(out, n)
	}
	return out, nil
}
