package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules"
	"github.com/edgebpf/edgebpf/internal/atomicfile"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/subjects"
)

func newNodeCmd() *cobra.Command {
	var (
		dp, names, readyFile, api string
		services, instances       int
		mtu                       int
		bpfStats                  bool
	)
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
		RunE: func(c *cobra.Command, _ []string) (err error) {
			var svcNames []string
			if names != "" {
				svcNames = strings.Split(names, ",")
			} else {
				if services < 0 || services > 250 {
					return usageError("--services %d is out of range: use 0 to 250", services)
				}
				for i := range services {
					svcNames = append(svcNames, fmt.Sprintf("svc%d", i))
				}
			}
			if instances < 1 {
				return usageError("--instances %d must be at least 1", instances)
			}
			spec, err := subjects.DataPlanes().Lookup(dp)
			if err != nil {
				return usageError("%w", err)
			}
			plane := spec.New()
			cfg := netsetup.NodeConfig{MTU: mtu}
			if err := cfg.Validate(); err != nil {
				return usageError("%w", err)
			}
			if bpfStats {
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
			node, err := netsetup.NewNode(sess, cfg)
			if err != nil {
				return err
			}
			if err := plane.Deploy(c.Context(), node); err != nil {
				return fmt.Errorf("deploy %s: %w", dp, err)
			}
			sess.OnClose(plane.Close)
			// The ebpf data plane brings its own manager (with the proxy module); the
			// others get one for the API.
			var mgr *manager.Manager
			if withMgr, ok := plane.(interface{ Manager() *manager.Manager }); ok {
				mgr = withMgr.Manager()
			} else if mgr, err = manager.New(node, modules.Catalogue()); err != nil {
				return err
			} else {
				sess.OnClose(mgr.Close)
			}
			addr := ""
			if api != "" {
				stop, bound, err := serveAPI(c.Context(), api, mgr.Handler())
				if err != nil {
					return err
				}
				sess.OnClose(stop)
				addr = bound
			}
			if err := node.SetLabels(dp, addr); err != nil {
				return err
			}
			for _, name := range svcNames {
				if _, err := node.AddService(name); err != nil {
					return err
				}
				for range instances {
					if _, err := node.AddInstance(name); err != nil {
						return err
					}
				}
			}
			st, _ := json.MarshalIndent(node.Status(), "", "  ")
			if readyFile != "" {
				if err := atomicfile.Write(readyFile, append(st, '\n'), 0o644); err != nil {
					return err
				}
				defer os.Remove(readyFile)
			}
			logger(c).Info("node ready; Ctrl-C to stop", "node", node.Name(), "namespace", node.NS.Name,
				"dataplane", dp, "services", len(svcNames), "instances", instances, "api", apiURL(addr))
			<-c.Context().Done()
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&dp, "dataplane", "direct", "data plane to deploy")
	f.IntVar(&services, "services", 2, "number of services")
	f.StringVar(&names, "names", "", "comma-separated service names instead of svc0, svc1, ...")
	f.IntVar(&instances, "instances", 1, "instances per service")
	f.IntVar(&mtu, "mtu", netsetup.DefaultMTU, "MTU of the bridge and every veth")
	f.BoolVar(&bpfStats, "bpf-stats", false, "have the kernel count the BPF programs' run time (shown by the API); slows every BPF program a little")
	f.StringVar(&readyFile, "ready-file", "", "write the node's description (JSON) here once it is up; removed on exit")
	f.StringVar(&api, "api", "127.0.0.1:6000", "listen address of the eBPF manager's REST API (\"\" for none); port 0 picks a free one")
	return c
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
