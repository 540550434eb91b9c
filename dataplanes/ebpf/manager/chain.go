package manager

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Chains are the programs the kernel runs on each bridge-side veth, per hook, in order.
type Chains map[string]map[string][]string

// Chains asks the kernel which programs run on every instance's veth, in chain order, by
// name. It reports what is attached, whoever attached it. In dispatcher mode the dispatcher
// (disp_in, disp_out) is followed by the programs in its active slots, in slot order, as the
// kernel's program arrays hold them.
func (m *Manager) Chains() (Chains, error) {
	out := Chains{}
	var errs []error
	var slots [2][]string
	if m.disp != nil {
		m.mu.Lock()
		defer m.mu.Unlock()
		for h := range slots {
			var err error
			if slots[h], err = m.disp.expand(h); err != nil {
				return nil, err
			}
		}
	}
	err := m.node.NS.Do(func() error {
		for _, in := range m.instances() {
			hooks := map[string][]string{}
			for hi, h := range []struct {
				name   string
				attach ebpf.AttachType
			}{{"tc_ingress", ebpf.AttachTCXIngress}, {"tc_egress", ebpf.AttachTCXEgress}} {
				res, err := link.QueryPrograms(link.QueryOptions{Target: in.VethIndex, Attach: h.attach})
				if err != nil {
					errs = append(errs, fmt.Errorf("query %s %s: %w", in.Veth, h.name, err))
					continue
				}
				names := []string{}
				for _, p := range res.Programs {
					names = append(names, programName(p.ID))
					if m.disp != nil && p.ID == m.disp.ids[hi] {
						names = append(names, slots[hi]...)
					}
				}
				hooks[h.name] = names
			}
			out[in.Veth] = hooks
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("read chains: %v", errs)
	}
	return out, nil
}

func programName(id ebpf.ProgramID) string {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return fmt.Sprintf("prog-%d", id)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil || info.Name == "" {
		return fmt.Sprintf("prog-%d", id)
	}
	return info.Name
}
