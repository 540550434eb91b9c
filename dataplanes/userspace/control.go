package userspace

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/edgebpf/edgebpf/netsetup"
)

// The control protocol between the data plane (in the edgebpf process) and the proxy
// process: JSON values, one request and then one reply at a time, over a Unix socket pair.
// The first request is "init" with the proxy's Config and, on a worker of a cluster, the
// tunnel's (this worker's node IP, its peers', the overlay MTU); "event" carries one of the
// node's registry events, a remote instance's with its worker and node IP; "stats" asks for the counters. Every reply says whether the request was
// carried out (Err empty) and, for "stats", carries the counters. The proxy process exits
// when the socket closes.
const (
	opInit  = "init"
	opEvent = "event"
	opStats = "stats"
)

// request is what the data plane sends.
type request struct {
	Op     string  `json:"op"`
	Config *Config `json:"config,omitempty"`
	// Tunnel is sent with init on a worker of a cluster, and only there.
	Tunnel *tunnelConfig `json:"tunnel,omitempty"`
	Event  *wireEvent    `json:"event,omitempty"`
}

// reply is what the proxy process answers.
type reply struct {
	Err   string            `json:"err,omitempty"`
	Stats map[string]uint64 `json:"stats,omitempty"`
}

// wireEvent is a registry event as it crosses the socket: what the proxy needs of it.
type wireEvent struct {
	Kind     netsetup.EventKind `json:"kind"`
	Service  netsetup.Service   `json:"service"`
	Instance *wireInstance      `json:"instance,omitempty"`
}

// wireInstance is what the proxy knows of an instance: its service, name and addresses, and
// on a worker of a cluster the worker that runs it (node, node_ip) and whether that is
// another worker (remote).
type wireInstance struct {
	Service    string     `json:"service"`
	Name       string     `json:"name"`
	NSIP       netip.Addr `json:"ns_ip"`
	InstanceIP netip.Addr `json:"instance_ip"`
	Node       string     `json:"node,omitempty"`
	NodeIP     netip.Addr `json:"node_ip,omitzero"`
	Remote     bool       `json:"remote,omitempty"`
}

func toWire(ev netsetup.Event) *wireEvent {
	w := &wireEvent{Kind: ev.Kind, Service: ev.Service}
	if in := ev.Instance; in != nil {
		w.Instance = &wireInstance{Service: in.Service, Name: in.Name, NSIP: in.NSIP, InstanceIP: in.InstanceIP}
		w.Instance.Node, w.Instance.NodeIP, w.Instance.Remote = placement(in)
	}
	return w
}

// callTimeout bounds one request and its reply, so that a proxy process that hangs fails
// the registry change that waits for it instead of stopping the node. The proxy answers
// within microseconds; the bound is for a machine under any load.
var callTimeout = 10 * time.Second

// client is the data plane's end of the control socket. Calls are serialised: one request,
// then its reply.
type client struct {
	mu   sync.Mutex
	conn net.Conn
	enc  *json.Encoder
	dec  *json.Decoder
}

func newClient(conn net.Conn) *client {
	return &client{conn: conn, enc: json.NewEncoder(conn), dec: json.NewDecoder(conn)}
}

// call sends req and returns the reply, or why there was none.
func (c *client) call(req request) (reply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var rep reply
	_ = c.conn.SetDeadline(time.Now().Add(callTimeout))
	if err := c.enc.Encode(req); err != nil {
		return rep, fmt.Errorf("userspace proxy process: send %s: %w", req.Op, err)
	}
	if err := c.dec.Decode(&rep); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("the process is gone")
		}
		return rep, fmt.Errorf("userspace proxy process: %s: %w", req.Op, err)
	}
	if rep.Err != "" {
		return rep, errors.New(rep.Err)
	}
	return rep, nil
}

// serveControl answers the data plane's requests on rw until it closes: init (once, first)
// builds the proxy with start, events go to the proxy's registry copy and session table,
// stats returns the counters. It returns nil when the data plane closed the socket.
func serveControl(rw io.ReadWriter, start func(Config, *tunnelConfig) (*core, *mirror, error)) error {
	dec, enc := json.NewDecoder(rw), json.NewEncoder(rw)
	var c *core
	var m *mirror
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read control request: %w", err)
		}
		var rep reply
		var err error
		switch {
		case req.Op == opInit && c == nil && req.Config != nil:
			c, m, err = start(*req.Config, req.Tunnel)
		case c == nil:
			err = fmt.Errorf("control request %q before init", req.Op)
		case req.Op == opEvent && req.Event != nil:
			err = apply(c, m, req.Event)
		case req.Op == opStats:
			rep.Stats = c.stats()
		default:
			err = fmt.Errorf("unknown control request %q", req.Op)
		}
		if err != nil {
			rep.Err = err.Error()
		}
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("write control reply: %w", err)
		}
	}
}

// apply is the proxy's registry subscriber, in the proxy process: it refuses services with
// an unknown balancing policy, keeps the registry copy, ends the sessions of removed
// instances at once and forgets stale state.
func apply(c *core, m *mirror, ev *wireEvent) error {
	switch ev.Kind {
	case netsetup.ServiceCreated:
		if err := checkPolicy(ev.Service); err != nil {
			return err
		}
		m.addService(ev.Service)
	case netsetup.ServiceRemoved:
		m.removeService(ev.Service)
		c.serviceRemoved(ev.Service)
	case netsetup.InstanceCreated, netsetup.InstanceRemoved:
		if ev.Instance == nil {
			return fmt.Errorf("%s event without its instance", ev.Kind)
		}
		w := ev.Instance
		if w.Remote && !w.NodeIP.Is4() {
			return fmt.Errorf("remote instance %s without its worker's node IP", w.Name)
		}
		in := &netsetup.Instance{Service: w.Service, Name: w.Name, NSIP: w.NSIP, InstanceIP: w.InstanceIP}
		if ev.Kind == netsetup.InstanceRemoved {
			m.removeInstance(in)
			c.instanceRemoved(in)
			return nil
		}
		var node netip.Addr
		if w.Remote {
			node = w.NodeIP
		}
		if m.addInstance(ev.Service, in, node) {
			c.instanceAdded(in)
		}
	default:
		return fmt.Errorf("unknown registry event %d", ev.Kind)
	}
	return nil
}

// mirror is the proxy process's copy of the node's registry, kept by its events: the table
// query a miss makes is answered from it, without a round trip to the edgebpf process. It
// implements resolver. Adding what it holds and removing what it lacks change nothing, so
// the registry's contents at Deploy can be sent as creations while events arrive. Instance
// lists are replaced, never changed in place, so a lookup returns them without a copy.
type mirror struct {
	mu        sync.RWMutex
	services  map[string]netsetup.Service
	instances map[string][]*netsetup.Instance   // per service, in creation order
	remote    map[*netsetup.Instance]netip.Addr // instances on other workers: their node IP
}

func newMirror() *mirror {
	return &mirror{services: map[string]netsetup.Service{}, instances: map[string][]*netsetup.Instance{},
		remote: map[*netsetup.Instance]netip.Addr{}}
}

func (m *mirror) addService(s netsetup.Service) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.services[s.Name] = s
}

func (m *mirror) removeService(s netsetup.Service) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.services, s.Name)
	for _, in := range m.instances[s.Name] {
		delete(m.remote, in)
	}
	delete(m.instances, s.Name)
}

// addInstance adds in to its service (created if the copy lacks it, as the registry sends
// the service with the event) and says whether it was new. node is the node IP of the
// worker that runs it when that is another worker, else invalid.
func (m *mirror) addInstance(svc netsetup.Service, in *netsetup.Instance, node netip.Addr) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.services[in.Service]; !ok && svc.Name == in.Service {
		m.services[svc.Name] = svc
	}
	old := m.instances[in.Service]
	if slices.ContainsFunc(old, func(x *netsetup.Instance) bool { return x.NSIP == in.NSIP }) {
		return false
	}
	m.instances[in.Service] = append(slices.Clip(old), in)
	if node.IsValid() {
		m.remote[in] = node
	}
	return true
}

func (m *mirror) removeInstance(in *netsetup.Instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.instances[in.Service]
	m.instances[in.Service] = slices.DeleteFunc(slices.Clone(old), func(x *netsetup.Instance) bool {
		if x.NSIP != in.NSIP {
			return false
		}
		delete(m.remote, x)
		return true
	})
}

// RemoteNode returns the node IP of the worker that runs in, when that is another worker.
func (m *mirror) RemoteNode(in *netsetup.Instance) (netip.Addr, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	node, ok := m.remote[in]
	return node, ok
}

// ByServiceIP resolves a service IP to its service and instances. The slice is shared:
// callers do not change it.
func (m *mirror) ByServiceIP(ip netip.Addr) (netsetup.Service, []*netsetup.Instance, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for name, s := range m.services {
		if s.IP == ip {
			return s, m.instances[name], true
		}
	}
	return netsetup.Service{}, nil, false
}

// ByInstanceIP resolves an instance IP to its instance.
func (m *mirror) ByInstanceIP(ip netip.Addr) (*netsetup.Instance, bool) {
	return m.find(func(in *netsetup.Instance) bool { return in.InstanceIP == ip })
}

// ByNamespaceIP resolves a namespace IP to its instance.
func (m *mirror) ByNamespaceIP(ip netip.Addr) (*netsetup.Instance, bool) {
	return m.find(func(in *netsetup.Instance) bool { return in.NSIP == ip })
}

func (m *mirror) find(match func(*netsetup.Instance) bool) (*netsetup.Instance, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, ins := range m.instances {
		for _, in := range ins {
			if match(in) {
				return in, true
			}
		}
	}
	return nil, false
}
