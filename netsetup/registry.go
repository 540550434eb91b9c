package netsetup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
)

// Service is a service deployed on a node, reachable through its service IP.
type Service struct {
	Name string
	IP   netip.Addr
	// Balancing is how a proxy spreads new sessions to the service IP over its instances.
	// Only RoundRobin exists today; the field is there so random and consistent-hash
	// policies can be added per service.
	Balancing string
}

// RoundRobin sends each new session to the next instance in turn (really in turn: the
// thesis's prototype drew at random).
const RoundRobin = "round-robin"

// Instance is one replica of a service: a namespace joined to the node's bridge by a veth
// pair. Its fields do not change after creation.
type Instance struct {
	Service    string
	Index      int
	Name       string // <service>-<index>
	NS         *Namespace
	NSIP       netip.Addr // the address on the instance's interface
	InstanceIP netip.Addr // Oakestra's per-instance service IP, translated by the proxies
	Veth       string     // bridge-side veth, in the node namespace (where eBPF modules attach)
	VethIndex  int        // ifindex of Veth in the node namespace
	Peer       string     // namespace-side veth
	MAC        net.HardwareAddr
	// Node is the worker hosting the instance; NodeIP that worker's address on the cluster's
	// underlay (invalid on a standalone node).
	Node   string
	NodeIP netip.Addr
	remote bool
}

// Remote says the instance runs on another worker of the cluster: this worker's registry
// knows it (as Oakestra's table does) but it has no namespace, veth or MAC here.
func (in *Instance) Remote() bool { return in.remote }

// EventKind says what changed in a registry.
type EventKind int

// The registry's events.
const (
	ServiceCreated EventKind = iota
	ServiceRemoved
	InstanceCreated
	InstanceRemoved
)

func (k EventKind) String() string {
	return [...]string{"service created", "service removed", "instance created", "instance removed"}[k]
}

func (k EventKind) inverse() EventKind {
	return [...]EventKind{ServiceRemoved, ServiceCreated, InstanceRemoved, InstanceCreated}[k]
}

// Event is a change in the registry. Instance is nil for service events.
type Event struct {
	Kind     EventKind
	Service  Service
	Instance *Instance
}

// Registry maps services to their instances on one node; it plays the role of Oakestra's
// table query. Data planes subscribe to its events. Events are delivered synchronously, in
// order, one at a time; a handler may query the registry but must not change it.
type Registry struct {
	mu       sync.RWMutex
	services map[string]*entry
	order    []string

	subMu  sync.Mutex
	subs   []*subscriber
	nextID int
}

type entry struct {
	svc       Service
	instances []*Instance
}

type subscriber struct {
	id int
	fn func(Event) error
}

func newRegistry() *Registry { return &Registry{services: map[string]*entry{}} }

// Subscribe registers fn for every later event and returns a function that unsubscribes.
// When fn returns an error for a creation, the change is rolled back: subscribers that had
// accepted it are sent the matching removal, and the caller that made the change gets the
// error.
func (r *Registry) Subscribe(fn func(Event) error) (cancel func()) {
	r.subMu.Lock()
	defer r.subMu.Unlock()
	r.nextID++
	id := r.nextID
	r.subs = append(r.subs, &subscriber{id: id, fn: fn})
	return func() {
		r.subMu.Lock()
		defer r.subMu.Unlock()
		r.subs = slices.DeleteFunc(r.subs, func(s *subscriber) bool { return s.id == id })
	}
}

// notify delivers ev. For a creation that a subscriber refuses, the subscribers that had
// accepted it get the inverse event and the refusal is returned. Removals are delivered to
// every subscriber and their errors joined.
func (r *Registry) notify(ev Event) error {
	r.subMu.Lock()
	defer r.subMu.Unlock()
	creation := ev.Kind == ServiceCreated || ev.Kind == InstanceCreated
	var errs []error
	for i, s := range r.subs {
		err := s.fn(ev)
		if err == nil {
			continue
		}
		if !creation {
			errs = append(errs, err)
			continue
		}
		undo := ev
		undo.Kind = ev.Kind.inverse()
		for _, prev := range r.subs[:i] {
			errs = append(errs, prev.fn(undo))
		}
		return errors.Join(append([]error{fmt.Errorf("%s %s: %w", ev.Kind, ev.name(), err)}, errs...)...)
	}
	return errors.Join(errs...)
}

func (ev Event) name() string {
	if ev.Instance != nil {
		return ev.Instance.Name
	}
	return ev.Service.Name
}

// Services returns the services in creation order.
func (r *Registry) Services() []Service {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Service, 0, len(r.order))
	for _, n := range r.order {
		out = append(out, r.services[n].svc)
	}
	return out
}

// Service returns the service called name.
func (r *Registry) Service(name string) (Service, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.services[name]
	if !ok {
		return Service{}, false
	}
	return e.svc, true
}

// Instances returns a copy of the named service's instance list, in creation order.
func (r *Registry) Instances(service string) []*Instance {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e, ok := r.services[service]; ok {
		return slices.Clone(e.instances)
	}
	return nil
}

// ByServiceIP resolves a round-robin service IP to its service and instances: the table query.
func (r *Registry) ByServiceIP(ip netip.Addr) (Service, []*Instance, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, e := range r.services {
		if e.svc.IP == ip {
			return e.svc, slices.Clone(e.instances), true
		}
	}
	return Service{}, nil, false
}

// ByInstanceIP resolves an instance IP to its instance.
func (r *Registry) ByInstanceIP(ip netip.Addr) (*Instance, bool) {
	return r.findInstance(func(in *Instance) bool { return in.InstanceIP == ip })
}

// ByNamespaceIP resolves a namespace IP to its instance.
func (r *Registry) ByNamespaceIP(ip netip.Addr) (*Instance, bool) {
	return r.findInstance(func(in *Instance) bool { return in.NSIP == ip })
}

func (r *Registry) findInstance(match func(*Instance) bool) (*Instance, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, e := range r.services {
		for _, in := range e.instances {
			if match(in) {
				return in, true
			}
		}
	}
	return nil, false
}

func (r *Registry) addService(s Service) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.services[s.Name]; ok {
		return fmt.Errorf("service %s already exists", s.Name)
	}
	r.services[s.Name] = &entry{svc: s}
	r.order = append(r.order, s.Name)
	return nil
}

func (r *Registry) removeService(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.services, name)
	r.order = slices.DeleteFunc(r.order, func(n string) bool { return n == name })
}

func (r *Registry) addInstance(in *Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.services[in.Service]
	e.instances = append(e.instances, in)
}

func (r *Registry) removeInstance(in *Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.services[in.Service]; ok {
		e.instances = slices.DeleteFunc(e.instances, func(x *Instance) bool { return x == in })
	}
}
