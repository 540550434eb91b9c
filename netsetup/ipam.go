package netsetup

import (
	"fmt"
	"net/netip"
	"sync"
)

// pool hands out the addresses of a prefix, lowest free first, skipping the network and
// broadcast addresses and any reserved ones. It is safe for concurrent use: the workers of a
// cluster share one service-range pool.
type pool struct {
	prefix netip.Prefix
	mu     sync.Mutex
	used   map[netip.Addr]bool
}

func newPool(p netip.Prefix, reserved ...netip.Addr) (*pool, error) {
	if !p.Addr().Is4() {
		return nil, fmt.Errorf("prefix %s is not IPv4: edgebpf's data planes are IPv4", p)
	}
	if p.Bits() > 30 {
		return nil, fmt.Errorf("prefix %s is too small: use /30 or larger", p)
	}
	pl := &pool{prefix: p.Masked(), used: map[netip.Addr]bool{}}
	for _, a := range reserved {
		pl.used[a] = true
	}
	return pl, nil
}

// size is the number of usable host addresses.
func (p *pool) size() int { return 1<<(32-p.prefix.Bits()) - 2 }

func (p *pool) take() (netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.prefix.Addr().Next()
	for i := 0; i < p.size(); i, a = i+1, a.Next() {
		if !p.used[a] {
			p.used[a] = true
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("address range %s is exhausted (%d addresses): choose a larger prefix", p.prefix, p.size())
}

func (p *pool) release(a netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.used, a)
}
