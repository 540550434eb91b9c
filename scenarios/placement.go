package scenarios

import (
	"context"
	"fmt"
	"maps"

	"github.com/edgebpf/edgebpf/internal/cpupin"
)

// placement returns the context an experiment's jobs g run in. An experiment whose Placement
// is PlacementApart, in a run that pins neither client nor server, gets a pinning of its own:
// the run's plan (a proxy's CPUs) plus the client and the server on two different CPUs, for
// our meters' threads and the reference tools they start alike, so that both sides of a
// round trip pay the same wake-ups however the scheduler would have placed them. Every other
// experiment runs with the run's pinning. Each job's meta records the pinning in effect (and
// a warning when a machine of one CPU cannot keep them apart). The returned function, called
// after the experiment, records in the jobs' warnings the threads its own pinning failed to
// pin (the run's count covers its own pinning only).
func (r *runner) placement(ctx context.Context, g []*job) (context.Context, func()) {
	plan, apart := r.o.CPUs, false
	var warning string
	if len(g) > 0 && g[0].plan.Placement == PlacementApart && plan[cpupin.Client].Empty() && plan[cpupin.Server].Empty() {
		client, server, why := apartCPUs(plan[cpupin.Proxy])
		if why == "" {
			plan = maps.Clone(plan)
			if plan == nil {
				plan = cpupin.Plan{}
			}
			plan[cpupin.Client], plan[cpupin.Server] = client, server
			apart = true
		} else {
			warning = fmt.Sprintf("%s: client and server run unpinned: %s", g[0].plan.Experiment, why)
			r.o.Log.Warn(warning)
		}
	}
	for _, j := range g {
		if p := plan.Settings(); len(p) > 0 {
			j.meta.Pinning = p
		}
		if apart {
			j.meta.Placement = PlacementApart
		}
		if warning != "" {
			j.meta.Warnings = append(j.meta.Warnings, warning)
		}
	}
	if !apart {
		return ctx, func() {}
	}
	ctx = cpupin.WithPlan(ctx, plan)
	r.o.Log.Info(fmt.Sprintf("%s: client on CPU %s, server on CPU %s (placement %s; --cpu-client and --cpu-server override)",
		g[0].plan.Experiment, plan[cpupin.Client], plan[cpupin.Server], PlacementApart))
	return ctx, func() {
		if n := cpupin.FailuresIn(ctx); n > 0 {
			for _, j := range g {
				j.meta.Warnings = append(j.meta.Warnings, fmt.Sprintf("%d threads could not be pinned and ran on any CPU", n))
			}
		}
	}
}

// apartCPUs picks the client's and the server's CPU among those this process may use, clear
// of the proxy's (avoid) where it can, or says why it cannot.
func apartCPUs(avoid cpupin.Set) (client, server cpupin.Set, why string) {
	allowed, err := cpupin.Allowed()
	if err != nil {
		return cpupin.Set{}, cpupin.Set{}, err.Error()
	}
	client, server, ok := cpupin.Apart(allowed, avoid)
	if !ok {
		return client, server, fmt.Sprintf("this process may use only CPU %s, so they cannot run apart", allowed)
	}
	return client, server, ""
}
