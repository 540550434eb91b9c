package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules"
	"github.com/edgebpf/edgebpf/internal/atomicfile"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/subjects"
)

// nodeOptions are the flags of `edgebpf node`.
type nodeOptions struct {
	dataplane, names, readyFile, api string
	services, instances, mtu         int
	bpfStats                         bool
}

// nodePlan is what nodeOptions.validate makes of the flags: the services to create, the
// data plane (not yet deployed) and the node's configuration.
type nodePlan struct {
	services []string
	plane    dataplanes.DataPlane
	cfg      netsetup.NodeConfig
}

func newNodeCmd() *cobra.Command {
	var o nodeOptions
	c := &cobra.Command{
		Use:   "node",
		Short: "Run one emulated worker node with the eBPF manager's API in the foreground until interrupted",
		Long: `Node builds a worker node with services svc0, svc1, ... (or the names given with --names), each
with the given number of instances, deploys the data plane, starts the eBPF manager with its REST
API (docs/api/openapi.json) on --api, writes the node's description to the ready file, and waits
for Ctrl-C or SIGTERM; then it removes everything it created, modules included. Use
'edgebpf status' to see its addresses and 'edgebpf exec' to run commands in its instances.
With --bpf-stats the kernel counts the modules' run time while the node runs, and the API's
module listings show each program's run_count and run_time_ns.`,
		Example: `  edgebpf node --services 2 --instances 1 --ready-file /tmp/node.json &
  curl -s -XPOST localhost:6000/ebpf -d '{"name":"counter"}'
  curl -s localhost:6000/ebpf/1/counts
  edgebpf exec svc1 -- iperf3 -s -D
  edgebpf exec svc0 -- iperf3 -c "$(jq -r '.services[1].instances[0].ns_ip' /tmp/node.json)"`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runNode(c.Context(), c.OutOrStdout(), c.ErrOrStderr(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.dataplane, "dataplane", "direct", "data plane to deploy")
	f.IntVar(&o.services, "services", 2, "number of services")
	f.StringVar(&o.names, "names", "", "comma-separated service names instead of svc0, svc1, ...")
	f.IntVar(&o.instances, "instances", 1, "instances per service")
	f.IntVar(&o.mtu, "mtu", netsetup.DefaultMTU, "MTU of the bridge and every veth")
	f.BoolVar(&o.bpfStats, "bpf-stats", false, "have the kernel count the BPF programs' run time (shown by the API); slows every BPF program a little")
	f.StringVar(&o.readyFile, "ready-file", "", "write the node's description (JSON) here once it is up; removed on exit")
	f.StringVar(&o.api, "api", "127.0.0.1:6000", "listen address of the eBPF manager's REST API (\"\" for none); port 0 picks a free one")
	return c
}

// validate checks the flags without touching the system and says what they ask for.
func (o nodeOptions) validate() (nodePlan, error) {
	var p nodePlan
	if o.names != "" {
		p.services = strings.Split(o.names, ",")
	} else {
		if o.services < 0 || o.services > 250 {
			return p, usageError("--services %d is out of range: use 0 to 250", o.services)
		}
		for i := range o.services {
			p.services = append(p.services, fmt.Sprintf("svc%d", i))
		}
	}
	if o.instances < 1 {
		return p, usageError("--instances %d must be at least 1", o.instances)
	}
	spec, err := subjects.DataPlanes().Lookup(o.dataplane)
	if err != nil {
		return p, usageError("%w", err)
	}
	p.plane = spec.New()
	p.cfg = netsetup.NodeConfig{MTU: o.mtu}
	if err := p.cfg.Validate(); err != nil {
		return p, usageError("%w", err)
	}
	if err := checkListenAddr(o.api); err != nil {
		return p, usageError("--api %s: %w: choose another address with --api", o.api, err)
	}
	return p, nil
}

// checkListenAddr checks that addr, unless empty, is HOST:PORT with a port net.Listen takes.
func checkListenAddr(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	_, err = net.LookupPort("tcp", port)
	return err
}

// runNode runs `edgebpf node`: it builds the node, waits for ctx to end and removes it.
func runNode(ctx context.Context, _, errOut io.Writer, o nodeOptions) (err error) {
	p, err := o.validate()
	if err != nil {
		return err
	}
	if o.bpfStats {
		st, err := manager.CountRunTime()
		if err != nil {
			return fmt.Errorf("--bpf-stats: %w", err)
		}
		defer st.Close()
	}
	sess, err := netsetup.NewSession("edgebpf node")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sess.Close()) }()
	node, addr, err := startNode(ctx, sess, o, p)
	if err != nil {
		return err
	}
	st, _ := json.MarshalIndent(node.Status(), "", "  ")
	if o.readyFile != "" {
		if err := atomicfile.Write(o.readyFile, append(st, '\n'), 0o644); err != nil {
			return err
		}
		defer os.Remove(o.readyFile)
	}
	logger(errOut).Info("node ready; Ctrl-C to stop", "node", node.Name(), "namespace", node.NS.Name,
		"dataplane", o.dataplane, "services", len(p.services), "instances", o.instances, "api", apiURL(addr))
	<-ctx.Done()
	return nil
}

// startNode builds the node in sess, deploys the data plane, serves the eBPF manager's API
// and adds the services with their instances. It returns the node and the API's address.
func startNode(ctx context.Context, sess *netsetup.Session, o nodeOptions, p nodePlan) (*netsetup.Node, string, error) {
	node, err := netsetup.NewNode(sess, p.cfg)
	if err != nil {
		return nil, "", err
	}
	if err := p.plane.Deploy(ctx, node); err != nil {
		return nil, "", fmt.Errorf("deploy %s: %w", o.dataplane, err)
	}
	sess.OnClose(p.plane.Close)
	// The ebpf data plane brings its own manager (with the proxy module); the
	// others get one for the API.
	var mgr *manager.Manager
	if withMgr, ok := p.plane.(interface{ Manager() *manager.Manager }); ok {
		mgr = withMgr.Manager()
	} else if mgr, err = manager.New(node, modules.Catalogue()); err != nil {
		return nil, "", err
	} else {
		sess.OnClose(mgr.Close)
	}
	addr := ""
	if o.api != "" {
		stop, bound, err := serveAPI(ctx, o.api, mgr.Handler())
		if err != nil {
			return nil, "", err
		}
		sess.OnClose(stop)
		addr = bound
	}
	if err := node.SetLabels(o.dataplane, addr); err != nil {
		return nil, "", err
	}
	for _, name := range p.services {
		if _, err := node.AddService(name); err != nil {
			return nil, "", err
		}
		for range o.instances {
			if _, err := node.AddInstance(name); err != nil {
				return nil, "", err
			}
		}
	}
	return node, addr, nil
}

// serveAPI listens on addr and serves h until stop is called. It returns the bound address.
func serveAPI(ctx context.Context, addr string, h http.Handler) (stop func() error, bound string, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", usageError("--api %s: %w: choose another address with --api", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	return func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	}, ln.Addr().String(), nil
}

func apiURL(addr string) string {
	if addr == "" {
		return "off"
	}
	return "http://" + addr
}
