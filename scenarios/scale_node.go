package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/subject"
)

// scaleNode is a node the scale meter builds: the job's data plane, a client and a server
// instance, and the instances the axis adds.
type scaleNode struct {
	*netsetup.Node
	plane          dataplanes.Spec
	dp             dataplanes.DataPlane // nil until deploy
	client, server *netsetup.Instance
	target         netip.Addr
	instances      int // instances the axis added
}

// newScaleNode builds a bare node through the runner; deploy puts the data plane on it.
func newScaleNode(ctx context.Context, env Env, suffix string) (*scaleNode, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n, err := env.NewNode(suffix)
	if err != nil {
		return nil, err
	}
	return &scaleNode{Node: n, plane: env.Plane}, nil
}

// deploy deploys the data plane and adds services s0 .. s<n-1> without instances, and returns
// how long that took; then it adds the client and the server with one instance each and the
// service extra (measure adds its instance).
func (sn *scaleNode) deploy(ctx context.Context, services int) (time.Duration, error) {
	took, err := sn.deployServices(ctx, services)
	if err != nil {
		return took, err
	}
	return took, sn.addEndpoints()
}

func (sn *scaleNode) deployServices(ctx context.Context, services int) (time.Duration, error) {
	t0 := time.Now()
	sn.dp = sn.plane.New()
	if err := sn.dp.Deploy(ctx, sn.Node); err != nil {
		return 0, fmt.Errorf("deploy %s: %w", sn.plane.Name, err)
	}
	for i := range services {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if _, err := sn.AddService(serviceName(i)); err != nil {
			return 0, err
		}
	}
	took := time.Since(t0)
	return took, sn.SetLabels(sn.plane.Name, "")
}

func (sn *scaleNode) addEndpoints() error {
	for _, name := range []string{"client", "server", "extra"} {
		if _, err := sn.AddService(name); err != nil {
			return err
		}
	}
	var err error
	if sn.client, err = sn.AddInstance("client"); err != nil {
		return err
	}
	if sn.server, err = sn.AddInstance("server"); err != nil {
		return err
	}
	svc, _ := sn.Registry.Service("server")
	sn.target, err = sn.dp.Target(svc)
	return err
}

// addInstance adds one instance of the service, unless ctx is done.
func (sn *scaleNode) addInstance(ctx context.Context, service string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := sn.AddInstance(service); err != nil {
		return err
	}
	sn.instances++
	return nil
}

func (sn *scaleNode) endpoints() bench.Endpoints {
	return bench.Endpoints{Client: sn.client.NS, Server: sn.server.NS, Target: sn.target}
}

// manager returns the data plane's eBPF manager, or nil.
func (sn *scaleNode) manager() *manager.Manager {
	if m, ok := sn.dp.(interface{ Manager() *manager.Manager }); ok {
		return m.Manager()
	}
	return nil
}

// hasManager says whether the job's data plane brings an eBPF manager, without deploying it.
func hasManager(env Env) bool {
	_, ok := env.Plane.New().(interface{ Manager() *manager.Manager })
	return ok
}

// programRuns reads the data plane's BPF program statistics, or nil.
func (sn *scaleNode) programRuns() []subject.ProgramRun {
	pr, ok := sn.dp.(subject.ProgramRunner)
	if !ok {
		return nil
	}
	runs, err := pr.ProgramRuns()
	if err != nil {
		return nil
	}
	return runs
}

// chainCost sums every program's mean run time per packet between two readings: what one
// packet costs passing the sender's ingress and the receiver's egress chain.
func chainCost(before, after []subject.ProgramRun) (float64, bool) {
	var ns float64
	ok := false
	for _, a := range after {
		i := slices.IndexFunc(before, func(b subject.ProgramRun) bool { return b.Name == a.Name })
		if i < 0 || a.Runs <= before[i].Runs {
			continue
		}
		ns += float64(a.Runtime-before[i].Runtime) / float64(a.Runs-before[i].Runs)
		ok = true
	}
	return ns, ok
}

// Close removes the data plane and the node with everything on it.
func (sn *scaleNode) Close() error {
	var err error
	if sn.dp != nil {
		err = sn.dp.Close()
	}
	return errors.Join(err, sn.Node.Close())
}
