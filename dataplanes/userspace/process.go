package userspace

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ProcessName is the proxy process's name (/proc/PID/comm): what ps and top show and what
// the resources experiment samples as cpu_process:edgebpf-proxy and ram:edgebpf-proxy.
const ProcessName = "edgebpf-proxy"

// parentEnv marks a process Deploy started as the proxy process; its value is the PID of
// the edgebpf process that started it.
const parentEnv = "EDGEBPF_PROXY_PARENT"

// The descriptors Deploy hands the proxy process (exec.Cmd.ExtraFiles start at 3).
const (
	tunFD     = 3
	controlFD = 4
)

// init turns this binary into the proxy process when Deploy started it as one. It is the
// same binary re-executed (/proc/self/exe), recognised here rather than by a subcommand so
// that every binary that links the data plane can run it: edgebpf and the test binaries of
// every package whose tests deploy the data plane alike. Nothing else in the binary runs.
func init() {
	if v, ok := os.LookupEnv(parentEnv); ok {
		os.Exit(processMain(v))
	}
}

// processMain is the proxy process: it checks that its parent still runs, names itself,
// then serves the control socket until it closes, with the packet loop started by init.
func processMain(parent string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("process", ProcessName)
	// The parent set PR_SET_PDEATHSIG; a parent that died before the child's fork set it
	// leaves the child to the reaper (or init) instead, which this check catches.
	if pid, err := strconv.Atoi(parent); err != nil || os.Getppid() != pid {
		log.Error("the edgebpf process that started this proxy is gone; exiting", "parent", parent)
		return 1
	}
	// Ctrl-C in a terminal reaches the whole process group: the edgebpf process decides when
	// the proxy stops (it still has to carry the packets of what is being shut down).
	signal.Ignore(os.Interrupt)
	// /proc/self/comm names the thread group's leader, which is what ps and /proc/PID/stat show.
	if err := os.WriteFile("/proc/self/comm", []byte(ProcessName), 0); err != nil {
		log.Warn("cannot name the process", "err", err)
	}
	f := os.NewFile(controlFD, "control")
	conn, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		log.Error("the control socket is not descriptor 4; this process is started by the userspace data plane only", "err", err)
		return 2
	}
	defer conn.Close()
	if err := serveControl(conn, startLoop); err != nil {
		log.Error("control socket failed; the proxy stops", "err", err)
		return 1
	}
	return 0
}

// startLoop builds the proxy from cfg on the TUN descriptor it was handed and starts the
// packet loop and the reaper; on a worker of a cluster (tun not nil) it also binds the
// tunnel's socket and starts its receiving loop. They end with the process.
func startLoop(cfg Config, tun *tunnelConfig) (*core, *mirror, error) {
	if err := cfg.validate(); err != nil {
		return nil, nil, err
	}
	if _, err := unix.FcntlInt(tunFD, unix.F_GETFD, 0); err != nil {
		return nil, nil, fmt.Errorf("the tun device is not descriptor %d: %w", tunFD, err)
	}
	m := newMirror()
	c := newCore(cfg, m)
	var t *tunnel
	if tun != nil {
		if err := tun.validate(); err != nil {
			return nil, nil, err
		}
		var err error
		if t, err = openTunnel(tun); err != nil {
			return nil, nil, err
		}
		c.setTunnel(tun.Peers, tun.MTU)
		go func() {
			err := receiveLoop(t, tunFD, c)
			slog.Error("userspace proxy: the tunnel failed; the proxy stops", "err", err)
			os.Exit(1)
		}()
	}
	go func() {
		if err := loop(newReader(tunFD, new(atomic.Bool)), c, t); err != nil {
			slog.Error("userspace proxy: the tun device failed; the proxy stops", "err", err)
			os.Exit(1)
		}
	}()
	go func() {
		for range time.Tick(cfg.ReapInterval) {
			c.reap()
		}
	}()
	return c, m, nil
}

// loop is the proxy: it reads a packet from the TUN device, translates it in place and
// writes it back, or sends it through the tunnel t to the worker of the chosen instance,
// with two fixed buffers, until reading fails or r is closing. One reader, as in Oakestra:
// a second one would need a multi-queue TUN device, which Oakestra does not use.
func loop(r *reader, c *core, t *tunnel) error {
	buf := make([]byte, 1<<16)
	out := make([]byte, replySize)
	for {
		n, err := r.read(buf)
		if err == errClosing {
			return nil
		}
		if err != nil {
			return err
		}
		p, via := c.handle(buf[:n], out)
		switch {
		case p == nil:
		case via == [4]byte{}:
			if _, err := unix.Write(r.fd, p); err != nil {
				c.st.writeErrors.Add(1)
			}
		case t == nil: // a remote instance on a node without a tunnel
			c.st.tunnel.sendErrors.Add(1)
		default:
			t.send(&c.st.tunnel, via, p)
		}
	}
}
