package userspace_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/dataplanes/userspace"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

// helperEnv makes the test binary a node process (helperNode) instead of running tests;
// privateEnv names the test that a test binary runs in a private mount namespace.
const (
	helperEnv  = "EDGEBPF_USERSPACE_TEST_NODE"
	privateEnv = "EDGEBPF_USERSPACE_TEST_PRIVATE"
)

// helperNode is an edgebpf process in miniature: a session, a node, the userspace data
// plane. It prints "ready <proxy PID> <session id>" and waits to be killed.
func helperNode() {
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(1)
	}
	sess, err := netsetup.NewSession("userspace process test")
	if err != nil {
		fail(err)
	}
	node, err := netsetup.NewNode(sess, netsetup.NodeConfig{})
	if err != nil {
		fail(err)
	}
	dp := userspace.New()
	if err := dp.Deploy(context.Background(), node); err != nil {
		fail(err)
	}
	fmt.Println("ready", dp.PID(), sess.ID())
	select {}
}

// alive says whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// record reads the session record of session id.
func record(t *testing.T, id string) netsetup.Record {
	b, err := os.ReadFile(filepath.Join(netsetup.StateDir, netsetup.Prefix+id+".json"))
	require.NoError(t, err)
	var r netsetup.Record
	require.NoError(t, json.Unmarshal(b, &r))
	return r
}

// TestProxyProcess checks the proxy process of a deployed data plane: named, in the node's
// namespace, recorded by the session, and gone after Close with its device.
func TestProxyProcess(t *testing.T) {
	node := testenv.Node(t)
	dp := userspace.New()
	require.NoError(t, dp.Deploy(context.Background(), node))
	pid := dp.PID()
	require.NotZero(t, pid)
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	require.NoError(t, err)
	assert.Equal(t, userspace.ProcessName, strings.TrimSpace(string(comm)))
	assert.Equal(t, bench.ProxyProcess, userspace.ProcessName, "the resources experiment samples it by this name")
	var want, got unix.Stat_t
	require.NoError(t, unix.Stat(node.NS.Path(), &want))
	require.NoError(t, unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &got))
	assert.Equal(t, want.Ino, got.Ino, "the proxy process runs in the node's namespace")
	ids := netsetup.CreatedSessionIDs()
	var pids []int
	for _, p := range record(t, ids[len(ids)-1]).Processes {
		pids = append(pids, p.PID)
	}
	assert.Contains(t, pids, pid, "the session records the proxy process")
	assert.Contains(t, dp.Stats(), "forwarded", "Stats asks the process")

	require.NoError(t, dp.Close())
	assert.False(t, alive(pid), "Close kills and reaps the process")
	assert.Zero(t, dp.PID())
	assert.Empty(t, dp.Stats())
}

// TestProxyProcessDiesWithParent SIGKILLs a node process (in a private mount namespace with
// its own /run, so cleanup sees only what the test made): its proxy process must die with
// it, the dead session's record must list the proxy process, and cleanup must remove the
// node.
func TestProxyProcessDiesWithParent(t *testing.T) {
	testenv.RequirePrivileged(t)
	if os.Getenv(privateEnv) != t.Name() {
		cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), privateEnv+"="+t.Name())
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s in a private mount namespace:\n%s", t.Name(), out)
		t.Logf("%s in a private mount namespace:\n%s", t.Name(), out)
		return
	}
	require.NoError(t, unix.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"))

	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"=1")
	helper.Stderr = os.Stderr
	out, err := helper.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, helper.Start())
	t.Cleanup(func() {
		_ = helper.Process.Kill()
		_ = helper.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	var proxyPID int
	var id string
	_, err = fmt.Sscanf(line, "ready %d %s", &proxyPID, &id)
	require.NoError(t, err, "the node process said %q", line)
	require.True(t, alive(proxyPID))

	require.NoError(t, helper.Process.Kill())
	_ = helper.Wait()
	require.Eventually(t, func() bool { return !alive(proxyPID) }, 10*time.Second, 10*time.Millisecond,
		"the proxy process dies with the process that started it")
	var recorded []int
	for _, p := range record(t, id).Processes {
		recorded = append(recorded, p.PID)
	}
	assert.Contains(t, recorded, proxyPID, "the dead session's record lists the proxy process for cleanup")

	rep, err := netsetup.Cleanup(netsetup.CleanupOptions{})
	require.NoError(t, err)
	assert.Contains(t, rep.Namespaces, netsetup.Prefix+id+"-node0")
	assert.Empty(t, rep.Kept)
}
