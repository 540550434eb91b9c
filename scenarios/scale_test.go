package scenarios

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/subjects"
)

func TestScaleParamsRejects(t *testing.T) {
	for name, c := range map[string]struct {
		p    ScaleParams
		want string
	}{
		"descending": {ScaleParams{Services: []int{10, 1}}, "ascending"},
		"repeat":     {ScaleParams{Instances: []int{1, 1}}, "ascending"},
		"too many":   {ScaleParams{Instances: []int{1, 500}}, "between 1 and 240"},
		"long chain": {ScaleParams{Modules: []int{0, 64}}, "between 0 and 63"},
		"no steps":   {ScaleParams{}, "no steps"},
		"negative":   {ScaleParams{Services: []int{1}, InstancesPerService: -1}, "instances_per_service -1"},
	} {
		assert.ErrorContains(t, c.p.Validate(), c.want, name)
	}
}

// TestScaleInterruptedAtLargestStep cancels a scale run while it builds its largest step: the
// meter returns the cancellation with the samples of the steps before, and it has removed every
// node it built (namespaces, and with them every veth and TCX link) before returning.
func TestScaleInterruptedAtLargestStep(t *testing.T) {
	sess := testenv.Session(t)
	fast := ScaleParams{RTT: bench.ConnectConfig{Count: 3, Interval: bench.Duration(1e6)},
		Throughput: bench.TCPThroughputConfig{Duration: bench.Duration(1e8), Interval: bench.Duration(5e7)}}
	for _, c := range []struct {
		plane, axis string
		largest     string // the node suffix of the largest step
		kind        netsetup.EventKind
		at          int
		with        func(*ScaleParams)
	}{
		{"ebpf", "services", "s400", netsetup.ServiceCreated, 200, func(p *ScaleParams) { p.Services = []int{1, 400} }},
		{"nftables", "services", "s400", netsetup.ServiceCreated, 200, func(p *ScaleParams) { p.Services = []int{1, 400} }},
		{"ebpf", "instances", "i", netsetup.InstanceCreated, 8, func(p *ScaleParams) { p.Instances = []int{1, 12} }},
	} {
		t.Run(c.plane+"-"+c.axis, func(t *testing.T) {
			p := fast
			c.with(&p)
			require.NoError(t, p.Validate())
			spec, err := subjects.DataPlanes().Lookup(c.plane)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			events := 0
			env := Env{Plane: spec, NewNode: func(suffix string) (*netsetup.Node, error) {
				n, err := netsetup.NewNode(sess, netsetup.NodeConfig{Name: "sc-" + suffix})
				if err == nil && suffix == c.largest {
					n.Registry.Subscribe(func(ev netsetup.Event) error {
						if ev.Kind == c.kind {
							if events++; events == c.at+2 { // the largest step, past the first
								cancel()
							}
						}
						return nil
					})
				}
				return n, err
			}}
			samples, err := p.run(ctx, env)
			require.ErrorIs(t, err, context.Canceled)
			assert.NotEmpty(t, samples, "the smaller step's samples are kept")
			for _, s := range samples {
				assert.Equal(t, "1", s.X, "only the first step completed: %s", s.Metric.Name)
			}
			left, err := os.ReadDir("/run/netns")
			require.NoError(t, err)
			for _, e := range left {
				assert.False(t, strings.HasPrefix(e.Name(), "edgebpf-"+sess.ID()+"-"), "namespace %s left behind", e.Name())
			}
		})
	}
}
