// Package firewall is the firewall module of the eBPF manager: an allow list of rules matching
// protocol (tcp, udp, icmp), source and destination IPv4 prefix and port ranges, applied on
// both TC hooks of every instance's bridge-side veth, including instances created after a rule.
//
// Unmatched TCP, UDP and ICMP get the configured default ("drop", the thesis's behaviour, or
// "pass"); other IPv4 protocols and non-IPv4 frames (ARP, IPv6) always pass, so the firewall
// never breaks address resolution. A malformed IPv4 frame counts as unmatched.
//
// Replies: the firewall tracks connections. A packet a rule allows records its flow in both
// directions (an LRU table shared by every attachment, entries forgotten after flow_timeout of
// silence), so replies pass without a rule of their own, while the other side still cannot
// open connections. Deleting a rule forgets every tracked flow, so it takes effect at once;
// flows other rules allow are re-learned from their next forward packet.
//
// Note: stateless symmetric rules (a rule also matching with source and destination swapped)
// were rejected: they would let the server side open connections to the client as well.
package firewall

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/netsetup"
)

// Factory creates a firewall for the manager; dataplanes/ebpf/modules lists it as "firewall".
// The firewall ignores the node.
func Factory(_ *netsetup.Node, config json.RawMessage, load manager.Load) (manager.Module, error) {
	return newFirewall(config, load)
}

// MaxRules is the size of the rule table (MAX_RULES in firewall.c).
const MaxRules = 256

// Config is the firewall's configuration.
type Config struct {
	Default     string `json:"default"`      // "drop" (default) or "pass" for unmatched tcp/udp/icmp
	FlowTimeout string `json:"flow_timeout"` // idle time after which a flow is forgotten, default "120s"
}

// Firewall is a loaded firewall module.
type Firewall struct {
	cfg  Config
	objs firewallObjects

	mu     sync.Mutex
	rules  []Rule
	nextID int
	active uint32
}

// New validates the configuration and loads the programs with it.
func New(raw json.RawMessage) (*Firewall, error) { return newFirewall(raw, manager.LoadTCX) }

func newFirewall(raw json.RawMessage, load manager.Load) (*Firewall, error) {
	cfg := Config{Default: "drop", FlowTimeout: "120s"}
	if len(raw) > 0 && string(raw) != "null" {
		if err := manager.StrictJSON(raw, &cfg); err != nil {
			return nil, fmt.Errorf("%w: %w", manager.ErrBadConfig, err)
		}
	}
	var c firewallFwConfig
	switch cfg.Default {
	case "drop":
		c.DefaultDrop = 1
	case "pass":
	default:
		return nil, fmt.Errorf("%w: default %q is neither drop nor pass", manager.ErrBadConfig, cfg.Default)
	}
	timeout, err := time.ParseDuration(cfg.FlowTimeout)
	if err != nil || timeout < time.Second {
		return nil, fmt.Errorf("%w: flow_timeout %q is not a duration of at least 1s, such as \"120s\"", manager.ErrBadConfig, cfg.FlowTimeout)
	}
	c.FlowTimeoutNs = uint64(timeout)

	spec, err := loadFirewall()
	if err != nil {
		return nil, fmt.Errorf("load firewall spec: %w", err)
	}
	if err := spec.Variables["config"].Set(c); err != nil {
		return nil, fmt.Errorf("configure firewall: %w", err)
	}
	f := &Firewall{cfg: cfg, nextID: 1}
	if err := load(spec, &f.objs); err != nil {
		return nil, fmt.Errorf("load firewall programs: %w", err)
	}
	return f, nil
}

// Programs returns the filter for both hooks.
func (f *Firewall) Programs() (ingress, egress *ebpf.Program) {
	return f.objs.FirewallIn, f.objs.FirewallOut
}

// Attached needs nothing: rules are shared by every attachment.
func (f *Firewall) Attached(*netsetup.Instance) error { return nil }

// Detached needs nothing.
func (f *Firewall) Detached(*netsetup.Instance) {}

// Config returns the effective configuration.
func (f *Firewall) Config() any { return f.cfg }

// Close releases programs and maps.
func (f *Firewall) Close() error { return f.objs.Close() }

// Rules returns the installed rules in order.
func (f *Firewall) Rules() []Rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Rule{}, f.rules...)
}

// ErrFull is returned when the rule table has no room.
var ErrFull = fmt.Errorf("the rule table is full (%d rules): delete rules first", MaxRules)

// Add installs rules atomically: all or none.
func (f *Firewall) Add(reqs ...RuleRequest) ([]Rule, error) {
	var added []Rule
	var errs []error
	for i, r := range reqs {
		rule, err := r.validate()
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %d: %w", i, err))
		}
		added = append(added, rule)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.rules)+len(added) > MaxRules {
		return nil, ErrFull
	}
	for i := range added {
		added[i].ID = f.nextID + i
	}
	if err := f.publish(append(slices.Clone(f.rules), added...)); err != nil {
		return nil, err
	}
	f.nextID += len(added)
	return added, nil
}

// Delete removes a rule and forgets every tracked flow.
func (f *Firewall) Delete(id int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.rules, func(r Rule) bool { return r.ID == id })
	if i < 0 {
		return fmt.Errorf("%w %d", errNoRule, id)
	}
	if err := f.publish(slices.Delete(slices.Clone(f.rules), i, i+1)); err != nil {
		return err
	}
	return f.flushFlows()
}

var errNoRule = errors.New("no rule with id")

// publish writes rules to the inactive half of the table and then makes it active, so that
// packets see the old rule set or the new one, never a mix. f.rules changes only on success.
func (f *Firewall) publish(rules []Rule) error {
	half := f.active ^ 1
	for i, r := range rules {
		idx := half*MaxRules + uint32(i)
		v := r.bpf()
		if err := f.objs.FwRules.Update(idx, &v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write rule %d: %w", r.ID, err)
		}
	}
	if err := f.objs.FwRuleCount.Update(half, uint32(len(rules)), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write rule count: %w", err)
	}
	if err := f.objs.FwActive.Update(uint32(0), half, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("switch rule table: %w", err)
	}
	f.active = half
	f.rules = rules
	return nil
}

func (f *Firewall) flushFlows() error {
	var keys []firewallFlowKey
	var k firewallFlowKey
	var v uint64
	it := f.objs.FwFlows.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list tracked flows: %w", err)
	}
	for _, key := range keys {
		_ = f.objs.FwFlows.Delete(&key) // an entry the LRU evicted meanwhile is fine
	}
	return nil
}

// Stats are the firewall's verdict counters, summed over CPUs.
type Stats struct {
	AllowedByRule uint64 `json:"allowed_by_rule"`
	AllowedByFlow uint64 `json:"allowed_by_flow"`
	Dropped       uint64 `json:"dropped"`
	PassedDefault uint64 `json:"passed_by_default"`
	PassedOther   uint64 `json:"passed_other_protocol"`
}

// Stats reads the verdict counters.
func (f *Firewall) Stats() (Stats, error) {
	var sums [5]uint64
	var vals []uint64
	for i := range sums {
		if err := f.objs.FwStats.Lookup(uint32(i), &vals); err != nil {
			return Stats{}, fmt.Errorf("read firewall stats: %w", err)
		}
		for _, v := range vals {
			sums[i] += v
		}
	}
	return Stats{AllowedByRule: sums[0], AllowedByFlow: sums[1], Dropped: sums[2], PassedOther: sums[3], PassedDefault: sums[4]}, nil
}

// Routes serves the rule API.
func (f *Firewall) Routes() []manager.Route {
	add := func(many bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var reqs []RuleRequest
			if many {
				if !manager.DecodeJSON(w, r, &reqs) {
					return
				}
			} else {
				var one RuleRequest
				if !manager.DecodeJSON(w, r, &one) {
					return
				}
				reqs = []RuleRequest{one}
			}
			added, err := f.Add(reqs...)
			switch {
			case errors.Is(err, ErrFull):
				manager.WriteError(w, http.StatusConflict, err)
			case err != nil:
				manager.WriteError(w, http.StatusBadRequest, err)
			case many:
				manager.WriteJSON(w, http.StatusCreated, added)
			default:
				manager.WriteJSON(w, http.StatusCreated, added[0])
			}
		}
	}
	return []manager.Route{
		{Method: "POST", Pattern: "/rule", Summary: "add one allow rule {proto, srcIp, dstIp, srcPort, dstPort}", Handler: add(false)},
		{Method: "POST", Pattern: "/rules", Summary: "add a list of allow rules, all or none", Handler: add(true)},
		{Method: "GET", Pattern: "/rules", Summary: "the installed rules in order", Handler: func(w http.ResponseWriter, r *http.Request) {
			manager.WriteJSON(w, http.StatusOK, f.Rules())
		}},
		{Method: "DELETE", Pattern: "/rules/{rid}", Summary: "delete one rule; tracked flows are forgotten", Handler: func(w http.ResponseWriter, r *http.Request) {
			id, err := strconv.Atoi(r.PathValue("rid"))
			if err != nil || id < 1 {
				manager.WriteError(w, http.StatusBadRequest, fmt.Errorf("rule id %q is not a positive integer", r.PathValue("rid")))
				return
			}
			if err := f.Delete(id); err != nil {
				status := http.StatusInternalServerError
				if errors.Is(err, errNoRule) {
					status = http.StatusNotFound
				}
				manager.WriteError(w, status, err)
				return
			}
			manager.WriteJSON(w, http.StatusOK, map[string]any{"deleted": id})
		}},
		manager.StatsRoute("verdict counters", f.Stats),
	}
}
