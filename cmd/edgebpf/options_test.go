package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
)

// The options' validate methods check input without touching the system, so these run
// anywhere, privileged or not.

func TestNodeOptionsValidate(t *testing.T) {
	ok := nodeOptions{dataplane: "direct", services: 2, instances: 1, mtu: 1450, api: apiOptions{addr: "127.0.0.1:6000"}}
	p, err := ok.validate()
	require.NoError(t, err)
	assert.Equal(t, []string{"svc0", "svc1"}, p.services)
	assert.Equal(t, 1450, p.cfg.MTU)
	require.NotNil(t, p.plane)
	assert.Equal(t, "direct", p.plane.Name())

	named := ok
	named.names = "alpha,beta,gamma"
	p, err = named.validate()
	require.NoError(t, err)
	assert.Equal(t, []string{"alpha", "beta", "gamma"}, p.services, "--names wins over --services")

	disp := ok
	disp.dataplane, disp.chain = "ebpf", "tcx"
	p, err = disp.validate()
	require.NoError(t, err)
	assert.Equal(t, "tcx", p.plane.Settings()["chain"], "--chain reaches the ebpf data plane")

	for _, api := range []string{"", "none", "unix", "/run/x.sock", "unix:/tmp/y.sock", "127.0.0.1:0", "localhost:6000", "[::1]:6000"} {
		o := ok
		o.api.addr = api
		_, err := o.validate()
		assert.NoError(t, err, "--api %q", api)
	}
	bad := []struct {
		change func(*nodeOptions)
		want   string
	}{
		{func(o *nodeOptions) { o.services = 251 }, "--services 251 is out of range"},
		{func(o *nodeOptions) { o.instances = 0 }, "--instances 0 must be at least 1"},
		{func(o *nodeOptions) { o.dataplane = "bpf" }, `unknown data plane "bpf"`},
		{func(o *nodeOptions) { o.api.addr = "127.0.0.1:99999" }, "--api 127.0.0.1:99999: address 99999: invalid port"},
		{func(o *nodeOptions) { o.api.addr = "127.0.0.1" }, "--api 127.0.0.1: address 127.0.0.1: missing port in address"},
		{func(o *nodeOptions) { o.api.addr = "0.0.0.0:6000" }, "--api 0.0.0.0:6000 listens beyond this machine: add --api-public"},
		{func(o *nodeOptions) { o.api.addr = ":0" }, "--api :0 listens beyond this machine"},
		{func(o *nodeOptions) { o.api.addr, o.api.public = "unix", true }, "--api-public and --api-token-file apply only to --api HOST:PORT"},
		{func(o *nodeOptions) { o.chain = "xdp" }, `--chain: unknown chain mode "xdp": use tcx or dispatcher`},
	}
	for _, c := range bad {
		o := ok
		c.change(&o)
		_, err := o.validate()
		assert.ErrorContains(t, err, c.want)
	}
}

func TestServeOptionsValidate(t *testing.T) {
	o := serveOptions{mode: "ebpf", xdp: "auto", period: 1}
	_, _, err := o.validate()
	require.NoError(t, err)
	assert.Equal(t, "speedlimit", o.ownNode())

	o.node = "Big Node"
	_, _, err = o.validate()
	assert.ErrorContains(t, err, "--node: node name", "the node serve builds gets a valid name")
	o.on = "server"
	_, _, err = o.validate()
	assert.NoError(t, err, "with --on, --node names a running node: findInstance looks it up")

	o = serveOptions{mode: "mixed", xdp: "auto"}
	_, _, err = o.validate()
	assert.ErrorContains(t, err, "--period 0s must be positive")
}

func TestClientOptionsValidate(t *testing.T) {
	ok := clientOptions{leave: "each", clients: 1, requests: 1, timeout: 1, duration: 1}
	require.NoError(t, ok.validate())
	bad := ok
	bad.rate = -1
	assert.ErrorContains(t, bad.validate(), "--rate, --duration and --timeout must be positive")
	bad = ok
	bad.requests = 0
	assert.ErrorContains(t, bad.validate(), "-n and -m must be at least 1")
}

func TestRunOptionsValidate(t *testing.T) {
	ok := runOptions{experiments: []string{"latency"}, dataplanes: "direct", profile: "smoke", mtu: 1450}
	r, err := ok.validate()
	require.NoError(t, err)
	assert.Equal(t, []string{"latency"}, r.Experiments)
	assert.Equal(t, []string{"direct"}, r.DataPlanes)
	assert.Nil(t, r.Warmup, "the profile decides on the warm-up unless --warmup is given")
	assert.Nil(t, r.CPUs, "nothing pinned")

	o := ok
	o.warmupSet = true
	r, err = o.validate()
	require.NoError(t, err)
	require.NotNil(t, r.Warmup)
	assert.False(t, *r.Warmup, "--warmup=false turns the warm-up off")

	o = ok
	o.cpus[2] = "x"
	_, err = o.validate()
	assert.ErrorContains(t, err, "--cpu-proxy: ")

	o = ok
	o.chain = "tcx"
	r, err = o.validate()
	require.NoError(t, err)
	assert.Equal(t, manager.ChainTCX, r.Chain)
	o.chain = "xdp"
	_, err = o.validate()
	assert.ErrorContains(t, err, `--chain: unknown chain mode "xdp"`)
}
