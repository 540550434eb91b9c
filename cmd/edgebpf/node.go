package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
	dataplane, names, readyFile string
	chain                       string
	api                         apiOptions
	services, instances, mtu    int
	bpfStats                    bool
	join                        joinOptions
}

// nodePlan is what nodeOptions.validate makes of the flags: the services to create, the
// data plane (not yet deployed) and the node's configuration.
type nodePlan struct {
	services []string
	plane    dataplanes.DataPlane
	chain    manager.Chain
	cfg      netsetup.NodeConfig
	join     *netsetup.JoinConfig // with --underlay: this host's worker of a cluster across hosts
}

func newNodeCmd() *cobra.Command {
	o := nodeOptions{api: apiOptions{dir: netsetup.StateDir}}
	c := &cobra.Command{
		Use:   "node",
		Short: "Run one emulated worker node with the eBPF manager's API in the foreground until interrupted",
		Long: `Node builds a worker node with services svc0, svc1, ... (or the names given with --names), each
with the given number of instances, deploys the data plane, starts the eBPF manager with its REST
API (docs/api/openapi.json) on --api, writes the node's description to the ready file, and waits
for Ctrl-C or SIGTERM; then it removes everything it created, modules included. Use
'edgebpf status' to see its addresses and 'edgebpf exec' to run commands in its instances.
The API listens on a Unix socket only root can open, /run/edgebpf/<node namespace>.sock (the
node's "api" in 'edgebpf status --json'); with --api HOST:PORT on TCP, where every request needs
the token written to /run/edgebpf/<node namespace>.token as "Authorization: Bearer <token>".
Writes need "Content-Type: application/json". Its /services routes add and remove services and
instances while the node runs.
With --bpf-stats the kernel counts the modules' run time while the node runs, and the API's
module listings show each program's run_count and run_time_ns.` + joinHelp,
		Example: `  edgebpf node --services 2 --instances 1 --ready-file /tmp/node.json &
  api=$(jq -r .api /tmp/node.json)     # the socket
  curl -s --unix-socket "$api" -H 'Content-Type: application/json' -d '{"name":"counter"}' http://localhost/ebpf
  curl -s --unix-socket "$api" http://localhost/ebpf/1/counts
  curl -s --unix-socket "$api" -H 'Content-Type: application/json' -d '{"count":2}' http://localhost/services/svc1/instances
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
	f.StringVar(&o.chain, "chain", string(manager.DefaultChain), "how the eBPF manager chains modules on a veth: dispatcher (one dispatcher program per veth and hook, attached once; modules in its program arrays) or tcx (a TCX link per module and veth, an RCU grace period each)")
	f.BoolVar(&o.bpfStats, "bpf-stats", false, "have the kernel count the BPF programs' run time (shown by the API); slows every BPF program a little")
	f.StringVar(&o.readyFile, "ready-file", "", "write the node's description (JSON) here once it is up; removed on exit")
	f.StringVar(&o.api.addr, "api", "unix", "where the eBPF manager's REST API listens: \"unix\" (a socket only root can open, /run/edgebpf/<node namespace>.sock), a socket path, HOST:PORT (TCP, with a token; port 0 picks a free one) or \"none\"")
	f.BoolVar(&o.api.public, "api-public", false, "allow --api HOST:PORT on an address other hosts can reach (still with the token)")
	f.StringVar(&o.api.tokenFile, "api-token-file", "", "where a TCP API's token is written, readable only by root (default /run/edgebpf/<node namespace>.token)")
	o.join.register(f)
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
	if p.chain, err = manager.ParseChain(o.chain); err != nil {
		return p, usageError("--chain: %w", err)
	}
	p.plane = spec.New()
	if cs, ok := p.plane.(interface{ SetChain(manager.Chain) }); ok {
		cs.SetChain(p.chain)
	}
	p.cfg = netsetup.NodeConfig{MTU: o.mtu}
	if err := p.cfg.Validate(); err != nil {
		return p, usageError("%w", err)
	}
	if err := o.api.validate(); err != nil {
		return p, err
	}
	p.join, err = o.join.config(p.services, o.instances, o.mtu)
	return p, err
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
	if err := p.checkHost(); err != nil {
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
	node, addr, err := startNode(ctx, sess, o, p, logger(errOut))
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
		"dataplane", o.dataplane, "services", len(p.services), "instances", o.instances, "api", addr)
	<-ctx.Done()
	return nil
}

// startNode builds the node in sess, deploys the data plane, serves the eBPF manager's API
// and adds the services with their instances. It returns the node and where the API listens,
// for the log.
func startNode(ctx context.Context, sess *netsetup.Session, o nodeOptions, p nodePlan, log *slog.Logger) (*netsetup.Node, string, error) {
	node, populate, err := newWorker(ctx, sess, o, p, log)
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
	} else if mgr, err = manager.New(node, modules.Catalogue(), manager.WithChain(p.chain)); err != nil {
		return nil, "", err
	} else {
		sess.OnClose(mgr.Close)
	}
	apiOpts := o.api
	apiOpts.name = node.NS.Name
	l, err := listenAPI(apiOpts, log)
	if err != nil {
		return nil, "", err
	}
	addr := ""
	if l != nil {
		sess.OnClose(l.cleanup) // after the server stops (OnClose runs last first)
		sess.OnClose(serveAPI(ctx, l.ln, mgr.HandlerFor(l.access)))
		addr = l.addr
	}
	if err := node.SetLabels(o.dataplane, addr); err != nil {
		return nil, "", err
	}
	if err := populate(); err != nil {
		return nil, "", err
	}
	return node, apiURL(l), nil
}

// serveAPI serves h on ln until the returned stop is called.
func serveAPI(ctx context.Context, ln net.Listener, h http.Handler) (stop func() error) {
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
	}
}

func apiURL(l *apiListener) string {
	switch {
	case l == nil:
		return "off"
	case l.tokenFile != "":
		return "http://" + l.addr + " (token in " + l.tokenFile + ")"
	}
	return "unix:" + l.addr
}

// apiOptions say where a node's API listens.
type apiOptions struct {
	addr      string // "unix", a socket path (absolute or unix:PATH), HOST:PORT, or "none"/""
	public    bool   // allow a TCP address beyond loopback
	tokenFile string // where a TCP API's token goes; default <dir>/<name>.token
	dir       string // where the default socket and token file go
	name      string // the node's namespace: names the default socket and token file
}

// apiListener is where a node's API listens and who may use it.
type apiListener struct {
	ln        net.Listener
	addr      string // for edgebpf status: the socket path or the bound TCP address
	access    manager.Access
	tokenFile string // set for TCP
	cleanup   func() error
}

// validate checks the API's flags before anything is created: a TCP address must parse,
// and one beyond loopback needs --api-public.
func (o apiOptions) validate() error {
	if o.addr == "" || o.addr == "none" || o.addr == "unix" || strings.HasPrefix(o.addr, "unix:") || strings.HasPrefix(o.addr, "/") {
		if o.public || o.tokenFile != "" {
			return usageError("--api-public and --api-token-file apply only to --api HOST:PORT")
		}
		return nil
	}
	if err := checkListenAddr(o.addr); err != nil {
		return usageError("--api %s: %w: choose another address with --api, or use the default Unix socket", o.addr, err)
	}
	host, _, _ := net.SplitHostPort(o.addr)
	if ip := net.ParseIP(host); !o.public && (ip == nil || !ip.IsLoopback()) && host != "localhost" {
		return usageError("--api %s listens beyond this machine: add --api-public to allow it (with the token), or use 127.0.0.1:PORT or the default Unix socket", o.addr)
	}
	return nil
}

// listenAPI opens the API's listener: by default a Unix socket owned by the process (root)
// with mode 0600, created in a private directory and renamed into place so no one can connect
// before the mode is set; or TCP with a fresh token written to a file only root can read, on
// loopback unless o.public. It returns nil for "none". cleanup removes the socket or token
// file; stop the server first.
func listenAPI(o apiOptions, log *slog.Logger) (*apiListener, error) {
	switch {
	case o.addr == "" || o.addr == "none":
		return nil, nil
	case o.addr == "unix":
		return listenUnix(filepath.Join(o.dir, o.name+".sock"))
	case strings.HasPrefix(o.addr, "unix:"):
		return listenUnix(strings.TrimPrefix(o.addr, "unix:"))
	case strings.HasPrefix(o.addr, "/"):
		return listenUnix(o.addr)
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, usageError("--api %s: %w: choose another address with --api, or use the default Unix socket", o.addr, err)
	}
	bound := ln.Addr().String()
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		if !o.public {
			ln.Close()
			return nil, usageError("--api %s listens beyond this machine: add --api-public to allow it (with the token), or use 127.0.0.1:PORT or the default Unix socket", o.addr)
		}
		log.Warn("the eBPF manager's API listens beyond this machine: whoever reaches it with the token can program the node", "api", bound)
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret) // never fails (crypto/rand)
	token := hex.EncodeToString(secret)
	tokenFile := o.tokenFile
	if tokenFile == "" {
		tokenFile = filepath.Join(o.dir, o.name+".token")
	}
	if err := atomicfile.Write(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("write the API token: %w", err)
	}
	return &apiListener{ln: ln, addr: bound, tokenFile: tokenFile,
		access:  manager.Access{Token: token, Hosts: []string{bound}},
		cleanup: func() error { return ignoreMissing(os.Remove(tokenFile)) }}, nil
}

// listenUnix listens on a socket at path with mode 0600, refusing a path another process
// serves and replacing a stale socket.
func listenUnix(path string) (*apiListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, usageError("--api %s exists and is not a socket: choose another path", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, usageError("--api %s: another process serves this socket: choose another path", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale API socket: %w", err)
		}
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".api-") // mode 0700
	if err != nil {
		return nil, fmt.Errorf("API socket %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	ln, err := net.Listen("unix", filepath.Join(tmp, "s"))
	if err != nil {
		return nil, fmt.Errorf("API socket %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // the name changes: cleanup removes it
	if err := errors.Join(os.Chmod(filepath.Join(tmp, "s"), 0o600), os.Rename(filepath.Join(tmp, "s"), path)); err != nil {
		ln.Close()
		return nil, fmt.Errorf("API socket %s: %w", path, err)
	}
	return &apiListener{ln: ln, addr: path, cleanup: func() error { return ignoreMissing(os.Remove(path)) }}, nil
}

func ignoreMissing(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
