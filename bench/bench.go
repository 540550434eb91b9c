// Package bench holds the load generators and meters of edgebpf. Each meter runs its server
// side in one network namespace and its client side in another, and returns typed samples
// (package stats). bench knows nothing of data planes: it is handed the namespaces to run in
// and the address the client must send to. A meter's config carries JSON tags and the
// Duration and Rate types, so scenarios decodes a suite's parameters straight into it and
// records it in meta.json; its Validate reports every field it cannot use.
//
// Experiments (scenarios/suite.json), the meters they name and where those live:
//
//	experiment            meter (former name)                     file                     entry point
//	latency               connect-rtt (tcpping)                   connect.go               ConnectRTT
//	latency-rr            request-response                        rr.go                    RequestResponse
//	jitter                udp-jitter (udpjitter)                  udpjitter.go             UDPJitter
//	throughput            tcp-throughput (tcpstream)              tcpthroughput.go         TCPThroughput
//	bottleneck            udp-sweep (udpsweep)                    udpsweep.go              UDPSweep
//	resources             resources                               resources.go             Resources
//	calibration           reference-tools (reference)             reference.go             Reference
//	speedlimit-response   speedlimit-response (speedlimit)        speedlimit_response.go   SpeedLimitResponse
//	speedlimit-droppoint  speedlimit-droppoint (speedlimit-drop)  speedlimit_droppoint.go  SpeedLimitDropPoint
//	speedlimit-scaling    speedlimit-scaling                      speedlimit_scaling.go    SpeedLimitScaling
//	speedlimit-load       speedlimit-load                         speedlimit_load.go       SpeedLimitLoad
//
// Each entry point X takes an XConfig (ConnectRTT a ConnectConfig). Shared machinery:
// udpstream.go (the paced UDP sender and receiver of udp-jitter, whose receiver udp-sweep
// shares), mmsg.go (recvmmsg and sendmmsg on blocking sockets), rawio.go (tcp-throughput's
// reads and writes as raw syscalls, with a P to spare), sender.go (udp-sweep's
// sender: one thread per CPU, sendmmsg, UDP GSO), pathcost.go (udp-sweep's CPU time per packet
// and socket drops), sysmon.go
// (CPU and RAM sampling for resources), speedlimit.go (the speed-limit client loop),
// speedlimit_summary.go (SummarizeSpeedLimit), sockopt.go and units.go (Duration, Rate).
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
