package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/subject"
)

// ClusterNode is a cluster built for a cross-node job: a data plane deployed on every worker
// (worker i runs Planes[i]) and the client and server services placed on workers.
type ClusterNode struct {
	*netsetup.Cluster
	Planes    []dataplanes.DataPlane
	specs     []dataplanes.Spec
	placement Placement
	// Client and Server are the services' instances once added; Target is the address the
	// client uses: the client's worker's data plane's Target of the server service.
	Client, Server *netsetup.Instance
	Target         netip.Addr
}

// BuildCluster builds a cluster of sess with worker i running specs[i], without services;
// on error it removes what it made.
func BuildCluster(ctx context.Context, sess *netsetup.Session, cfg netsetup.ClusterConfig, specs []dataplanes.Spec, p Placement) (c *ClusterNode, err error) {
	if len(specs) != cfg.Resolved().Workers {
		return nil, fmt.Errorf("cluster %s: %d data planes for %d workers", cfg.Name, len(specs), cfg.Resolved().Workers)
	}
	cl, err := netsetup.NewCluster(sess, cfg)
	if err != nil {
		return nil, err
	}
	c = &ClusterNode{Cluster: cl, specs: specs, placement: p}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	for i, w := range cl.Workers {
		dp := specs[i].New()
		c.Planes = append(c.Planes, dp)
		if err := dp.Deploy(ctx, w); err != nil {
			return nil, fmt.Errorf("deploy %s on worker %s: %w", specs[i].Name, w.Name(), err)
		}
		if err := w.SetLabels(specs[i].Name, ""); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Close removes the data planes, then the cluster.
func (c *ClusterNode) Close() error {
	var errs []error
	for i := len(c.Planes) - 1; i >= 0; i-- {
		errs = append(errs, c.Planes[i].Close())
	}
	return errors.Join(append(errs, c.Cluster.Close())...)
}

// addServices adds the client and server services and one instance of each on its worker,
// and finds the address the client uses.
func (c *ClusterNode) addServices() error {
	for i, ins := range []**netsetup.Instance{&c.Client, &c.Server} {
		name := serviceNames[i]
		if _, err := c.AddService(name); err != nil {
			return err
		}
		var err error
		if *ins, err = c.AddInstance(name, c.placement[name]); err != nil {
			return err
		}
	}
	w := c.placement["client"]
	svc, _ := c.Workers[w].Registry.Service("server")
	var err error
	if c.Target, err = c.Planes[w].Target(svc); err != nil {
		return fmt.Errorf("target of server through %s on worker %s: %w", c.specs[w].Name, c.Workers[w].Name(), err)
	}
	return nil
}

// removeServices removes the client and server services that exist.
func (c *ClusterNode) removeServices() error {
	var errs []error
	for _, name := range serviceNames {
		if _, ok := c.Workers[0].Registry.Service(name); ok {
			errs = append(errs, c.RemoveService(name))
		}
	}
	c.Client, c.Server, c.Target = nil, nil, netip.Addr{}
	return errors.Join(errs...)
}

func (c *ClusterNode) endpoints() bench.Endpoints {
	return bench.Endpoints{Client: c.Client.NS, Server: c.Server.NS, Target: c.Target}
}

// Alive returns an error naming the first worker (or the underlay) whose namespace is gone:
// deleted, or replaced by another under its name.
func (c *ClusterNode) Alive() error {
	nss := []*netsetup.Namespace{c.Underlay}
	for _, w := range c.Workers {
		nss = append(nss, w.NS)
	}
	for _, ns := range nss {
		if err := present(ns); err != nil {
			return fmt.Errorf("cluster %s lost a node: %w", c.Config().Name, err)
		}
	}
	return nil
}

// present checks that ns's name still names ns.
func present(ns *netsetup.Namespace) error {
	var byName, held unix.Stat_t
	if err := unix.Stat(ns.Path(), &byName); err != nil {
		return fmt.Errorf("namespace %s is gone: %w", ns.Name, err)
	}
	if err := unix.Fstat(int(ns.Handle()), &held); err != nil {
		return fmt.Errorf("namespace %s: %w", ns.Name, err)
	}
	if byName.Dev != held.Dev || byName.Ino != held.Ino {
		return fmt.Errorf("namespace %s was deleted and another took its name", ns.Name)
	}
	return nil
}

// clusterServices are a cluster's client and server services as a bench.Lifecycle (the
// resources meter deploys them at its phase borders).
type clusterServices struct{ c *ClusterNode }

// Deploy adds the services on their workers and returns the endpoints between them.
func (s clusterServices) Deploy(ctx context.Context) (bench.Endpoints, error) {
	if err := ctx.Err(); err != nil {
		return bench.Endpoints{}, err
	}
	if err := s.c.addServices(); err != nil {
		return bench.Endpoints{}, err
	}
	return s.c.endpoints(), nil
}

// Undeploy removes whichever of the services exist.
func (s clusterServices) Undeploy() error { return s.c.removeServices() }

// deployCluster builds a cross-node job's cluster — named after its subject, so the clusters
// of one experiment live side by side — with the job's data plane on every worker and,
// unless the meter deploys them itself, the client and server services on their workers.
func (r *runner) deployCluster(ctx context.Context, j *job) (d *deployment, err error) {
	t := r.o.Topology
	c, err := BuildCluster(ctx, r.sess, t.clusterConfig(r.o.Node, j.name()), j.planes, t.Placement)
	if err != nil {
		return nil, err
	}
	d = &deployment{env: Env{Plane: j.plane}, close: c.Close, alive: c.Alive}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.close())
		}
	}()
	if deployingMeters[j.plan.Meter] {
		d.env.Services = clusterServices{c}
	} else {
		if err := c.addServices(); err != nil {
			return nil, err
		}
		d.env.Endpoints = c.endpoints()
	}
	for i, dp := range c.Planes { // each data plane's own settings, under its name
		if st := dp.Settings(); st != nil && !slices.ContainsFunc(j.planes[:i], func(p dataplanes.Spec) bool { return p.Name == j.planes[i].Name }) {
			recordSettings(r.meta, j.planes[i].Name, st)
		}
	}
	d.key, d.settings = j.subject.Name, func() map[string]string { return c.Planes[0].Settings() }
	if dataplanes.IsMixed(j.subject.Name) {
		d.settings = func() map[string]string { return workerPlanes(j.planes) }
	}
	d.programs = programsOf(c.Planes)
	r.recordSettings(d)
	return d, nil
}

// programsOf joins the BPF programs of every worker's data plane: runs and run time of the
// programs of one name are summed across workers. nil when no data plane runs any.
func programsOf(dps []dataplanes.DataPlane) subject.ProgramRunner {
	var prs []subject.ProgramRunner
	for _, dp := range dps {
		if pr, ok := dp.(subject.ProgramRunner); ok {
			prs = append(prs, pr)
		}
	}
	if len(prs) == 0 {
		return nil
	}
	return joinedPrograms(prs)
}

type joinedPrograms []subject.ProgramRunner

// ProgramRuns sums each program's runs over the workers.
func (j joinedPrograms) ProgramRuns() ([]subject.ProgramRun, error) {
	var out []subject.ProgramRun
	for _, pr := range j {
		runs, err := pr.ProgramRuns()
		if err != nil {
			return nil, err
		}
		for _, run := range runs {
			if i := slices.IndexFunc(out, func(o subject.ProgramRun) bool { return o.Name == run.Name }); i >= 0 {
				out[i].Runs += run.Runs
				out[i].Runtime += run.Runtime
			} else {
				out = append(out, run)
			}
		}
	}
	return out, nil
}

// watchInterval is how often a cross-node repetition checks that its cluster's nodes live.
const watchInterval = 200 * time.Millisecond

// watch runs fn with a context that is cancelled when alive fails, and returns alive's error
// instead of fn's in that case: a worker that dies mid-repetition fails the repetition at
// once, with the worker named, whatever the meter then reports.
func watch(ctx context.Context, alive func() error, fn func(context.Context) error) error {
	if alive == nil {
		return fn(ctx)
	}
	if err := alive(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	dead := errors.New("a node died")
	done, exited := make(chan struct{}), make(chan struct{})
	var death error
	go func() {
		defer close(exited)
		t := time.NewTicker(watchInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := alive(); err != nil {
					death = err
					cancel(dead)
					return
				}
			}
		}
	}()
	err := fn(ctx)
	close(done)
	<-exited // the watcher reads the namespaces' handles: it must be gone before they close
	if errors.Is(context.Cause(ctx), dead) {
		return death
	}
	if aerr := alive(); aerr != nil {
		return aerr
	}
	return err
}
