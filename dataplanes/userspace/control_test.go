package userspace

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/netsetup"
)

// controlPair serves the control protocol on one end of a pipe, with a core over a registry
// copy and no device, and returns the other end, a client on it, the core and copy once init
// has built them, and a channel with serveControl's result.
func controlPair(t *testing.T) (net.Conn, *client, func() (*core, *mirror), <-chan error) {
	a, b := net.Pipe()
	var c *core
	var m *mirror
	done := make(chan error, 1)
	go func() {
		done <- serveControl(b, func(cfg Config, _ *tunnelConfig) (*core, *mirror, error) {
			if err := cfg.validate(); err != nil {
				return nil, nil, err
			}
			m = newMirror()
			c = newCore(cfg, m)
			return c, m, nil
		})
	}()
	t.Cleanup(func() { a.Close() })
	return a, newClient(a), func() (*core, *mirror) { return c, m }, done
}

// sendRegistry sends the fake registry's services and instances as creations.
func sendRegistry(t *testing.T, cl *client, r *fakeRegistry) {
	for _, svc := range r.services {
		_, err := cl.call(request{Op: opEvent, Event: toWire(netsetup.Event{Kind: netsetup.ServiceCreated, Service: svc})})
		require.NoError(t, err)
		for _, in := range r.instances[svc.Name] {
			_, err := cl.call(request{Op: opEvent, Event: toWire(netsetup.Event{Kind: netsetup.InstanceCreated, Service: svc, Instance: in})})
			require.NoError(t, err)
		}
	}
}

// TestControlProtocol drives the proxy process's side of the control socket as Deploy does:
// init, the registry's contents (sent twice, as when events race with the snapshot), traffic
// resolved from the copy, an instance removed, the counters, and the end of the socket.
func TestControlProtocol(t *testing.T) {
	conn, cl, built, done := controlPair(t)
	_, err := cl.call(request{Op: opStats})
	assert.ErrorContains(t, err, "before init")
	bad := DefaultConfig
	bad.UDPIdle = 0
	_, err = cl.call(request{Op: opInit, Config: &bad})
	assert.ErrorContains(t, err, "timeouts must be positive")
	cfg := DefaultConfig
	_, err = cl.call(request{Op: opInit, Config: &cfg})
	require.NoError(t, err)

	reg := newFakeRegistry()
	sendRegistry(t, cl, reg)
	sendRegistry(t, cl, reg) // creations the copy holds change nothing
	c, m := built()
	_, ins, ok := m.ByServiceIP(reg.services[1].IP)
	require.True(t, ok)
	require.Len(t, ins, 2, "each instance once")

	tc := &testCore{core: c, reg: reg, out: make([]byte, replySize)}
	syn := func(port uint16) []byte {
		return tc.pass(build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: port, dport: 7400, flags: "S"}))
	}
	var got []string
	for i := range 4 {
		got = append(got, decode(t, syn(uint16(41000+i))).ip.DstIP.String())
	}
	assert.Equal(t, []string{server0NS, server1NS, server0NS, server1NS}, got, "misses resolved from the copy, round-robin")

	server1 := reg.instances["server"][1]
	ev := netsetup.Event{Kind: netsetup.InstanceRemoved, Service: reg.services[1], Instance: server1}
	_, err = cl.call(request{Op: opEvent, Event: toWire(ev)})
	require.NoError(t, err)
	_, err = cl.call(request{Op: opEvent, Event: toWire(ev)})
	require.NoError(t, err, "removing what the copy lacks changes nothing")
	for i := range 2 {
		assert.Equal(t, server0NS, decode(t, syn(uint16(42000+i))).ip.DstIP.String(), "new sessions avoid the removed instance")
	}
	ack := build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 41001, dport: 7400, flags: "A"})
	assert.True(t, decode(t, tc.pass(ack)).tcp.RST, "a session to the removed instance is refused at once")

	rep, err := cl.call(request{Op: opStats})
	require.NoError(t, err)
	assert.Equal(t, uint64(6), rep.Stats["sessions_created"])
	assert.Equal(t, uint64(1), rep.Stats["refused_dead_session"])

	_, err = cl.call(request{Op: "reboot"})
	assert.ErrorContains(t, err, `unknown control request "reboot"`)
	_, err = cl.call(request{Op: opEvent, Event: &wireEvent{Kind: netsetup.InstanceCreated, Service: reg.services[1]}})
	assert.ErrorContains(t, err, "without its instance")
	_, err = cl.call(request{Op: opEvent, Event: toWire(netsetup.Event{Kind: netsetup.ServiceCreated, Service: netsetup.Service{Name: "x", Balancing: "random"}})})
	assert.ErrorContains(t, err, `balancing "random"`)

	require.NoError(t, conn.Close())
	assert.NoError(t, <-done, "the proxy's side ends when the data plane hangs up")
}

// TestControlSocketClosed checks that the proxy's side ends cleanly when the data plane
// hangs up, and that the data plane's calls then fail with one clear sentence.
func TestControlSocketClosed(t *testing.T) {
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- serveControl(b, func(Config, *tunnelConfig) (*core, *mirror, error) { return nil, nil, nil })
	}()
	require.NoError(t, a.Close())
	assert.NoError(t, <-done)

	c, d := net.Pipe()
	require.NoError(t, d.Close())
	_, err := newClient(c).call(request{Op: opStats})
	assert.ErrorContains(t, err, "userspace proxy process")
}

// TestControlCallTimesOut checks that a proxy process that never answers fails the call
// rather than hanging the registry change that waits for it.
func TestControlCallTimesOut(t *testing.T) {
	old := callTimeout
	callTimeout = 50 * time.Millisecond
	t.Cleanup(func() { callTimeout = old })
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	_, err := newClient(a).call(request{Op: opStats}) // nobody reads b
	assert.ErrorContains(t, err, "userspace proxy process: send stats")
}
