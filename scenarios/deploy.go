package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/reports"
	"github.com/edgebpf/edgebpf/subject"
	"github.com/edgebpf/edgebpf/subjects"
	"github.com/edgebpf/edgebpf/workloads/speedlimit"
)

// deployment is a job's subject deployed on its node: what the meter runs against, what the
// runner starts and stops around every repetition (a responder's fresh server), whose BPF
// programs' run statistics it reads, and what removes it all.
type deployment struct {
	env      Env
	key      string // the name meta.json records the subject's settings under
	settings func() map[string]string
	programs subject.ProgramRunner // nil: no BPF programs
	perRep   perRep                // nil: nothing runs per repetition
	close    func() error
	// alive, for a cluster, fails once one of its nodes is gone; nil on one node.
	alive func() error
}

// perRep is a subject that runs afresh in every repetition.
type perRep interface {
	Start(ctx context.Context) error
	Stop() error
}

func (d *deployment) start(ctx context.Context) error {
	if d.perRep == nil {
		return nil
	}
	return d.perRep.Start(ctx)
}

func (d *deployment) stop() error {
	if d.perRep == nil {
		return nil
	}
	return d.perRep.Stop()
}

// deploy builds a job's node — named after its subject, so the nodes of one experiment live
// side by side — with a client and a server service, deploys the node's data plane and, for a
// responder configuration, the responder on the server instance. For a meter that deploys the
// services itself (deployingMeters) the node starts without them and the environment carries
// them as Services.
func (r *runner) deploy(ctx context.Context, j *job) (d *deployment, err error) {
	if j.planes != nil {
		return r.deployCluster(ctx, j)
	}
	cfg := r.o.Node
	cfg.Name = cfg.Resolved().Name + "-" + j.name()
	own := deployingMeters[j.plan.Meter]
	n, err := buildNode(ctx, r.sess, cfg, j.plane, !own)
	if err != nil {
		return nil, err
	}
	d = &deployment{env: Env{Plane: j.plane, NewNode: func(suffix string) (*netsetup.Node, error) {
		c := cfg
		c.Name += "-" + suffix
		return netsetup.NewNode(r.sess, c)
	}}, close: n.Close}
	if own {
		d.env.Services = nodeServices{n}
	} else {
		d.env.Endpoints = n.endpoints()
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.close())
		}
	}()
	if j.subject.Kind != subject.Responder {
		d.key, d.settings = j.plane.Name, n.DataPlane.Settings
		d.programs, _ = n.DataPlane.(subject.ProgramRunner)
		r.recordSettings(d)
		return d, nil
	}
	sp, ok := j.plan.responder()
	if !ok {
		return nil, fmt.Errorf("experiment %s: meter %s deploys no responder", j.plan.Experiment, j.plan.Meter)
	}
	resp, err := speedlimit.Deploy(sp.serverConfig(speedlimit.Mode(j.subject.Name), n), n.Client.NS, n.Client.Peer)
	if err != nil {
		return nil, err
	}
	closeNode := d.close
	d.close = func() error { return errors.Join(resp.Close(), closeNode()) }
	d.key, d.settings, d.programs, d.perRep = j.subject.Key(), resp.Settings, resp, resp
	return d, nil
}

// Node is a node built for an experiment or a command: one client and one server instance
// and a deployed data plane.
type Node struct {
	*netsetup.Node
	DataPlane      dataplanes.DataPlane
	Client, Server *netsetup.Instance
	// Target is the address the client uses to reach the server service.
	Target netip.Addr
}

// Close removes the data plane and the node.
func (n *Node) Close() error { return errors.Join(n.DataPlane.Close(), n.Node.Close()) }

// BuildNode builds a node of sess with the data plane spec describes and the services client
// and server, one instance each; on error it removes what it made.
func BuildNode(ctx context.Context, sess *netsetup.Session, cfg netsetup.NodeConfig, spec dataplanes.Spec) (n *Node, err error) {
	return buildNode(ctx, sess, cfg, spec, true)
}

// buildNode builds a node with the data plane spec describes and, if services, the client
// and server services.
func buildNode(ctx context.Context, sess *netsetup.Session, cfg netsetup.NodeConfig, spec dataplanes.Spec, services bool) (n *Node, err error) {
	node, err := netsetup.NewNode(sess, cfg)
	if err != nil {
		return nil, err
	}
	n = &Node{Node: node, DataPlane: spec.New()}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Close())
		}
	}()
	if err := n.DataPlane.Deploy(ctx, node); err != nil {
		return nil, fmt.Errorf("deploy %s: %w", spec.Name, err)
	}
	if err := node.SetLabels(spec.Name, ""); err != nil {
		return nil, err
	}
	if !services {
		return n, nil
	}
	return n, n.addServices()
}

// nodeServices are the client and server services of a node as a bench.Lifecycle: Deploy
// adds them and one instance each through the node's registry, so every data plane sees the
// events as when an orchestrator deploys a service, and Undeploy removes them the same way.
type nodeServices struct{ n *Node }

// Deploy adds the services and returns the endpoints between their instances.
func (s nodeServices) Deploy(ctx context.Context) (bench.Endpoints, error) {
	if err := ctx.Err(); err != nil {
		return bench.Endpoints{}, err
	}
	if err := s.n.addServices(); err != nil {
		return bench.Endpoints{}, err
	}
	return s.n.endpoints(), nil
}

// Undeploy removes whichever of the services exist.
func (s nodeServices) Undeploy() error { return s.n.removeServices() }

// serviceNames are the two services of an experiment's node.
var serviceNames = [2]string{"client", "server"}

// addServices adds the client and server services with one instance each and finds the
// address the client uses.
func (n *Node) addServices() error {
	for i, ins := range []**netsetup.Instance{&n.Client, &n.Server} {
		if _, err := n.AddService(serviceNames[i]); err != nil {
			return err
		}
		var err error
		if *ins, err = n.AddInstance(serviceNames[i]); err != nil {
			return err
		}
	}
	svc, _ := n.Registry.Service("server")
	var err error
	n.Target, err = n.DataPlane.Target(svc)
	return err
}

// removeServices removes the client and server services that exist, instances first.
func (n *Node) removeServices() error {
	var errs []error
	for _, name := range serviceNames {
		if _, ok := n.Registry.Service(name); ok {
			errs = append(errs, n.RemoveService(name))
		}
	}
	n.Client, n.Server, n.Target = nil, nil, netip.Addr{}
	return errors.Join(errs...)
}

// endpoints are where a meter runs on the node: client and server instances and the target.
func (n *Node) endpoints() bench.Endpoints {
	return bench.Endpoints{Client: n.Client.NS, Server: n.Server.NS, Target: n.Target}
}

// responder finds a responder configuration by name.
func responder(name string) (subject.Spec, error) {
	if s, ok := subjects.Responders().Lookup(name); ok {
		return s, nil
	}
	return subject.Spec{}, fmt.Errorf("unknown speed-limit server mode %q: choose %s", name, strings.Join(subjects.Responders().Names(), ", "))
}

// recordSettings notes in meta.json how a deployed subject runs, under its key: a data plane
// by its name, a responder configuration as speedlimit/<configuration> (kept apart from the
// data planes, whose names the configurations share). A subject's XDP mode (setting
// xdp_mode) also goes into xdp_mode, which lists every mode a run attached with ("native",
// "generic", "generic,native"), or says "none"; a subject that attached in two modes lists
// both in its settings too.
func (r *runner) recordSettings(d *deployment) {
	settings := d.settings()
	if settings == nil {
		return
	}
	recordSettings(r.meta, d.key, settings)
}

func recordSettings(meta *reports.Meta, key string, settings map[string]string) {
	i := slices.IndexFunc(meta.DataPlanes, func(d reports.DataPlaneMeta) bool { return d.Name == key })
	switch {
	case i < 0:
		meta.DataPlanes = append(meta.DataPlanes, reports.DataPlaneMeta{Name: key, Settings: settings})
	case meta.DataPlanes[i].Settings["xdp_mode"] == "" || settings["xdp_mode"] == "":
		meta.DataPlanes[i].Settings = settings
	default:
		old := meta.DataPlanes[i].Settings["xdp_mode"]
		if !slices.Contains(strings.Split(old, ","), settings["xdp_mode"]) {
			meta.DataPlanes[i].Settings["xdp_mode"] = old + "," + settings["xdp_mode"]
		}
	}
	mode := settings["xdp_mode"]
	if mode == "" || mode == "none" {
		return
	}
	var modes []string
	if meta.XDPMode != "" && meta.XDPMode != "none" {
		modes = strings.Split(meta.XDPMode, ",")
	}
	if !slices.Contains(modes, mode) {
		modes = append(modes, mode)
		slices.Sort(modes)
		meta.XDPMode = strings.Join(modes, ",")
	}
}
