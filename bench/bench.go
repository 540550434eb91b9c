// Package bench holds the load generators and meters of edgebpf: TCP connect ping, UDP
// jitter, TCP bulk throughput, the UDP bottleneck sweep and the CPU/RAM sampler. Each meter
// runs its server side in one network namespace and its client side in another, and returns
// typed samples (package stats). bench knows nothing of data planes: it is handed the
// namespaces to run in and the address the client must send to.
package bench

import (
	"net/netip"

	"github.com/edgebpf/edgebpf/netsetup"
)

// NS runs a function inside a network namespace (netsetup.Doer). Every socket a meter uses is
// created inside Do and may then be used from any goroutine. netsetup's namespaces implement
// it.
type NS = netsetup.Doer

// Current is the network namespace the calling goroutine already runs in. Tests use it to
// run meters over loopback without any namespace.
type Current struct{}

// Do runs fn in the current network namespace.
func (Current) Do(fn func() error) error { return fn() }

// Endpoints says where a meter runs: its server side listens in Server on all addresses, its
// client side runs in Client and sends to Target. Target is the server's namespace IP for the
// direct data plane and a service IP behind a proxy.
type Endpoints struct {
	Client NS
	Server NS
	Target netip.Addr
}
