package netsetup

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgebpf/edgebpf/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// LiveSession is a session record whose owner process still runs.
type LiveSession struct {
	Record
	Path string
}

// Sessions reads the records in StateDir. live holds those whose owner runs; stale those
// whose owner is gone (killed). Unreadable records are reported in errs and otherwise
// skipped.
func Sessions() (live, stale []LiveSession, errs error) {
	paths, _ := filepath.Glob(filepath.Join(StateDir, Prefix+"*.json"))
	var all []error
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			all = append(all, fmt.Errorf("read %s: %w", p, err))
			continue
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			all = append(all, fmt.Errorf("parse %s: %w", p, err))
			continue
		}
		ls := LiveSession{Record: r, Path: p}
		if alive(r.PID, r.PIDStart) {
			live = append(live, ls)
		} else {
			stale = append(stale, ls)
		}
	}
	return live, stale, errors.Join(all...)
}

// CleanupOptions are the choices of `edgebpf cleanup`.
type CleanupOptions struct {
	// Force also removes what no dead session's record proves to be a leftover: edgebpf-
	// namespaces without any session record, and namespaces of dead sessions in which
	// processes the session did not record still run (Force kills those processes). Even
	// with Force, Cleanup never kills a process that holds a namespace open and never removes
	// a namespace such a process holds (see Cleanup).
	Force bool
}

// KeptNamespace is an edgebpf- namespace that Cleanup left alone, and why.
type KeptNamespace struct {
	Name   string
	Reason string
	// Force reports whether CleanupOptions.Force would remove it.
	Force bool
}

// CleanupReport lists what Cleanup removed and what it left alone.
type CleanupReport struct {
	Namespaces []string        // namespaces removed
	Processes  []int           // processes killed
	Records    []string        // session records removed
	Results    []string        // results directories whose meta.json status went from "running" to "killed"
	Skipped    []string        // live sessions, left alone with everything they own
	Kept       []KeptNamespace // other namespaces left alone, each with its reason
}

// Cleanup removes what edgebpf sessions whose process is gone left behind, and touches
// nothing without the edgebpf- prefix. For each dead session (a record in StateDir whose
// owner PID and start time no longer match a live process) it kills the child processes the
// record lists (PID and start time must match), marks the run's meta.json "killed" if the
// session recorded a results directory (Session.SetResults) and the run was still
// "running", removes the session's namespaces (and with them every link, bridge and BPF
// attachment inside) and, once all are gone, the record.
//
// A namespace is left alone, and listed in the report with its reason, when:
//   - its session is live: a record whose owner runs (listed in Skipped);
//   - a live process holds it open: a file descriptor on it, or a thread inside it while the
//     process's main thread is elsewhere. Every netsetup session keeps a descriptor on each
//     namespace it created until it removes it, so this is how a live edgebpf process that
//     owns a session shows itself even when its record is not visible (another StateDir, a
//     private mount namespace over /run/edgebpf). Such a process is never killed and such a
//     namespace never removed, with or without Force;
//   - without Force, live processes run inside it (their network namespace is it) that no
//     dead session recorded as its child;
//   - without Force, no session record covers it at all.
//
// With Force, the last two kinds are removed after their processes are killed.
func Cleanup(opts CleanupOptions) (CleanupReport, error) {
	var rep CleanupReport
	live, stale, errs := Sessions()
	all := []error{errs}
	liveIDs := map[string]bool{}
	for _, s := range live {
		rep.Skipped = append(rep.Skipped, fmt.Sprintf("session %s (pid %d: %s)", s.ID, s.PID, s.Command))
		liveIDs[s.ID] = true
	}
	staleIDs := map[string]*LiveSession{}
	for i, s := range stale {
		staleIDs[s.ID] = &stale[i]
		if s.Results != "" {
			marked, err := markKilled(s.Results)
			if err != nil {
				all = append(all, err)
			} else if marked {
				rep.Results = append(rep.Results, s.Results)
			}
		}
	}
	rep.Processes = killRecorded(stale)

	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		all = append(all, fmt.Errorf("list %s: %w", netnsDir, err))
	}
	var names []string
	for _, e := range entries {
		if HasPrefix(e.Name()) && !liveIDs[sessionOf(e.Name())] {
			names = append(names, e.Name())
		}
	}
	// Instances first, nodes last: reverse creation order within a session.
	slices.Sort(names)
	slices.Reverse(names)
	uses := namespaceUses()
	left := map[string]bool{} // stale session ids with a namespace still there
	for _, name := range names {
		id := sessionOf(name)
		rec := staleIDs[id]
		reason, force := keepReason(name, rec, uses)
		if reason != "" && (!force || !opts.Force) {
			rep.Kept = append(rep.Kept, KeptNamespace{Name: name, Reason: reason, Force: force})
			left[id] = true
			continue
		}
		killed, err := killProcessesIn(filepath.Join(netnsDir, name))
		rep.Processes = append(rep.Processes, killed...)
		if err == nil {
			err = deleteNamed(name)
		}
		if err != nil {
			all = append(all, err)
			left[id] = true
			continue
		}
		rep.Namespaces = append(rep.Namespaces, name)
	}
	for _, s := range stale {
		if left[s.ID] {
			continue // keep the record: it is what makes the rest a provable leftover later
		}
		// A node's API socket and token file are named after its namespace (edgebpf node).
		for _, ns := range s.Namespaces {
			for _, ext := range []string{".sock", ".token"} {
				if p := filepath.Join(StateDir, ns+ext); os.Remove(p) == nil {
					rep.Records = append(rep.Records, p)
				}
			}
		}
		if err := os.Remove(s.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			all = append(all, fmt.Errorf("remove %s: %w", s.Path, err))
			continue
		}
		rep.Records = append(rep.Records, s.Path)
	}
	return rep, errors.Join(all...)
}

// keepReason says why the namespace name must stay ("" if it may go) and whether Force
// overrides that. rec is the dead session's record that covers it, or nil.
func keepReason(name string, rec *LiveSession, uses map[nsKey]*nsUse) (reason string, force bool) {
	var u nsUse
	if key, ok := statNS(filepath.Join(netnsDir, name)); ok && uses[key] != nil {
		u = *uses[key]
	}
	if len(u.holders) > 0 {
		return fmt.Sprintf("held open by live %s", holders(u.holders)), false
	}
	switch {
	case rec == nil && len(u.inside) > 0:
		return fmt.Sprintf("no session record covers it and %s inside", describe(u.inside)), true
	case rec == nil:
		return "no session record covers it", true
	case len(u.inside) > 0:
		return fmt.Sprintf("%s inside that dead session %s did not start", describe(u.inside), rec.ID), true
	}
	return "", false
}

// killRecorded kills the child processes that dead sessions recorded (PID and start time
// must match) and waits briefly for them to go, so that they no longer hold a namespace.
func killRecorded(stale []LiveSession) []int {
	var killed []ProcRecord
	for _, s := range stale {
		for _, p := range s.Processes {
			if p.PID != os.Getpid() && alive(p.PID, p.Start) && syscall.Kill(p.PID, syscall.SIGKILL) == nil {
				killed = append(killed, p)
			}
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, p := range killed {
		for alive(p.PID, p.Start) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	pids := make([]int, len(killed))
	for i, p := range killed {
		pids[i] = p.PID
	}
	return pids
}

// nsKey identifies a namespace: the device and inode of its nsfs file.
type nsKey struct{ dev, ino uint64 }

// nsUse is what live processes do with a namespace.
type nsUse struct {
	inside  []int // processes whose network namespace it is
	holders []int // processes holding it open: a file descriptor on it, or a thread inside
}

func statNS(path string) (nsKey, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsKey{}, false
	}
	return nsKey{uint64(st.Dev), st.Ino}, true
}

// namespaceUses scans every live process (zombies hold nothing) for the network namespaces
// it runs in, holds a descriptor on, or has a thread in. This process counts too: a session
// in it holds its namespaces.
func namespaceUses() map[nsKey]*nsUse {
	uses := map[nsKey]*nsUse{}
	use := func(k nsKey) *nsUse {
		if uses[k] == nil {
			uses[k] = &nsUse{}
		}
		return uses[k]
	}
	procs, _ := os.ReadDir("/proc")
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, _, err := procStat(pid); err != nil || state == 'Z' || state == 'X' {
			continue
		}
		dir := "/proc/" + e.Name()
		main, ok := statNS(dir + "/ns/net")
		if ok {
			use(main).inside = append(use(main).inside, pid)
		}
		held := map[nsKey]bool{}
		tasks, _ := os.ReadDir(dir + "/task")
		for _, t := range tasks {
			if k, ok := statNS(dir + "/task/" + t.Name() + "/ns/net"); ok && k != main {
				held[k] = true
			}
		}
		fds, _ := os.ReadDir(dir + "/fd")
		for _, fd := range fds {
			p := dir + "/fd/" + fd.Name()
			if target, err := os.Readlink(p); err != nil || !strings.HasPrefix(target, "net:[") {
				continue
			}
			if k, ok := statNS(p); ok {
				held[k] = true
			}
		}
		for k := range held {
			use(k).holders = append(use(k).holders, pid)
		}
	}
	return uses
}

// describe names processes for a reason, with the verb: "process 12 (sleep) runs" or
// "processes 12 (sleep), 13 (sh) run".
func describe(pids []int) string {
	var parts []string
	for _, pid := range pids {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		parts = append(parts, fmt.Sprintf("%d (%s)", pid, strings.TrimSpace(string(comm))))
	}
	if len(parts) == 1 {
		return "process " + parts[0] + " runs"
	}
	return "processes " + strings.Join(parts, ", ") + " run"
}

// holders names the processes that hold a namespace open and says what that means.
func holders(pids []int) string {
	d := strings.TrimSuffix(strings.TrimSuffix(describe(pids), " runs"), " run")
	return d + ", which may own an edgebpf session whose record is not visible here: never touched, even with --force"
}

// markKilled rewrites the status of a run's meta.json in dir from "running" to "killed"
// and reports whether it did. It reads and changes nothing but the "status" field (netsetup
// does not know the rest of the format); other states, and a missing meta.json (the run died
// before writing one), are left alone.
func markKilled(dir string) (bool, error) {
	_ = os.Remove(filepath.Join(dir, ResultsReserve)) // a dead run's space reserve is of no use
	p := filepath.Join(dir, "meta.json")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("mark killed run: %w", err)
	}
	var meta map[string]json.RawMessage
	if err := json.Unmarshal(b, &meta); err != nil {
		return false, fmt.Errorf("mark killed run: parse %s: %w", p, err)
	}
	var status string
	if raw, ok := meta["status"]; !ok || json.Unmarshal(raw, &status) != nil || status != "running" {
		return false, nil
	}
	meta["status"] = json.RawMessage(`"killed"`)
	out, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return false, fmt.Errorf("mark killed run: encode %s: %w", p, err)
	}
	perm := os.FileMode(0o644)
	if fi, err := os.Stat(p); err == nil {
		perm = fi.Mode().Perm()
	}
	if err := atomicfile.Write(p, append(out, '\n'), perm); err != nil {
		return false, fmt.Errorf("mark killed run: %w", err)
	}
	return true, nil
}

// ResultsReserve is the file a run fills in its results directory so that meta.json stays
// writable on a full disk (package scenarios); cleanup removes a dead run's.
const ResultsReserve = ".edgebpf-reserve"

// sessionOf extracts the session id from a name edgebpf-<id>-<role>.
func sessionOf(name string) string {
	rest := strings.TrimPrefix(name, Prefix)
	id, _, _ := strings.Cut(rest, "-")
	return id
}
