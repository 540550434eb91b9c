package speedlimit

import (
	"context"
	"errors"
	"image/color"
	"sync"

	"github.com/edgebpf/edgebpf/internal/cpupin"
	"github.com/edgebpf/edgebpf/internal/features"
	"github.com/edgebpf/edgebpf/subject"
)

// Workload is the name the configurations' results are recorded under in meta.json
// ("speedlimit/<configuration>").
const Workload = "speedlimit"

// Specs are the three configurations as the subjects of the Weinhold experiments, in the
// thesis's order; they share the colours of the data planes whose names they share (the
// thesis drew user space blue and eBPF orange).
var Specs = subject.Catalogue{
	{Kind: subject.Responder, Workload: Workload, Name: string(Userspace), Order: 10,
		Description: "a plain UDP server answers every request (Weinhold's user space only)",
		Colour:      color.RGBA{0x1f, 0x77, 0xb4, 0xff}},
	{Kind: subject.Responder, Workload: Workload, Name: string(Mixed), Order: 20,
		Description: "XDP answers with the limit user space recomputes on a timer (Weinhold's mixed)",
		Needs:       []features.Name{features.BPF, features.XDP},
		Colour:      color.RGBA{0x94, 0x67, 0xbd, 0xff}},
	{Kind: subject.Responder, Workload: Workload, Name: string(EBPF), Order: 30,
		Description: "XDP computes the limit and answers per request (Weinhold's eBPF only)",
		Needs:       []features.Name{features.BPF, features.XDP},
		Colour:      color.RGBA{0xff, 0x7f, 0x0e, 0xff}},
}

// Deployment is the responder deployed on a node as an experiment's subject. Every Start runs
// a fresh server (the thesis starts its server for every run) and Stop removes it; in between
// it reports the XDP program's run statistics like any data plane's programs.
type Deployment struct {
	cfg         ServerConfig
	client      NS
	clientIface string

	mu  sync.Mutex
	srv *Server
}

// Deploy prepares the responder in cfg's configuration for clients sending from clientIface
// in client. It starts nothing yet: Start does.
func Deploy(cfg ServerConfig, client NS, clientIface string) (*Deployment, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if client == nil || clientIface == "" {
		return nil, errors.New("the speed-limit responder needs the client's namespace and interface")
	}
	return &Deployment{cfg: cfg, client: client, clientIface: clientIface}, nil
}

// Start turns the client's TX checksum offload off (so every request carries a checksum the
// XDP program verifies) and starts the server — the XDP program on the server's veth, the pass
// program on the bridge side for native mode —, its loop pinned as ctx's plan says.
func (d *Deployment) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.srv != nil {
		return errors.New("the speed-limit server is already running")
	}
	if _, err := SetTxChecksum(d.client, d.clientIface, false); err != nil {
		return err
	}
	cfg := d.cfg
	cfg.Pinning = cpupin.PinningFrom(ctx)
	srv, err := StartServer(cfg)
	if err != nil {
		return err
	}
	d.srv = srv
	return nil
}

// Stop stops the running server, which detaches its program, and returns what went wrong
// while it ran. It does nothing when no server runs.
func (d *Deployment) Stop() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.srv == nil {
		return nil
	}
	err := errors.Join(d.srv.Err(), d.srv.Close())
	d.srv = nil
	return err
}

// Settings describes the running server (the last one started, before Start: nil).
func (d *Deployment) Settings() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.srv == nil {
		return nil
	}
	return d.srv.Settings()
}

// ProgramRuns returns the running server's XDP program's run statistics as
// speedlimit_xdp (subject.ProgramRunner); none in the user-space configuration.
func (d *Deployment) ProgramRuns() ([]subject.ProgramRun, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.srv == nil {
		return nil, nil
	}
	runs, total, ok, err := d.srv.RunStats()
	if err != nil || !ok {
		return nil, err
	}
	return []subject.ProgramRun{{Name: "speedlimit_xdp", Runs: runs, Runtime: total}}, nil
}

// Close stops the server if one runs. It is idempotent.
func (d *Deployment) Close() error { return d.Stop() }
