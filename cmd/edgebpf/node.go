package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
		dp, names, readyFile string
		apiOpts              = apiOptions{dir: netsetup.StateDir}
		services, instances  int
		mtu                  int
		bpfStats             bool
	)
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
module listings show each program's run_count and run_time_ns.`,
		Example: `  edgebpf node --services 2 --instances 1 --ready-file /tmp/node.json &
  api=$(jq -r .api /tmp/node.json)     # the socket
  curl -s --unix-socket "$api" -H 'Content-Type: application/json' -d '{"name":"counter"}' http://localhost/ebpf
  curl -s --unix-socket "$api" http://localhost/ebpf/1/counts
  curl -s --unix-socket "$api" -H 'Content-Type: application/json' -d '{"count":2}' http://localhost/services/svc1/instances
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
			apiOpts.name = node.NS.Name
			l, err := listenAPI(apiOpts, logger(c))
			if err != nil {
				return err
			}
			addr := ""
			if l != nil {
				sess.OnClose(l.cleanup) // after the server stops (OnClose runs last first)
				sess.OnClose(serveAPI(c.Context(), l.ln, mgr.HandlerFor(l.access)))
				addr = l.addr
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
				"dataplane", dp, "services", len(svcNames), "instances", instances, "api", apiURL(l))
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
	f.StringVar(&apiOpts.addr, "api", "unix", "where the eBPF manager's REST API listens: \"unix\" (a socket only root can open, /run/edgebpf/<node namespace>.sock), a socket path, HOST:PORT (TCP, with a token; port 0 picks a free one) or \"none\"")
	f.BoolVar(&apiOpts.public, "api-public", false, "allow --api HOST:PORT on an address other hosts can reach (still with the token)")
	f.StringVar(&apiOpts.tokenFile, "api-token-file", "", "where a TCP API's token is written, readable only by root (default /run/edgebpf/<node namespace>.token)")
	return c
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
