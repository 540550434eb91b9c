package netsetup_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

// childProc is a re-executed test binary running childNode: a live node with an instance
// and, in it, a sleep that no session recorded.
type childProc struct {
	cmd      *exec.Cmd
	id       string // its session id
	sleepPID int
}

// startChildNode starts childNode with its session records in stateDir and waits until it
// is ready. The child is killed when the test ends.
func startChildNode(t *testing.T, stateDir string) *childProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	pidFile := filepath.Join(t.TempDir(), "sleep.pid")
	cmd.Env = append(os.Environ(), "EDGEBPF_TEST_CHILD=1", "EDGEBPF_TEST_PIDFILE="+pidFile, "EDGEBPF_TEST_STATEDIR="+stateDir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	buf := make([]byte, 128)
	k, _ := out.Read(buf)
	line := strings.TrimSpace(string(buf[:k]))
	require.True(t, strings.HasPrefix(line, "ready "), "child said %q", line)
	c := &childProc{cmd: cmd, id: strings.TrimPrefix(line, "ready ")}
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(pidFile)
		_, err := fmt.Sscan(string(b), &c.sleepPID)
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	return c
}

func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func names(kept []netsetup.KeptNamespace) []string {
	var out []string
	for _, k := range kept {
		out = append(out, k.Name)
	}
	return out
}

func nsOf(id string) []string {
	m, _ := filepath.Glob("/run/netns/" + netsetup.Prefix + id + "-*")
	return m
}

// TestCleanupAfterKill kills a node process and cleans up after it: the dead session's
// namespaces go, except the one in which a process that the session did not start (a sleep
// its shell left behind) still runs, which takes --force.
func TestCleanupAfterKill(t *testing.T) {
	testenv.RequirePrivileged(t)
	if !inPrivateRun(t) {
		return
	}
	live := testenv.Session(t) // a live session that cleanup must leave alone
	liveNS, err := live.NewNamespace("keep")
	require.NoError(t, err)

	child := startChildNode(t, netsetup.StateDir)
	require.NoError(t, child.cmd.Process.Kill())
	_ = child.cmd.Wait()
	require.Len(t, nsOf(child.id), 2, "the killed child left its node and instance namespaces")

	rep, err := netsetup.Cleanup(netsetup.CleanupOptions{})
	require.NoError(t, err)
	t.Logf("without --force: %+v", rep)
	instance := "/run/netns/" + netsetup.Prefix + child.id + "-node0-svc-0"
	assert.Equal(t, []string{netsetup.Prefix + child.id + "-node0"}, rep.Namespaces, "the empty node namespace goes")
	require.Len(t, rep.Kept, 1)
	assert.Equal(t, filepath.Base(instance), rep.Kept[0].Name)
	assert.True(t, rep.Kept[0].Force)
	assert.Contains(t, rep.Kept[0].Reason, fmt.Sprintf("process %d (sleep) runs inside that dead session %s did not start", child.sleepPID, child.id))
	assert.True(t, running(child.sleepPID), "an unrecorded process is not killed without --force")
	_, err = os.Stat(filepath.Join(netsetup.StateDir, netsetup.Prefix+child.id+".json"))
	assert.NoError(t, err, "the record stays while one of its namespaces does")

	rep, err = netsetup.Cleanup(netsetup.CleanupOptions{Force: true})
	require.NoError(t, err)
	t.Logf("with --force: %+v", rep)
	assert.Contains(t, rep.Processes, child.sleepPID, "--force kills the sleep left in the instance namespace")
	assert.Equal(t, []string{filepath.Base(instance)}, rep.Namespaces)
	assert.Empty(t, nsOf(child.id))
	_, err = os.Stat(filepath.Join(netsetup.StateDir, netsetup.Prefix+child.id+".json"))
	assert.True(t, os.IsNotExist(err), "the record goes with the last namespace")

	_, err = os.Stat(liveNS.Path())
	assert.NoError(t, err, "a live session's namespace survives cleanup, even with --force")
	assert.Contains(t, strings.Join(rep.Skipped, " "), live.ID())
}

// TestCleanupLeavesLiveNodeAlone runs cleanup while a live node's record is out of its sight
// (StateDir is an empty directory, as under a private mount namespace over /run/edgebpf):
// the node's namespaces and processes must survive, with or without --force, and cleanup
// says why. An edgebpf- namespace nobody records or holds is listed and kept without
// --force, and removed, with the process inside, with it.
func TestCleanupLeavesLiveNodeAlone(t *testing.T) {
	testenv.RequirePrivileged(t)
	if !inPrivateRun(t) {
		return
	}
	hidden := t.TempDir()
	node := startChildNode(t, hidden)
	nodeNS := nsOf(node.id)
	require.Len(t, nodeNS, 2)
	saved := netsetup.StateDir
	t.Cleanup(func() { netsetup.StateDir = saved })
	netsetup.StateDir = t.TempDir()

	orphan, err := netsetup.CreateNamespace(netsetup.Prefix + "0ff0ff-node0")
	require.NoError(t, err)
	sleep := exec.Command("sleep", "300")
	require.NoError(t, orphan.Start(sleep))
	done := make(chan struct{})
	go func() { _ = sleep.Wait(); close(done) }()
	t.Cleanup(func() { _ = sleep.Process.Kill(); <-done })
	require.NoError(t, orphan.Close()) // nothing but the sleep inside holds it now

	for _, force := range []bool{false, true} {
		rep, err := netsetup.Cleanup(netsetup.CleanupOptions{Force: force})
		require.NoError(t, err)
		t.Logf("force %v: %+v", force, rep)
		assert.True(t, running(node.sleepPID), "force %v: the live node's process must survive", force)
		assert.NotContains(t, rep.Processes, node.sleepPID)
		assert.Equal(t, nodeNS, nsOf(node.id), "force %v: the live node's namespaces must survive", force)
		for _, k := range rep.Kept {
			if strings.Contains(k.Name, node.id) {
				assert.False(t, k.Force, k.Name)
				assert.Contains(t, k.Reason, fmt.Sprintf("held open by live process %d", node.cmd.Process.Pid))
			}
		}
		if !force {
			assert.ElementsMatch(t, append([]string{orphan.Name}, baseNames(nodeNS)...), names(rep.Kept))
			assert.Empty(t, rep.Namespaces)
			assert.True(t, running(sleep.Process.Pid), "without --force the orphan's process stays")
			_, err = os.Stat(orphan.Path())
			assert.NoError(t, err, "without --force the orphan stays")
			for _, k := range rep.Kept {
				if k.Name == orphan.Name {
					assert.True(t, k.Force)
					assert.Contains(t, k.Reason, "no session record covers it")
				}
			}
		} else {
			assert.ElementsMatch(t, baseNames(nodeNS), names(rep.Kept))
			assert.Equal(t, []string{orphan.Name}, rep.Namespaces)
			assert.Contains(t, rep.Processes, sleep.Process.Pid)
			_, err = os.Stat(orphan.Path())
			assert.True(t, os.IsNotExist(err), "--force removes the orphan")
		}
	}

	// Once the node is dead and its records visible, cleanup removes what it left.
	require.NoError(t, node.cmd.Process.Kill())
	_ = node.cmd.Wait()
	netsetup.StateDir = hidden
	rep, err := netsetup.Cleanup(netsetup.CleanupOptions{Force: true})
	require.NoError(t, err)
	assert.Contains(t, rep.Processes, node.sleepPID)
	assert.Empty(t, nsOf(node.id))
}

func baseNames(paths []string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, filepath.Base(p))
	}
	return out
}

// TestCleanupMarksKilledRun gives cleanup the record of a run whose process is dead: the
// run's meta.json goes from "running" to "killed", every other field unchanged; a run that
// finished, and a run without meta.json, are left alone.
func TestCleanupMarksKilledRun(t *testing.T) {
	saved := netsetup.StateDir
	t.Cleanup(func() { netsetup.StateDir = saved })
	netsetup.StateDir = t.TempDir()
	dead := exec.Command("true")
	require.NoError(t, dead.Run())

	write := func(id, results string) {
		rec := netsetup.Record{ID: id, PID: dead.Process.Pid, PIDStart: 1, Command: "edgebpf run", Namespaces: []string{}, Results: results}
		b, err := json.Marshal(rec)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(netsetup.StateDir, netsetup.Prefix+id+".json"), b, 0o644))
	}
	meta := func(status string) string {
		return `{"tool": "edgebpf", "status": "` + status + `", "experiments": [{"name": "latency", "status": "running"}], "extra": {"a": 1}}`
	}
	killed, done, none := t.TempDir(), t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(killed, "meta.json"), []byte(meta("running")), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(killed, netsetup.ResultsReserve), make([]byte, 16), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(done, "meta.json"), []byte(meta("done")), 0o644))
	write("0dead1", killed)
	write("0dead2", done)
	write("0dead3", none)
	write("0dead4", "")

	rep, err := netsetup.Cleanup(netsetup.CleanupOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{killed}, rep.Results)
	assert.Len(t, rep.Records, 4)

	var got, want map[string]any
	b, err := os.ReadFile(filepath.Join(killed, "meta.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &got))
	require.NoError(t, json.Unmarshal([]byte(meta("killed")), &want))
	assert.Equal(t, want, got, "only the status changes")
	_, err = os.Stat(filepath.Join(killed, netsetup.ResultsReserve))
	assert.True(t, os.IsNotExist(err), "the dead run's space reserve is removed")
	b, err = os.ReadFile(filepath.Join(done, "meta.json"))
	require.NoError(t, err)
	assert.JSONEq(t, meta("done"), string(b), "a finished run is left alone")
	_, err = os.Stat(filepath.Join(none, "meta.json"))
	assert.True(t, os.IsNotExist(err))
}

// TestSetResultsRecordsAbsolutePath checks what a session records as its run's results.
func TestSetResultsRecordsAbsolutePath(t *testing.T) {
	s := testenv.Session(t)
	wd, err := os.Getwd()
	require.NoError(t, err)
	require.NoError(t, s.SetResults("results/x"))
	live, _, err := netsetup.Sessions()
	require.NoError(t, err)
	var found bool
	for _, l := range live {
		if l.ID == s.ID() {
			found = true
			assert.Equal(t, filepath.Join(wd, "results/x"), l.Results)
		}
	}
	assert.True(t, found)
}

// TestCleanupRemovesAPIFiles checks that cleanup of a killed node removes its API socket and
// token file, which are named after its namespace.
func TestCleanupRemovesAPIFiles(t *testing.T) {
	saved := netsetup.StateDir
	t.Cleanup(func() { netsetup.StateDir = saved })
	netsetup.StateDir = t.TempDir()
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	ns := netsetup.Prefix + "0dead5-node0"
	rec := netsetup.Record{ID: "0dead5", PID: dead.Process.Pid, PIDStart: 1, Command: "edgebpf node", Namespaces: []string{ns}}
	b, err := json.Marshal(rec)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(netsetup.StateDir, netsetup.Prefix+"0dead5.json"), b, 0o644))
	other := filepath.Join(netsetup.StateDir, netsetup.Prefix+"0live6-node0.sock")
	for _, f := range []string{ns + ".sock", ns + ".token", filepath.Base(other)} {
		require.NoError(t, os.WriteFile(filepath.Join(netsetup.StateDir, f), nil, 0o600))
	}
	rep, err := netsetup.Cleanup(netsetup.CleanupOptions{})
	require.NoError(t, err)
	for _, f := range []string{ns + ".sock", ns + ".token"} {
		_, err := os.Stat(filepath.Join(netsetup.StateDir, f))
		assert.True(t, os.IsNotExist(err), f)
		assert.Contains(t, rep.Records, filepath.Join(netsetup.StateDir, f))
	}
	_, err = os.Stat(other)
	assert.NoError(t, err, "another node's socket stays")
}
