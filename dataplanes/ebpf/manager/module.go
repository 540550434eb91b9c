// Package manager is edgebpf's eBPF manager: a run-time plugin system for eBPF network
// functions on a worker node, after the Riegel thesis. Modules are compiled into the binary,
// and New takes the catalogue of them by name (dataplanes/ebpf/modules.Catalogue); each is a
// Go control plane with a BPF data plane of TCX programs.
// Creating a module attaches its programs to the TC ingress and egress hooks of every service
// instance's bridge-side veth, after the modules already there, so that deployment order is
// chain order; new instances get every module in that order, and deleting a module keeps the
// order of the rest. A REST API (api.go) drives it.
//
// How a chain is built is the manager's chain mode (Chain): in tcx mode every module's
// programs are TCX links on every veth, ordered with TCX anchors, and each link costs an RCU
// grace period in the kernel; in dispatcher mode one dispatcher program per hook is attached
// to every veth once and runs the modules' unchanged programs from program arrays
// (dispatcher.go, bpf/dispatcher.c), so a module costs two array writes whatever the number
// of instances.
//
// Note: the dispatcher first replaced slot functions with extension programs (freplace,
// libxdp's design), which needs no tail call and allows more slots. The kernel of the
// machines this was built on refuses BPF_PROG_TYPE_EXT (EPERM; bpftool feature probe lists
// ext, tracing and lsm as not available), so the slots tail-call into program arrays instead.
package manager

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/edgebpf/edgebpf/netsetup"
)

// Module is one eBPF network function: its data plane (two TCX programs, or in dispatcher
// mode the same programs as extensions) and control plane.
// The manager serialises every call to a module's methods except the Route handlers, which the
// module must make safe for concurrent use.
type Module interface {
	// Programs returns the programs for the TC ingress hook of a bridge-side veth (packets
	// the service sends) and for its TC egress hook (packets the service receives). Either
	// may be nil. They must end with TCX_NEXT to pass a packet on along the chain.
	Programs() (ingress, egress *ebpf.Program)
	// Attached tells the control plane its programs now run on the instance's veth. An
	// error (a full map, say) undoes the attachment and reaches whoever caused it.
	Attached(in *netsetup.Instance) error
	// Detached tells the control plane its programs no longer run on the instance's veth.
	Detached(in *netsetup.Instance)
	// Routes are the module's sub-routes, served under /ebpf/{id} while the module exists.
	Routes() []Route
	// Config is the module's effective configuration, shown in listings.
	Config() any
	// Close releases the programs and maps. The manager calls it after detaching.
	Close() error
}

// Route is one REST route: a method, a pattern relative to the module's prefix (e.g.
// "/counts" or "/rules/{rid}", in net/http ServeMux syntax), a one-line summary for the API
// description, and the handler.
type Route struct {
	Method  string
	Pattern string
	Summary string
	Handler http.HandlerFunc
}

// Factory creates a module for a node from its JSON configuration (nil or empty for
// defaults), loading its BPF collection with load, which the manager picks for its chain mode
// (LoadTCX, or extensions of the dispatcher), so a module's BPF code is the same in both.
// Invalid configuration is reported by wrapping ErrBadConfig. Modules that resolve addresses
// (the proxy) query node.Registry; others ignore the node.
type Factory func(node *netsetup.Node, config json.RawMessage, load Load) (Module, error)

// ErrBadConfig marks a module configuration the module rejects (HTTP 400).
var ErrBadConfig = errors.New("invalid module configuration")

// Catalogue maps module names to their factories: the modules a manager can create.
// Names are what the REST API creates a module by — lower-case words — never paths.
// dataplanes/ebpf/modules.Catalogue lists the modules compiled into edgebpf.
type Catalogue map[string]Factory

// names returns the catalogue's module names, sorted.
func (c Catalogue) names() []string {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// validate checks every name and factory of the catalogue.
func (c Catalogue) validate() error {
	for _, name := range c.names() {
		if err := validModuleName(name); err != nil {
			return err
		}
		if c[name] == nil {
			return fmt.Errorf("module %s has no factory", name)
		}
	}
	return nil
}

// ErrUnknownModule is returned for a module name the manager's catalogue lacks (HTTP 404).
var ErrUnknownModule = errors.New("no module named")

// ErrBadName is returned for a module name that cannot be a catalogue key (HTTP 400).
var ErrBadName = errors.New("invalid module name")

func validModuleName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: give the name of a module, such as counter", ErrBadName)
	}
	if len(name) > 32 {
		return fmt.Errorf("%w %q: at most 32 characters", ErrBadName, name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("%w %q: a module name is a name such as counter, never a path", ErrBadName, name)
		}
	}
	return nil
}
