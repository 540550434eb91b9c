package cpupin

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]string{"0": "0", "3,1": "1,3", "0-2": "0-2", "0,2-3,5": "0,2-3,5", " 1 , 1 ": "1", "4-4": "4"} {
		s, err := Parse(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, s.String(), in)
	}
	for _, in := range []string{"", "a", "-1", "3-1", "1-", "1,,2", "5000"} {
		_, err := Parse(in)
		assert.Error(t, err, in)
	}
}

func TestApart(t *testing.T) {
	set := func(l string) Set {
		s, err := Parse(l)
		require.NoError(t, err)
		return s
	}
	for _, c := range []struct{ allowed, avoid, client, server string }{
		{"0-1", "", "0", "1"},
		{"0-3", "", "2", "3"},
		{"0-3", "3", "1", "2"},
		{"0-2", "1-2", "1", "2"}, // not two CPUs clear of the proxy's: apart anyway
		{"1,5", "", "1", "5"},
	} {
		var avoid Set
		if c.avoid != "" {
			avoid = set(c.avoid)
		}
		client, server, ok := Apart(set(c.allowed), avoid)
		require.True(t, ok, c.allowed)
		assert.Equal(t, c.client, client.String(), c.allowed)
		assert.Equal(t, c.server, server.String(), c.allowed)
	}
	_, _, ok := Apart(set("3"), Set{})
	assert.False(t, ok, "one CPU cannot hold two apart")
}

func TestThreadPinsAndRestores(t *testing.T) {
	var before unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &before))
	first := -1
	for c := range 1024 {
		if before.IsSet(c) {
			first = c
			break
		}
	}
	s, err := Parse(strconv.Itoa(first))
	require.NoError(t, err)
	ctx := WithPlan(context.Background(), Plan{Client: s})
	require.NoError(t, Plan{Client: s}.Validate())
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // keep this goroutine's thread to compare before and after
		defer runtime.UnlockOSThread()
		var orig, pinned, after unix.CPUSet
		_ = unix.SchedGetaffinity(0, &orig)
		undo := Thread(ctx, Client)
		_ = unix.SchedGetaffinity(0, &pinned)
		undo()
		_ = unix.SchedGetaffinity(0, &after)
		assert.Equal(t, 1, pinned.Count())
		assert.True(t, pinned.IsSet(first))
		assert.Equal(t, orig, after, "affinity restored")
		// Roles the plan does not pin are left alone.
		Thread(ctx, Server)()
		var same unix.CPUSet
		_ = unix.SchedGetaffinity(0, &same)
		assert.Equal(t, orig, same)
	}()
	<-done
	assert.Zero(t, FailuresIn(ctx))
}

func TestValidateRejectsUnavailableCPUs(t *testing.T) {
	s, _ := Parse("1000")
	err := Plan{Server: s}.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--cpu-server: CPU 1000 is not available")
	assert.Equal(t, map[string]string{"server": "1000"}, Plan{Server: s, Proxy: Set{}}.Settings())
}

// A failed pinning is counted in its run's context only; the thread runs unpinned.
func TestFailuresBelongToTheRun(t *testing.T) {
	gone, err := Parse("1000") // a CPU this machine does not have: setting it fails
	require.NoError(t, err)
	failing := WithPlan(context.Background(), Plan{Server: gone})
	other := WithPlan(context.Background(), Plan{Server: gone})
	done := make(chan struct{})
	go func() {
		defer close(done)
		Thread(failing, Server)()
		Thread(failing, Server)()
		Thread(failing, Client)() // not pinned: not a failure
	}()
	<-done
	assert.Equal(t, int64(2), FailuresIn(failing))
	assert.Zero(t, FailuresIn(other))
	assert.Zero(t, FailuresIn(context.Background()))
	assert.Nil(t, FromContext(context.Background()))
	assert.Equal(t, Plan{Server: gone}, FromContext(failing))
}

// sleeperEnv makes TestSleeper a multi-threaded process that waits to be killed.
const sleeperEnv = "CPUPIN_TEST_SLEEPER"

func TestSleeper(t *testing.T) {
	if os.Getenv(sleeperEnv) != "1" {
		t.Skip("run as the process TestProcessPinsEveryThread pins")
	}
	os.Stdout.WriteString("ready\n")
	time.Sleep(time.Minute)
}

// TestProcessPinsEveryThread pins another Go process (this test binary, a handful of
// runtime threads) and checks every one of its threads.
func TestProcessPinsEveryThread(t *testing.T) {
	var allowed unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &allowed))
	first := -1
	for c := range 1024 {
		if allowed.IsSet(c) {
			first = c
			break
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSleeper$", "-test.v")
	cmd.Env = append(os.Environ(), sleeperEnv+"=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	_, err = bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)

	p := NewPinning(Plan{Proxy: Set{cpus: []int{first}}})
	p.Process(Client, cmd.Process.Pid) // not in the plan: nothing happens
	p.Process(Proxy, cmd.Process.Pid)
	assert.Zero(t, p.Failures())
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/task")
	require.NoError(t, err)
	assert.Greater(t, len(tasks), 1, "a Go process has several threads")
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		var m unix.CPUSet
		require.NoError(t, unix.SchedGetaffinity(tid, &m))
		assert.Equal(t, 1, m.Count(), "thread %d", tid)
		assert.True(t, m.IsSet(first), "thread %d", tid)
	}

	p.Process(Proxy, 1<<22+1) // beyond pid_max: no such process
	assert.Equal(t, int64(1), p.Failures(), "a process that cannot be pinned is counted")
}
