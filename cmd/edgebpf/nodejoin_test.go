package main

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

func TestJoinOptions(t *testing.T) {
	ok := nodeOptions{dataplane: "direct", names: "client,server", instances: 1, mtu: 1450, api: apiOptions{addr: "none"},
		join: joinOptions{underlay: "eth1", underlayIP: "10.10.1.102/24", worker: 1, cluster: "c", peerWait: 1,
			peers: []string{"0=10.10.1.101", "c-w2=10.10.1.103"}, placement: []string{"client@0", "server@2"}}}
	p, err := ok.validate()
	require.NoError(t, err)
	require.NotNil(t, p.join)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.10.1.101"), netip.MustParseAddr("10.10.1.102"), netip.MustParseAddr("10.10.1.103")}, p.join.NodeIPs)
	assert.Equal(t, []netsetup.Placement{{Service: "client", Worker: 0}, {Service: "server", Worker: 2}}, p.join.Placement)

	all := ok
	all.join.placement = nil
	p, err = all.validate()
	require.NoError(t, err)
	assert.Len(t, p.join.Placement, 6, "without --placement: every service on every worker")

	plain := ok
	plain.join = joinOptions{cluster: "c", peerWait: 1}
	p, err = plain.validate()
	require.NoError(t, err)
	assert.Nil(t, p.join, "a standalone node")

	for _, c := range []struct {
		change func(*joinOptions)
		want   string
	}{
		{func(j *joinOptions) { j.underlay = "" }, "need --underlay IFACE"},
		{func(j *joinOptions) { j.underlayIP = "10.10.1.102" }, "is not ADDRESS/PREFIX"},
		{func(j *joinOptions) { j.worker = 3 }, "--worker 3 does not exist: with 2 --peer the workers are 0 to 2"},
		{func(j *joinOptions) { j.peers = []string{"0=10.10.1.101", "5=10.10.1.103"} }, `--peer "5=10.10.1.103" names no worker`},
		{func(j *joinOptions) { j.peers = []string{"0=10.10.1.101", "1=10.10.1.103"} }, "is this host's own worker 1"},
		{func(j *joinOptions) { j.peers = []string{"0=10.10.1.101", "0=10.10.1.103"} }, "names worker 0 twice"},
		{func(j *joinOptions) { j.peers = []string{"0=host-a", "2=10.10.1.103"} }, "is not INDEX=ADDRESS"},
		{func(j *joinOptions) { j.peers = []string{"0=10.10.2.101", "2=10.10.1.103"} }, "node IP 10.10.2.101 of c-w0 is not on the underlay 10.10.1.0/24"},
		{func(j *joinOptions) { j.placement = []string{"client@3"} }, "placement client@3 names an unknown worker"},
		{func(j *joinOptions) { j.placement = []string{"db@0"} }, "placement db@0 names an unknown service"},
		{func(j *joinOptions) { j.placement = []string{"db"} }, "is not SERVICE@WORKER"},
		{func(j *joinOptions) { j.peerWait = 0 }, "--peer-wait 0s must be positive"},
	} {
		o := ok
		c.change(&o.join)
		_, err := o.validate()
		assert.ErrorContains(t, err, c.want)
		var ee *exitError
		if assert.ErrorAs(t, err, &ee) {
			assert.Equal(t, 2, ee.code, c.want)
		}
	}
}

// TestJoinMissingInterfaceExitsTwo runs the command: a missing interface is one sentence and
// exit 2, and nothing is left behind (the package's leak check).
func TestJoinMissingInterfaceExitsTwo(t *testing.T) {
	testenv.RequirePrivileged(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), strings.Fields("node --api none --underlay ebnosuch0 --underlay-ip 10.10.1.101/24 --peer 1=10.10.1.102"), &out, &errOut)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut.String(), `underlay interface "ebnosuch0" does not exist on this host`)
	assert.Equal(t, 1, strings.Count(strings.TrimSpace(errOut.String()), "\n")+1, "one line: %s", errOut.String())
}
