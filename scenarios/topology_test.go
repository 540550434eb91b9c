package scenarios

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTopologyMistakes(t *testing.T) {
	cross := Topology{Kind: CrossNode}
	for _, c := range []struct {
		name string
		o    RunOptions
		want string
	}{
		{"unknown service", RunOptions{Topology: Topology{Kind: CrossNode, Placement: Placement{"db": 1}}}, `placement names service "db"`},
		{"unknown worker", RunOptions{Topology: Topology{Kind: CrossNode, Placement: Placement{"server": 2}}}, "puts server on worker 2, which does not exist: the cluster has workers 0 to 1"},
		{"worker beyond --workers", RunOptions{Topology: Topology{Kind: CrossNode, Workers: 3, Placement: Placement{"client": 3}}}, "worker 3"},
		{"one worker", RunOptions{Topology: Topology{Kind: CrossNode, Workers: 1}}, "1 workers is out of range"},
		{"cluster flags on one node", RunOptions{Topology: Topology{Workers: 3}}, "add --topology cross-node"},
		{"unknown topology", RunOptions{Topology: Topology{Kind: "mesh"}}, `unknown topology "mesh"`},
		{"mixed on one node", RunOptions{DataPlanes: []string{"ebpf+userspace"}}, "exists only with --topology cross-node"},
		{"mixed of one data plane", RunOptions{DataPlanes: []string{"ebpf+ebpf"}, Topology: cross}, "select ebpf instead"},
		{"mixed of an unknown data plane", RunOptions{DataPlanes: []string{"ebpf+vpp"}, Topology: cross}, `unknown data plane "vpp"`},
		{"same-node-only experiment named", RunOptions{Experiments: []string{"speedlimit-response"}, Topology: cross}, "runs on one node only"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.o.Profile = "smoke"
			err := c.o.Check()
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.NotContains(t, err.Error(), "\n", "one sentence")
		})
	}
}

func TestParsePlacement(t *testing.T) {
	p, err := ParsePlacement("client=1, server=0")
	require.NoError(t, err)
	assert.Equal(t, Placement{"client": 1, "server": 0}, p)
	assert.Equal(t, "client=1,server=0", p.String())
	for _, bad := range []string{"", "client", "client=x", "client=0,client=1", "=1"} {
		_, err := ParsePlacement(bad)
		assert.Error(t, err, bad)
	}
}

func TestCrossNodeJobs(t *testing.T) {
	o := RunOptions{Profile: "smoke", Topology: Topology{Kind: CrossNode, Placement: Placement{"client": 1, "server": 0}, UnderlayRate: 1e9}}
	var err error
	o.DataPlanes, err = ParseDataPlanes("all", CrossNode)
	require.NoError(t, err)
	assert.Equal(t, []string{"direct", "userspace", "ebpf", "nftables", "ebpf+userspace"}, o.DataPlanes)
	same, err := ParseDataPlanes("all", SameNode)
	require.NoError(t, err)
	assert.Equal(t, []string{"direct", "userspace", "ebpf", "nftables"}, same, "same-node all is unchanged")

	jobs, meta, err := o.prepare()
	require.NoError(t, err)
	for _, j := range jobs {
		assert.True(t, strings.HasSuffix(j.plan.Experiment, "@cross-node"), j.plan.Experiment)
		if j.plan.Meter == "scale" || len(j.plan.Experiment) > 10 && j.plan.Experiment[:10] == "speedlimit" {
			assert.Contains(t, j.skip, "runs on one node only", "all keeps same-node-only experiments as skipped, with the reason")
			continue
		}
		require.Len(t, j.planes, 2)
		if j.name() == "ebpf+userspace" {
			assert.Equal(t, "ebpf", j.planes[0].Name, "the client's side")
			assert.Equal(t, "userspace", j.planes[1].Name)
			assert.Subset(t, j.needs(), append(j.planes[0].Needs, j.planes[1].Needs...), "needs both data planes' features")
		}
	}
	assert.Equal(t, "cross-node", meta.Topology["kind"])
	assert.Equal(t, map[string]int{"client": 1, "server": 0}, meta.Topology["placement"])
	assert.Contains(t, meta.Topology["underlay_shaping"], "tbf at 1 Gbit/s")
}

func TestSuiteTopology(t *testing.T) {
	s, err := Parse(strings.NewReader(`{"topology": {"kind": "cross-node", "placement": {"server": 1}, "underlay_rate": "500M"},
		"experiments": [{"name": "latency", "meter": "connect-rtt", "profiles": {"smoke": {"reps": 1, "params": {"count": 3}}}}]}`), "t.json")
	require.NoError(t, err)
	o := RunOptions{Suite: s, Profile: "smoke", Topology: Topology{Workers: 3}}
	_, meta, err := o.prepare()
	require.NoError(t, err)
	assert.Equal(t, 3, meta.Topology["workers"], "the flag overrides the suite's field")
	assert.Contains(t, meta.Topology["underlay_shaping"], "500 Mbit/s", "the suite's other fields stay")
	assert.Equal(t, "latency@cross-node", meta.Experiments[0].Name)

	_, err = Parse(strings.NewReader(`{"topology": {"kind": "cross-node", "placement": {"server": 5}},
		"experiments": [{"name": "latency", "meter": "connect-rtt", "profiles": {"smoke": {"reps": 1}}}]}`), "t.json")
	require.ErrorContains(t, err, "worker 5, which does not exist")
	_, err = Parse(strings.NewReader(`{"experiments": [{"name": "latency@x", "meter": "connect-rtt", "profiles": {"smoke": {"reps": 1}}}]}`), "t.json")
	require.ErrorContains(t, err, "is invalid")
}

func TestBothTopologies(t *testing.T) {
	o := RunOptions{Profile: "smoke", Experiments: []string{"latency", "throughput"}, DataPlanes: []string{"direct", "ebpf+userspace"},
		Topology: Topology{Kind: "cross-node, same-node"}}
	jobs, meta, err := o.prepare()
	require.NoError(t, err)
	var names []string
	for _, j := range jobs {
		names = append(names, j.plan.Experiment+"/"+j.name())
	}
	assert.Equal(t, []string{
		"latency/direct", "latency@cross-node/direct", "latency@cross-node/ebpf+userspace",
		"throughput/direct", "throughput@cross-node/direct", "throughput@cross-node/ebpf+userspace",
	}, names, "same-node first, the mixed subject only across workers")
	assert.Len(t, groupJobs(jobs), 2, "one experiment's jobs of both topologies interleave")
	assert.Equal(t, "same-node,cross-node", meta.Topology["kind"])

	err = RunOptions{Profile: "smoke", Topology: Topology{Kind: "cross-node,cross-node"}}.Check()
	assert.ErrorContains(t, err, "topology cross-node is listed twice")
}

func TestCrossNodeSuffixIsTheReports(t *testing.T) {
	assert.Equal(t, TopologySep+CrossNode, CrossNodeSuffix, "the report finds cross-node rows by the name the runner gives them")
}
