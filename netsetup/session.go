package netsetup

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/edgebpf/edgebpf/internal/atomicfile"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Prefix starts the name of every namespace, state file and (in later data planes) BPF pin
// and nftables table edgebpf creates. Links live only inside edgebpf's own namespaces and
// start with LinkPrefix. Nothing without the prefix is ever touched.
const (
	Prefix     = "edgebpf-"
	LinkPrefix = "eb"
)

// StateDir holds one JSON record per live session: what it created and what its nodes look
// like, for `edgebpf status`, `edgebpf exec` and `edgebpf cleanup`.
var StateDir = "/run/edgebpf"

var (
	createdMu  sync.Mutex
	createdIDs []string
)

// CreatedSessionIDs returns the ids of the sessions this process created (for leak checks).
func CreatedSessionIDs() []string {
	createdMu.Lock()
	defer createdMu.Unlock()
	return slices.Clone(createdIDs)
}

// HasPrefix reports whether name carries edgebpf's prefix.
func HasPrefix(name string) bool { return strings.HasPrefix(name, Prefix) }

// Record is the on-disk state of a session. It is rewritten atomically whenever the session
// creates or removes something, before the thing exists and after it is gone, so a SIGKILL at
// any point leaves a record that covers everything.
type Record struct {
	ID         string       `json:"id"`
	PID        int          `json:"pid"`
	PIDStart   uint64       `json:"pid_start"`
	Command    string       `json:"command"`
	Started    time.Time    `json:"started"`
	Namespaces []string     `json:"namespaces"`
	Processes  []ProcRecord `json:"processes,omitempty"`
	Nodes      []NodeStatus `json:"nodes"`
	// Clusters are the session's clusters; their workers are among Nodes.
	Clusters []ClusterStatus `json:"clusters,omitempty"`
	// Results is the results directory of the run the session serves, if any: after a
	// SIGKILL, `edgebpf cleanup` marks its meta.json "killed" (see SetResults).
	Results string `json:"results,omitempty"`
}

// ProcRecord identifies a child process across PID reuse.
type ProcRecord struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// Session owns everything one edgebpf process creates: namespaces, child processes and the
// nodes built from them. Close removes it all in reverse order; it is idempotent.
type Session struct {
	mu       sync.Mutex
	rec      Record
	path     string
	nss      []*Namespace
	procs    []*exec.Cmd
	closers  []func() error
	nodes    []*Node
	clusters []*Cluster
	closed   bool
}

// NewSession starts a session with a fresh id and writes its record. command describes what
// runs it (shown by `edgebpf status`).
func NewSession(command string) (*Session, error) {
	if err := RequirePrivileges(); err != nil {
		return nil, err
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("make session id: %w", err)
	}
	start, err := procStartTime(os.Getpid())
	if err != nil {
		return nil, err
	}
	s := &Session{rec: Record{
		ID: hex.EncodeToString(b[:]), PID: os.Getpid(), PIDStart: start,
		Command: command, Started: time.Now().UTC(), Namespaces: []string{}, Nodes: []NodeStatus{},
	}}
	s.path = filepath.Join(StateDir, Prefix+s.rec.ID+".json")
	createdMu.Lock()
	createdIDs = append(createdIDs, s.rec.ID)
	createdMu.Unlock()
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w", StateDir, err)
	}
	if err := s.save(); err != nil {
		return nil, err
	}
	return s, nil
}

// ID returns the session's id, part of every name it creates.
func (s *Session) ID() string { return s.rec.ID }

// SetResults records dir as the results directory of the run this session serves, so that
// if the process is killed, Cleanup rewrites the status of dir/meta.json from "running" to
// "killed". Whoever creates a session for a run calls it before the run's meta.json says
// "running".
func (s *Session) SetResults(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("results directory %s: %w", dir, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("session is closed")
	}
	s.rec.Results = abs
	return s.saveLocked()
}

// NewNamespace creates the namespace edgebpf-<id>-<role>; role must be lower-case letters,
// digits and dashes.
func (s *Session) NewNamespace(role string) (*Namespace, error) {
	if err := validName(role); err != nil {
		return nil, fmt.Errorf("namespace role: %w", err)
	}
	name := Prefix + s.rec.ID + "-" + role
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("session is closed")
	}
	if slices.Contains(s.rec.Namespaces, name) {
		return nil, fmt.Errorf("namespace %s already exists in this session", name)
	}
	s.rec.Namespaces = append(s.rec.Namespaces, name)
	if err := s.saveLocked(); err != nil {
		s.rec.Namespaces = s.rec.Namespaces[:len(s.rec.Namespaces)-1]
		return nil, err
	}
	ns, err := createNamespace(name)
	if err != nil {
		s.rec.Namespaces = slices.DeleteFunc(s.rec.Namespaces, func(n string) bool { return n == name })
		return nil, errors.Join(err, s.saveLocked())
	}
	s.nss = append(s.nss, ns)
	return ns, nil
}

// DeleteNamespace kills what runs in ns and removes it.
func (s *Session) DeleteNamespace(ns *Namespace) error {
	err := ns.destroy()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nss = slices.DeleteFunc(s.nss, func(n *Namespace) bool { return n == ns })
	s.rec.Namespaces = slices.DeleteFunc(s.rec.Namespaces, func(n string) bool { return n == ns.Name })
	return errors.Join(err, s.saveLocked())
}

// Start starts cmd inside ns and records it so that Close and `edgebpf cleanup` end it.
func (s *Session) Start(ns *Namespace, cmd *exec.Cmd) error {
	if err := ns.Start(cmd); err != nil {
		return fmt.Errorf("start %s in %s: %w", cmd.Path, ns.Name, err)
	}
	st, _ := procStartTime(cmd.Process.Pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs = append(s.procs, cmd)
	s.rec.Processes = append(s.rec.Processes, ProcRecord{PID: cmd.Process.Pid, Start: st})
	return s.saveLocked()
}

// OnClose registers fn to run when the session closes, before its namespaces go; closers
// run in reverse order of registration.
func (s *Session) OnClose(fn func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closers = append(s.closers, fn)
}

// Close stops the session's processes, runs its closers, deletes its namespaces and removes
// its record. Calling it again does nothing.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	closers, procs := s.closers, s.procs
	s.mu.Unlock()

	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		errs = append(errs, closers[i]())
	}
	// Closers (a node's Close) delete namespaces of their own: take what is left now.
	s.mu.Lock()
	nss := slices.Clone(s.nss)
	s.mu.Unlock()
	for _, c := range procs {
		if c.ProcessState == nil {
			_ = c.Process.Kill()
			_, _ = c.Process.Wait()
		}
	}
	for i := len(nss) - 1; i >= 0; i-- {
		errs = append(errs, nss[i].destroy())
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove state file: %w", err))
	}
	return errors.Join(errs...)
}

// updateNodes refreshes the node descriptions in the record (for `edgebpf status`).
func (s *Session) updateNodes() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.rec.Nodes = s.rec.Nodes[:0]
	for _, n := range s.nodes {
		s.rec.Nodes = append(s.rec.Nodes, n.Status())
	}
	s.rec.Clusters = s.rec.Clusters[:0]
	for _, c := range s.clusters {
		s.rec.Clusters = append(s.rec.Clusters, c.Status())
	}
	return s.saveLocked()
}

func (s *Session) addCluster(c *Cluster) {
	s.mu.Lock()
	s.clusters = append(s.clusters, c)
	s.mu.Unlock()
}

// removeCluster forgets c; the record is rewritten as its workers go.
func (s *Session) removeCluster(c *Cluster) {
	s.mu.Lock()
	s.clusters = slices.DeleteFunc(s.clusters, func(x *Cluster) bool { return x == c })
	s.mu.Unlock()
}

func (s *Session) addNode(n *Node) {
	s.mu.Lock()
	s.nodes = append(s.nodes, n)
	s.mu.Unlock()
}

func (s *Session) removeNode(n *Node) {
	s.mu.Lock()
	s.nodes = slices.DeleteFunc(s.nodes, func(x *Node) bool { return x == n })
	s.mu.Unlock()
}

func (s *Session) save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saveLocked()
}

func (s *Session) saveLocked() error {
	b, err := json.MarshalIndent(s.rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode session record: %w", err)
	}
	return atomicfile.Write(s.path, append(b, '\n'), 0o644)
}

// validName accepts lower-case letters, digits and inner dashes, at most 40 characters.
func validName(s string) error {
	if s == "" || len(s) > 40 {
		return fmt.Errorf("%q must be 1 to 40 characters long", s)
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(s)-1
		if !ok {
			return fmt.Errorf("%q may hold only lower-case letters, digits and inner dashes", s)
		}
	}
	return nil
}
