package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

// unixClient is an HTTP client that reaches the API through the socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}}
}

// send makes one request and returns the status and body.
func send(t *testing.T, c *http.Client, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" || method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestListenAPI: the socket has mode 0600 and the process's owner before anyone can connect,
// a live socket is not taken over, a stale one is replaced, both go on cleanup; TCP writes a
// token only its owner can read and refuses a non-loopback address without --api-public.
func TestListenAPI(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	o := apiOptions{addr: "unix", dir: dir, name: "edgebpf-test-node0"}
	l, err := listenAPI(o, log)
	require.NoError(t, err)
	sock := filepath.Join(dir, "edgebpf-test-node0.sock")
	assert.Equal(t, sock, l.addr)
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	assert.Equal(t, os.ModeSocket|0o600, fi.Mode(), "a socket only its owner can open")
	assert.EqualValues(t, os.Geteuid(), fi.Sys().(*syscall.Stat_t).Uid)
	assert.Empty(t, l.access.Token, "the socket needs no token")
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 1, "no temporary directory left")

	_, err = listenAPI(o, log)
	assert.ErrorContains(t, err, "another process serves this socket", "a live socket is not taken over")
	require.NoError(t, l.ln.Close())
	l2, err := listenAPI(o, log)
	require.NoError(t, err, "a stale socket is replaced")
	require.NoError(t, l2.ln.Close())
	require.NoError(t, l2.cleanup())
	_, err = os.Stat(sock)
	assert.True(t, os.IsNotExist(err), "cleanup removes the socket")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "plain"), nil, 0o600))
	_, err = listenAPI(apiOptions{addr: "unix:" + filepath.Join(dir, "plain")}, log)
	assert.ErrorContains(t, err, "is not a socket")

	l, err = listenAPI(apiOptions{addr: "127.0.0.1:0", dir: dir, name: "edgebpf-test-node0"}, log)
	require.NoError(t, err)
	token := filepath.Join(dir, "edgebpf-test-node0.token")
	assert.Equal(t, token, l.tokenFile)
	fi, err = os.Stat(token)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode())
	b, _ := os.ReadFile(token)
	assert.Equal(t, l.access.Token+"\n", string(b))
	assert.Len(t, l.access.Token, 64)
	assert.Equal(t, []string{l.addr}, l.access.Hosts)
	require.NoError(t, l.ln.Close())
	require.NoError(t, l.cleanup())
	_, err = os.Stat(token)
	assert.True(t, os.IsNotExist(err), "cleanup removes the token")

	_, err = listenAPI(apiOptions{addr: "0.0.0.0:0", dir: dir, name: "n"}, log)
	var ee *exitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 2, ee.code)
	assert.Contains(t, err.Error(), "listens beyond this machine: add --api-public")
	l, err = listenAPI(apiOptions{addr: "0.0.0.0:0", public: true, dir: dir, name: "n"}, log)
	require.NoError(t, err)
	assert.Contains(t, logs.String(), "level=WARN")
	assert.Contains(t, logs.String(), "listens beyond this machine")
	require.NoError(t, l.ln.Close())
	require.NoError(t, l.cleanup())

	l, err = listenAPI(apiOptions{addr: "none"}, log)
	assert.NoError(t, err)
	assert.Nil(t, l)
}

// startNodeCmd starts `edgebpf node` with args and waits for its ready file; the returned func
// stops it and returns its exit code.
func startNodeCmd(t *testing.T, args ...string) (netsetup.NodeStatus, func() int) {
	ready := filepath.Join(t.TempDir(), "node.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr string
	go func() {
		code, _, e := edgebpf(ctx, append([]string{"node", "--ready-file", ready}, args...)...)
		stderr = e
		done <- code
	}()
	require.Eventually(t, func() bool { _, err := os.Stat(ready); return err == nil }, 10*time.Second, 20*time.Millisecond)
	var st netsetup.NodeStatus
	b, err := os.ReadFile(ready)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &st))
	stopped := false
	stop := func() int {
		if stopped {
			return 0
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Log(stderr)
			}
			return code
		case <-time.After(15 * time.Second):
			t.Fatal("node did not stop")
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	return st, stop
}

// TestNodeAPISocket: by default the node's API is a root-only socket that status names;
// services and instances added through it show in status and exec, and the socket goes on exit.
func TestNodeAPISocket(t *testing.T) {
	testenv.RequirePrivileged(t)
	st, stop := startNodeCmd(t, "--names", "alpha")
	assert.Equal(t, filepath.Join(netsetup.StateDir, st.Namespace+".sock"), st.API)
	fi, err := os.Stat(st.API)
	require.NoError(t, err)
	assert.Equal(t, os.ModeSocket|0o600, fi.Mode())
	assert.EqualValues(t, 0, fi.Sys().(*syscall.Stat_t).Uid, "owned by root")
	assert.EqualValues(t, 0, fi.Sys().(*syscall.Stat_t).Gid)

	c := unixClient(st.API)
	code, out := send(t, c, "POST", "http://localhost/ebpf", "", `{"name":"counter"}`)
	require.Equal(t, 201, code, out)
	code, out = send(t, c, "POST", "http://localhost/services", "", `{"name":"gamma"}`)
	require.Equal(t, 201, code, out)
	code, out = send(t, c, "POST", "http://localhost/services/gamma/instances", "", `{"count":2}`)
	require.Equal(t, 201, code, out)
	code, out = send(t, c, "GET", "http://rebound.example/ebpf", "", "")
	assert.Equal(t, 403, code, out)

	code, sout, serr := edgebpf(context.Background(), "status", "--json")
	require.Zero(t, code, serr)
	assert.Contains(t, sout, `"gamma"`)
	assert.Contains(t, sout, `"gamma-1"`)
	code, eout, serr := edgebpf(context.Background(), "exec", "gamma/1", "--", "ip", "-o", "link", "show")
	require.Zero(t, code, serr)
	assert.Contains(t, eout, "ebv1-", "exec runs in an instance added through the API")

	code, out = send(t, c, "DELETE", "http://localhost/services/gamma/instances/gamma-1", "", "")
	require.Equal(t, 200, code, out)
	code, _, _ = edgebpf(context.Background(), "exec", "gamma/1", "--", "true")
	assert.NotZero(t, code, "the removed instance is gone")

	require.Zero(t, stop())
	_, err = os.Stat(st.API)
	assert.True(t, os.IsNotExist(err), "the socket is removed on exit")
}

// TestNodeAPITCP: on TCP every request needs the token from the root-only token file.
func TestNodeAPITCP(t *testing.T) {
	testenv.RequirePrivileged(t)
	st, stop := startNodeCmd(t, "--services", "1", "--api", "127.0.0.1:0")
	assert.True(t, strings.HasPrefix(st.API, "127.0.0.1:"), st.API)
	tokenFile := filepath.Join(netsetup.StateDir, st.Namespace+".token")
	fi, err := os.Stat(tokenFile)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode())
	assert.EqualValues(t, 0, fi.Sys().(*syscall.Stat_t).Uid)
	b, err := os.ReadFile(tokenFile)
	require.NoError(t, err)
	token := strings.TrimSpace(string(b))

	c := &http.Client{}
	url := "http://" + st.API
	code, out := send(t, c, "POST", url+"/ebpf", "", `{"name":"counter"}`)
	assert.Equal(t, 401, code, out)
	code, out = send(t, c, "POST", url+"/ebpf", "wrong", `{"name":"counter"}`)
	assert.Equal(t, 401, code, out)
	code, out = send(t, c, "POST", url+"/ebpf", token, `{"name":"counter"}`)
	assert.Equal(t, 201, code, out)
	req, _ := http.NewRequest("GET", url+"/ebpf", nil)
	req.Host = "rebound.example"
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 403, resp.StatusCode)

	require.Zero(t, stop())
	_, err = os.Stat(tokenFile)
	assert.True(t, os.IsNotExist(err), "the token file is removed on exit")
}

// TestStatusShowsCluster checks that status lists a live cluster: its underlay namespace and
// its workers, each a node with its node IP.
func TestStatusShowsCluster(t *testing.T) {
	testenv.RequirePrivileged(t)
	c := testenv.Cluster(t, netsetup.ClusterConfig{Name: "st", RateBits: 1e9}, "client@0", "server@1")
	var out, errOut bytes.Buffer
	require.NoError(t, runStatus(&out, &errOut, statusOptions{json: true}))
	var st struct {
		Nodes    []statusNode    `json:"nodes"`
		Clusters []statusCluster `json:"clusters"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &st))
	var mine *statusCluster
	for i := range st.Clusters {
		if st.Clusters[i].UnderlayNamespace == c.Underlay.Name {
			mine = &st.Clusters[i]
		}
	}
	require.NotNil(t, mine, "the cluster is listed: %s", out.String())
	assert.Equal(t, []string{"st-w0", "st-w1"}, mine.Workers)
	assert.Equal(t, uint64(1e9), mine.RateBits)
	ips := map[string]string{}
	for _, n := range st.Nodes {
		if n.Session == mine.Session {
			ips[n.Name] = n.UnderlayIP
		}
	}
	assert.Equal(t, map[string]string{"st-w0": "10.17.0.1", "st-w1": "10.17.0.2"}, ips)

	out.Reset()
	require.NoError(t, runStatus(&out, &errOut, statusOptions{}))
	assert.Regexp(t, `cluster st +underlay `+c.Underlay.Name+` ebul0 \(10.17.0.0/24, mtu 1500, shaped to 1000000000 bit/s\) +workers st-w0, st-w1`, out.String())
	require.NoError(t, c.Close())
	out.Reset()
	require.NoError(t, runStatus(&out, &errOut, statusOptions{json: true}))
	assert.NotContains(t, out.String(), c.Underlay.Name, "a closed cluster is no longer listed")
}
