package scenarios

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/internal/cpupin"
	"github.com/edgebpf/edgebpf/stats"
	"github.com/edgebpf/edgebpf/workloads/speedlimit"
)

// SpeedLimitServerParams configure the speed-limit server every speed-limit experiment
// deploys, per repetition, in the experiment's configuration.
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

// bpfNsPerPkt is the mean run time of a BPF program per packet (as reports registers it).
var bpfNsPerPkt = stats.Metric{Name: "bpf_ns_per_pkt", Unit: "ns", Better: stats.Lower}

// programCostMetric is bpfNsPerPkt of one program: bpf_ns_per_pkt:<program>.
func programCostMetric(program string) stats.Metric {
	m := bpfNsPerPkt
	m.Name += ":" + program
	return m
}

func (p SpeedLimitServerParams) validate() error {
	_, err := speedlimit.ParseXDPMode(p.XDP)
	return err
}

// withServer wraps a speed-limit client meter: each repetition turns the client's TX
// checksum offload off (so every request carries a checksum the XDP program verifies),
// starts the server of env.Configuration in the server instance — the XDP program on its
// veth, the pass program on the bridge side for native mode —, runs the client, and stops the
// server, which detaches the program.
func withServer[C validator](params any, sp SpeedLimitServerParams, cfg C, run func(context.Context, bench.Endpoints, C) ([]stats.Sample, error)) (any, runFunc, error) {
	if err := errors.Join(sp.validate(), cfg.Validate()); err != nil {
		return nil, nil, err
	}
	return params, func(ctx context.Context, env Env) (samples []stats.Sample, err error) {
		mode, err := speedlimit.ParseMode(env.Configuration)
		if err != nil {
			return nil, err
		}
		if env.Node == nil || env.Client == nil || env.Server == nil {
			return nil, errors.New("the speed-limit experiments need a node with a client and a server instance")
		}
		if _, err := speedlimit.SetTxChecksum(env.Client.NS, env.Client.Peer, false); err != nil {
			return nil, err
		}
		xdp, _ := speedlimit.ParseXDPMode(sp.XDP)
		srv, err := speedlimit.StartServer(speedlimit.ServerConfig{
			Mode: mode, Port: sp.Port, Period: time.Duration(sp.Period), XDP: xdp,
			NS: env.Server.NS, Iface: env.Server.Peer, PeerNS: env.Node.NS, PeerIface: env.Server.Veth,
			CPUs: cpupin.FromContext(ctx)[cpupin.Server],
		})
		if err != nil {
			return nil, err
		}
		defer func() {
			err = errors.Join(err, srv.Err(), srv.Close())
		}()
		if env.Record != nil {
			env.Record(srv.Settings())
		}
		if sp.BPFStats && mode != speedlimit.Userspace {
			st, err := manager.CountRunTime()
			if err != nil {
				return nil, fmt.Errorf("bpf statistics: %w", err)
			}
			defer st.Close()
		}
		t0 := time.Now()
		samples, err = run(ctx, env.Endpoints, cfg)
		if sp.BPFStats {
			if runs, total, ok, serr := srv.RunStats(); serr != nil {
				err = errors.Join(err, serr)
			} else if ok && runs > 0 {
				samples = append(samples, stats.Sample{T: time.Since(t0).Seconds(), Metric: programCostMetric("speedlimit_xdp"),
					Value: float64(total.Nanoseconds()) / float64(runs)})
			}
		}
		return samples, err
	}, nil
}
