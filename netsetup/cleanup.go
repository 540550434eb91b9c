package netsetup

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
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

// CleanupReport lists what Cleanup removed and what it left because its owner still runs.
type CleanupReport struct {
	Namespaces []string
	Processes  []int
	Records    []string
	Skipped    []string // live sessions left alone
}

// Cleanup removes what edgebpf sessions whose process is gone left behind: their child
// processes, namespaces (and with them every link, bridge and BPF attachment inside) and
// records, plus any edgebpf-prefixed namespace no live session owns. It touches nothing
// without the prefix and nothing a live session owns.
func Cleanup() (CleanupReport, error) {
	var rep CleanupReport
	live, stale, errs := Sessions()
	all := []error{errs}
	owned := map[string]bool{}
	for _, s := range live {
		rep.Skipped = append(rep.Skipped, fmt.Sprintf("session %s (pid %d: %s)", s.ID, s.PID, s.Command))
		owned[s.ID] = true
	}
	for _, s := range stale {
		for _, p := range s.Processes {
			if alive(p.PID, p.Start) {
				if err := syscall.Kill(p.PID, syscall.SIGKILL); err == nil {
					rep.Processes = append(rep.Processes, p.PID)
				}
			}
		}
	}
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		all = append(all, fmt.Errorf("list %s: %w", netnsDir, err))
	}
	var names []string
	for _, e := range entries {
		if HasPrefix(e.Name()) && !owned[sessionOf(e.Name())] {
			names = append(names, e.Name())
		}
	}
	// Instances first, nodes last: reverse creation order within a session.
	slices.Sort(names)
	slices.Reverse(names)
	for _, name := range names {
		killed, err := killProcessesIn(filepath.Join(netnsDir, name))
		if err != nil {
			all = append(all, err)
		}
		rep.Processes = append(rep.Processes, killed...)
		if err := deleteNamed(name); err != nil {
			all = append(all, err)
			continue
		}
		rep.Namespaces = append(rep.Namespaces, name)
	}
	for _, s := range stale {
		if err := os.Remove(s.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			all = append(all, fmt.Errorf("remove %s: %w", s.Path, err))
			continue
		}
		rep.Records = append(rep.Records, s.Path)
	}
	return rep, errors.Join(all...)
}

// sessionOf extracts the session id from a name edgebpf-<id>-<role>.
func sessionOf(name string) string {
	rest := strings.TrimPrefix(name, Prefix)
	id, _, _ := strings.Cut(rest, "-")
	return id
}
