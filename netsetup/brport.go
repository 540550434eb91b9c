package netsetup

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// brForwarding is a bridge port's state when it forwards (BR_STATE_FORWARDING).
const brForwarding = 3

// portReadyTimeout bounds the wait for a new bridge port to forward. The kernel enables a
// port when it processes the link's carrier event, normally within a second; the bound is
// for a machine under any load.
var portReadyTimeout = 10 * time.Second

// bridgePortStates returns the state of every bridge port in ns, by interface index.
func bridgePortStates(ns *Namespace) (map[int]uint8, error) {
	states := map[int]uint8{}
	err := ns.Do(func() error {
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
		req.AddData(nl.NewIfInfomsg(unix.AF_BRIDGE))
		msgs, err := req.Execute(unix.NETLINK_ROUTE, 0)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return fmt.Errorf("list bridge ports in %s: %w", ns.Name, err)
		}
		for _, m := range msgs {
			info := nl.DeserializeIfInfomsg(m)
			attrs, err := nl.ParseRouteAttr(m[info.Len():])
			if err != nil {
				return fmt.Errorf("bridge port %d in %s: %w", info.Index, ns.Name, err)
			}
			for _, a := range attrs {
				if a.Attr.Type&^unix.NLA_F_NESTED != unix.IFLA_PROTINFO {
					continue
				}
				port, err := nl.ParseRouteAttr(a.Value)
				if err != nil {
					return fmt.Errorf("bridge port %d in %s: %w", info.Index, ns.Name, err)
				}
				for _, p := range port {
					if p.Attr.Type == nl.IFLA_BRPORT_STATE && len(p.Value) == 1 {
						states[int(info.Index)] = p.Value[0]
					}
				}
			}
		}
		return nil
	})
	return states, err
}

// waitForwarding waits until the bridge ports named in ns forward. A port added to a bridge
// and set up does not forward until the kernel has processed its carrier event, which it
// may batch for up to a second (it does for a veth whose two ends have the same index in
// their namespaces, as a worker's first underlay link has): frames sent before then, such
// as the first ARP request to another worker, are dropped.
func waitForwarding(ns *Namespace, ports ...string) error {
	h, err := ns.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	index := map[int]string{}
	for _, name := range ports {
		l, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find bridge port %s in %s: %w", name, ns.Name, err)
		}
		index[l.Attrs().Index] = name
	}
	deadline := time.Now().Add(portReadyTimeout)
	for {
		states, err := bridgePortStates(ns)
		if err != nil {
			return err
		}
		var waiting []string
		for i, name := range index {
			if states[i] != brForwarding {
				waiting = append(waiting, name)
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			slices.Sort(waiting)
			return fmt.Errorf("bridge ports %v in %s do not forward %v after they were set up", waiting, ns.Name, portReadyTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
