package netsetup

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAliveTreatsZombiesAsDead(t *testing.T) {
	self, err := procStartTime(os.Getpid())
	require.NoError(t, err)
	assert.True(t, alive(os.Getpid(), self))
	assert.False(t, alive(os.Getpid(), self+1), "a reused PID is another process")

	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	start, err := procStartTime(cmd.Process.Pid)
	require.NoError(t, err)
	assert.True(t, alive(cmd.Process.Pid, start))
	require.NoError(t, syscall.Kill(cmd.Process.Pid, syscall.SIGKILL))
	// Not reaped yet: the process is a zombie, as a SIGKILLed run whose parent does not reap.
	assert.Eventually(t, func() bool { return !alive(cmd.Process.Pid, start) }, 2*time.Second, 10*time.Millisecond)
	_ = cmd.Wait()
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "node0", "client-0", "svc-12-x"} {
		assert.NoError(t, validName(ok), ok)
	}
	for _, bad := range []string{"", "-a", "a-", "A", "a b", "a/b", "../x", "a_b", "abcdefghijabcdefghijabcdefghijabcdefghijx"} {
		assert.Error(t, validName(bad), bad)
	}
}
