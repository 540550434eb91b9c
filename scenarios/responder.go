package scenarios

import (
	"context"
	"errors"
	"time"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/stats"
	"github.com/edgebpf/edgebpf/workloads/speedlimit"
)

// SpeedLimitServerParams configure the speed-limit responder every speed-limit experiment
// deploys in each of its configurations (a subject of kind responder): the runner starts a
// fresh server with them before every repetition and stops it after.
type SpeedLimitServerParams struct {
	Port uint16 `json:"port,omitempty"`
	// Period is how often the mixed configuration recomputes the limit (default 1s).
	Period Duration `json:"period,omitempty"`
	// XDP is the attach mode: auto (default: native where the veth allows it), native or
	// generic.
	XDP string `json:"xdp,omitempty"`
	// BPFStats enables the kernel's BPF run-time statistics during each repetition and adds
	// the XDP program's mean run time per packet (bpf_ns_per_pkt:speedlimit_xdp) to the samples. It costs
	// two clock reads per packet.
	BPFStats bool `json:"bpf_stats,omitempty"`
}

func (p SpeedLimitServerParams) validate() error {
	_, err := speedlimit.ParseXDPMode(p.XDP)
	return err
}

// responderParams is implemented by the parameters of every meter that measures a responder:
// they embed SpeedLimitServerParams.
type responderParams interface{ server() SpeedLimitServerParams }

func (p SpeedLimitServerParams) server() SpeedLimitServerParams { return p }

// serverConfig is the server of configuration mode on n's server instance: its XDP program on
// the instance's veth, the pass program for native mode on the bridge side.
func (p SpeedLimitServerParams) serverConfig(mode speedlimit.Mode, n *Node) speedlimit.ServerConfig {
	xdp, _ := speedlimit.ParseXDPMode(p.XDP)
	return speedlimit.ServerConfig{Mode: mode, Port: p.Port, Period: time.Duration(p.Period), XDP: xdp,
		NS: n.Server.NS, Iface: n.Server.Peer, PeerNS: n.NS, PeerIface: n.Server.Veth}
}

// responder returns the responder parameters of a plan whose meter measures one.
func (p Plan) responder() (SpeedLimitServerParams, bool) {
	rp, ok := p.Params.(responderParams)
	if !ok {
		return SpeedLimitServerParams{}, false
	}
	return rp.server(), true
}

// bpfStats says whether the plan's parameters ask for BPF run-time statistics.
func (p Plan) bpfStats() bool {
	sp, ok := p.responder()
	return ok && sp.BPFStats
}

// withServer binds a speed-limit client meter whose parameters embed the responder's (sp):
// the client runs against the responder the runner deploys and starts per repetition.
func withServer[C validator](params any, sp SpeedLimitServerParams, cfg C, run func(context.Context, bench.Endpoints, C) ([]stats.Sample, error)) (any, runFunc, error) {
	if err := errors.Join(sp.validate(), cfg.Validate()); err != nil {
		return nil, nil, err
	}
	return bind(params, cfg, run)
}
