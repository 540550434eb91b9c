package direct

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/netsetup"
)

// peerRoutes are the routes a worker's namespace gets to its peers' subnets: each via the
// peer's node IP on the underlay link. It remembers what it installed, so removal takes
// exactly those.
type peerRoutes struct {
	ns        *netsetup.Namespace
	link      int // the underlay link's index in the worker namespace
	installed []*netlink.Route
}

// add installs a route per peer; on error, those already installed are removed again.
func (r *peerRoutes) add(peers []netsetup.Peer) error {
	h, err := r.ns.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	for _, p := range peers {
		sub := p.Subnet.Masked()
		rt := &netlink.Route{
			LinkIndex: r.link,
			Dst:       &net.IPNet{IP: sub.Addr().AsSlice(), Mask: net.CIDRMask(sub.Bits(), 32)},
			Gw:        p.IP.AsSlice(),
		}
		if err := h.RouteAdd(rt); err != nil {
			if errors.Is(err, unix.EEXIST) {
				err = fmt.Errorf("a route to %s already exists in %s: is another data plane routing between the workers?", sub, r.ns.Name)
			}
			err = fmt.Errorf("route %s via %s (%s): %w", sub, p.IP, p.Name, err)
			return errors.Join(err, r.remove())
		}
		r.installed = append(r.installed, rt)
	}
	return nil
}

// remove deletes the installed routes. Routes already gone (with the namespace or the link)
// are no error.
func (r *peerRoutes) remove() error {
	if len(r.installed) == 0 || !r.ns.Handle().IsOpen() {
		r.installed = nil
		return nil
	}
	h, err := r.ns.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	var errs []error
	for _, rt := range r.installed {
		if err := h.RouteDel(rt); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("remove route %s: %w", rt.Dst, err))
		}
	}
	r.installed = nil
	return errors.Join(errs...)
}
