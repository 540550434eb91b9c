package bench

import (
	"bufio"
	"context"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/stats"
)

// tcpLoopback runs both sides of a meter in the test's namespace over 127.0.0.1.
func tcpLoopback() Endpoints {
	return Endpoints{Client: Current{}, Server: Current{}, Target: netip.MustParseAddr("127.0.0.1")}
}

// tcpCheckLeaks fails the test if goroutines or file descriptors started during it are still
// there shortly after it ends.
func tcpCheckLeaks(t *testing.T) {
	t.Helper()
	goroutines, fds := runtime.NumGoroutine(), tcpOpenFDs(t)
	t.Cleanup(func() {
		// Not assert.Eventually: it runs the condition in goroutines of its own.
		deadline := time.Now().Add(2 * time.Second)
		for (runtime.NumGoroutine() > goroutines || tcpOpenFDs(t) > fds) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > goroutines {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines leaked: %d before, %d after:\n%s", goroutines, n, buf[:runtime.Stack(buf, true)])
		}
		assert.LessOrEqual(t, tcpOpenFDs(t), fds, "file descriptors leaked")
	})
}

func tcpOpenFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(entries)
}

// tcpSocketsInState counts the sockets in /proc/net/tcp of the current namespace with port
// as local or remote port and the given state (06 is TIME_WAIT).
func tcpSocketsInState(t *testing.T, port uint16, state string) int {
	f, err := os.Open("/proc/net/tcp")
	require.NoError(t, err)
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		require.GreaterOrEqual(t, len(fields), 4, "short /proc/net/tcp line %q", sc.Text())
		if fields[3] != state {
			continue
		}
		for _, addr := range fields[1:3] {
			_, hexPort, ok := strings.Cut(addr, ":")
			require.True(t, ok, "address %q", addr)
			p, err := strconv.ParseUint(hexPort, 16, 16)
			require.NoError(t, err)
			if uint16(p) == port {
				n++
				break
			}
		}
	}
	require.NoError(t, sc.Err())
	return n
}

func tcpSamplesOf(ss []stats.Sample, m stats.Metric) []stats.Sample {
	var out []stats.Sample
	for _, s := range ss {
		if s.Metric == m {
			out = append(out, s)
		}
	}
	return out
}

func TestConnectRTTLoopback(t *testing.T) {
	tcpCheckLeaks(t)
	cfg := ConnectConfig{Port: 25201, Count: 20, Interval: Duration(5 * time.Millisecond)}
	samples, err := ConnectRTT(context.Background(), tcpLoopback(), cfg)
	require.NoError(t, err)

	rtts := tcpSamplesOf(samples, stats.RTT)
	require.Len(t, rtts, 20)
	for i, s := range rtts {
		assert.Equal(t, i, s.Seq)
		assert.Zero(t, s.Rep)
		assert.Greater(t, s.Value, 0.0)
		assert.Less(t, s.Value, 1.0, "an RTT above the timeout")
		if i > 0 {
			assert.Greater(t, s.T, rtts[i-1].T, "T must grow with Seq")
		}
	}
	loss := tcpSamplesOf(samples, stats.Loss)
	require.Len(t, loss, 1)
	assert.Zero(t, loss[0].Value)
}

func TestConnectRTTKeep(t *testing.T) {
	cfg := ConnectConfig{Port: 25201, Count: 20, Keep: 15, Interval: Duration(time.Millisecond)}
	samples, err := ConnectRTT(context.Background(), tcpLoopback(), cfg)
	require.NoError(t, err)
	assert.Len(t, tcpSamplesOf(samples, stats.RTT), 15)
	require.Len(t, tcpSamplesOf(samples, stats.Loss), 1)
}

func TestConnectRTTLeavesNoTimeWait(t *testing.T) {
	const port = 25203
	cfg := ConnectConfig{Port: port, Count: 200, Interval: Duration(time.Microsecond)}
	samples, err := ConnectRTT(context.Background(), tcpLoopback(), cfg)
	require.NoError(t, err)
	require.Len(t, tcpSamplesOf(samples, stats.RTT), 200)
	assert.Zero(t, tcpSocketsInState(t, port, "06"), "TIME_WAIT sockets on port %d", port)
}

// TestConnectRTTConnectResets checks the client alone: against a server that closes gracefully,
// a client that closed with a FIN would be left in TIME_WAIT.
func TestConnectRTTConnectResets(t *testing.T) {
	tcpCheckLeaks(t)
	const port = 25207
	family, target := sockaddr(netip.MustParseAddr("127.0.0.1"), port)
	lfd, err := listenTCP(family, port, 64)
	require.NoError(t, err)
	defer unix.Close(lfd)
	for range 20 {
		_, ok, err := connectOnce(family, target, time.Second)
		require.NoError(t, err)
		require.True(t, ok)
	}
	for range 20 {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		require.NoError(t, err)
		require.NoError(t, unix.Close(fd))
	}
	assert.Zero(t, tcpSocketsInState(t, port, "06"), "TIME_WAIT sockets on port %d", port)
}

func TestConnectRTTServerError(t *testing.T) {
	tcpCheckLeaks(t)
	ep := tcpLoopback()
	ep.Server = tcpFailingNS{}
	samples, err := ConnectRTT(context.Background(), ep, ConnectConfig{Port: 25204, Count: 3, Interval: Duration(time.Millisecond)})
	require.ErrorIs(t, err, os.ErrPermission, "a server that cannot start is an error")
	assert.Empty(t, samples)
}

func TestConnectRTTConnectFailures(t *testing.T) {
	tcpCheckLeaks(t)
	family, target := sockaddr(netip.MustParseAddr("127.0.0.1"), 25206)

	// Nobody listens: the connect is refused and counts as lost.
	_, ok, err := connectOnce(family, target, time.Second)
	require.NoError(t, err)
	assert.False(t, ok, "refused connect")

	// A listener whose accept queue is full drops SYNs: the connect times out.
	lfd, err := listenTCP(family, 25206, 0)
	require.NoError(t, err)
	defer unix.Close(lfd)
	_, ok, err = connectOnce(family, target, time.Second)
	require.NoError(t, err)
	require.True(t, ok, "the first connect fills the queue")
	_, ok, err = connectOnce(family, target, 50*time.Millisecond)
	require.NoError(t, err)
	assert.False(t, ok, "timed-out connect")
}

// tcpFailingNS is a namespace that cannot be entered.
type tcpFailingNS struct{}

func (tcpFailingNS) Do(func() error) error { return os.ErrPermission }

func TestConnectRTTCancel(t *testing.T) {
	tcpCheckLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	begin := time.Now()
	samples, err := ConnectRTT(ctx, tcpLoopback(), ConnectConfig{Port: 25205, Count: 1000, Interval: Duration(10 * time.Millisecond)})
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(begin), 2*time.Second)
	rtts := tcpSamplesOf(samples, stats.RTT)
	assert.NotEmpty(t, rtts, "partial results are kept")
	assert.Less(t, len(rtts), 1000)
	loss := tcpSamplesOf(samples, stats.Loss)
	require.Len(t, loss, 1)
	assert.Zero(t, loss[0].Value)
}

func TestConnectRTTValidate(t *testing.T) {
	assert.NoError(t, ConnectConfig{}.Validate(), "zero values take defaults")
	assert.NoError(t, ConnectConfig{Count: 20, Keep: 15}.Validate())

	for _, tc := range []struct {
		cfg  ConnectConfig
		want string
	}{
		{ConnectConfig{Count: -1}, "count -1 is negative"},
		{ConnectConfig{Interval: Duration(-time.Second)}, "interval -1s is negative"},
		{ConnectConfig{Timeout: Duration(-time.Second)}, "timeout -1s is negative"},
		{ConnectConfig{Timeout: Duration(time.Microsecond)}, "give at least 1ms"},
		{ConnectConfig{Keep: -1}, "keep -1 is negative"},
		{ConnectConfig{Keep: 21}, "keep 21 exceeds count 20"},
	} {
		err := tc.cfg.Validate()
		require.Error(t, err, "%+v", tc.cfg)
		assert.Contains(t, err.Error(), tc.want)
		assert.Equal(t, strings.ToLower(err.Error()[:1]), err.Error()[:1], "errors are lower-case")
	}

	err := ConnectConfig{Count: -1, Keep: -1}.Validate()
	require.Error(t, err)
	assert.Len(t, strings.Split(err.Error(), "\n"), 2, "one sentence per bad field")

	_, err = ConnectRTT(context.Background(), Endpoints{}, ConnectConfig{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "target address is not set")
}
