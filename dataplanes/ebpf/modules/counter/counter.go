// Package counter is the packet counter module of the eBPF manager: per service instance and
// direction, packets and bytes in per-CPU counters summed on read.
//
// Directions are named from the service's point of view: "egress" counts what the instance
// sends (the TC ingress hook of its bridge-side veth), "ingress" what it receives (the TC
// egress hook).
package counter

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/netsetup"
)

// Factory creates a counter for the manager; dataplanes/ebpf/modules lists it as "counter".
// The counter ignores the node.
func Factory(_ *netsetup.Node, config json.RawMessage, load manager.Load) (manager.Module, error) {
	return newCounter(config, load)
}

// Hooks as counter.c numbers them.
const (
	hookIngress = 0 // TC ingress of the bridge-side veth: the service sends
	hookEgress  = 1 // TC egress: the service receives
)

// Counter is a loaded packet counter.
type Counter struct {
	objs counterObjects

	mu     sync.Mutex
	ifaces map[uint32]*netsetup.Instance
}

// New loads the counter's programs and maps. It takes no configuration: config must be
// empty, null or {}.
func New(config json.RawMessage) (*Counter, error) { return newCounter(config, manager.LoadTCX) }

func newCounter(config json.RawMessage, load manager.Load) (*Counter, error) {
	if err := emptyConfig(config); err != nil {
		return nil, err
	}
	c := &Counter{ifaces: map[uint32]*netsetup.Instance{}}
	spec, err := loadCounter()
	if err != nil {
		return nil, fmt.Errorf("load counter spec: %w", err)
	}
	if err := load(spec, &c.objs); err != nil {
		return nil, fmt.Errorf("load counter programs: %w", err)
	}
	return c, nil
}

func emptyConfig(config json.RawMessage) error {
	if len(config) == 0 || string(config) == "null" {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(config, &m); err != nil || len(m) > 0 {
		return fmt.Errorf("%w: the counter takes no configuration: send {} or leave config out", manager.ErrBadConfig)
	}
	return nil
}

// Programs returns the two counting programs.
func (c *Counter) Programs() (ingress, egress *ebpf.Program) {
	return c.objs.CounterIn, c.objs.CounterOut
}

// Attached creates the instance's counters. A full map is an error.
func (c *Counter) Attached(in *netsetup.Instance) error {
	zero := make([]counterCounterValue, ebpf.MustPossibleCPU())
	for _, hook := range []uint32{hookIngress, hookEgress} {
		key := counterCounterKey{Ifindex: uint32(in.VethIndex), Hook: hook}
		if err := c.objs.CounterCounts.Update(&key, zero, ebpf.UpdateAny); err != nil {
			c.remove(uint32(in.VethIndex))
			if errors.Is(err, unix.E2BIG) {
				return fmt.Errorf("counter map is full (%d entries): delete instances or the module", c.objs.CounterCounts.MaxEntries())
			}
			return fmt.Errorf("create counters for %s: %w", in.Veth, err)
		}
	}
	c.mu.Lock()
	c.ifaces[uint32(in.VethIndex)] = in
	c.mu.Unlock()
	return nil
}

// Detached deletes the instance's counters.
func (c *Counter) Detached(in *netsetup.Instance) {
	c.remove(uint32(in.VethIndex))
	c.mu.Lock()
	delete(c.ifaces, uint32(in.VethIndex))
	c.mu.Unlock()
}

func (c *Counter) remove(ifindex uint32) {
	for _, hook := range []uint32{hookIngress, hookEgress} {
		key := counterCounterKey{Ifindex: ifindex, Hook: hook}
		_ = c.objs.CounterCounts.Delete(&key)
	}
}

// Count is packets and bytes in one direction.
type Count struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Counts are one instance's counts, directions from the service's point of view.
type Counts struct {
	Instance string `json:"instance"`
	Ingress  Count  `json:"ingress"` // received by the service
	Egress   Count  `json:"egress"`  // sent by the service
}

// Read sums the per-CPU counters of every attached instance, keyed by bridge-side veth name.
func (c *Counter) Read() (map[string]Counts, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]Counts{}
	var values []counterCounterValue
	for idx, in := range c.ifaces {
		cs := Counts{Instance: in.Name}
		for _, hook := range []uint32{hookIngress, hookEgress} {
			key := counterCounterKey{Ifindex: idx, Hook: hook}
			if err := c.objs.CounterCounts.Lookup(&key, &values); err != nil {
				return nil, fmt.Errorf("read counters of %s: %w", in.Veth, err)
			}
			var sum Count
			for _, v := range values {
				sum.Packets += v.Packets
				sum.Bytes += v.Bytes
			}
			if hook == hookIngress {
				cs.Egress = sum
			} else {
				cs.Ingress = sum
			}
		}
		out[in.Veth] = cs
	}
	return out, nil
}

// Routes serves GET /counts.
func (c *Counter) Routes() []manager.Route {
	return []manager.Route{{
		Method: "GET", Pattern: "/counts",
		Summary: "packets and bytes per bridge-side veth; ingress = received by the service, egress = sent by it",
		Handler: func(w http.ResponseWriter, r *http.Request) {
			counts, err := c.Read()
			if err != nil {
				manager.WriteError(w, http.StatusInternalServerError, err)
				return
			}
			manager.WriteJSON(w, http.StatusOK, counts)
		},
	}}
}

// Config is empty: the counter has nothing to configure.
func (c *Counter) Config() any { return struct{}{} }

// Close releases programs and maps.
func (c *Counter) Close() error { return c.objs.Close() }
