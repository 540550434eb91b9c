package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// usage runs the command line and checks that it is a usage error: exit 2 and one line on
// stderr containing want.
func usage(t *testing.T, want string, args ...string) {
	t.Helper()
	code, _, stderr := edgebpf(context.Background(), args...)
	assert.Equal(t, 2, code, "%v: %s", args, stderr)
	assert.Contains(t, stderr, want)
	assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
}

func TestUsageRepsZero(t *testing.T) {
	usage(t, "--reps 0 must be positive", "run", "latency", "--reps", "0")
}

func TestUsageRatesOnLatency(t *testing.T) {
	usage(t, "--rates does not apply to latency: it applies to bottleneck", "run", "latency", "--rates", "1M")
}

func TestUsageDurationOnSpeedLimitResponse(t *testing.T) {
	usage(t, "--duration does not apply to speedlimit-response: it applies to latency, jitter, throughput, bottleneck, resources, calibration, speedlimit-load",
		"run", "speedlimit-response", "--duration", "5s")
}

func TestUsageUnknownExperiment(t *testing.T) {
	usage(t, `unknown experiment "latncy": choose from latency`, "run", "latncy")
}

func TestUsageMTU(t *testing.T) {
	usage(t, "mtu 100 is out of range", "run", "latency", "--mtu", "100")
}

func TestUsageProfileAnExperimentLacks(t *testing.T) {
	usage(t, "experiment bottleneck has no ci profile: use --profile smoke or quick or full", "run", "bottleneck", "--profile", "ci")
}

func TestUsageScenarioPosition(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(path, []byte("{\"experiments\": [\n  {\"name\": \"x\",, }]}"), 0o644))
	usage(t, path+":2:16: invalid character ','", "run", "--scenario", path)
}

func TestUsageScenarioWithOneProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "one.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"experiments": [
  {"name": "rtt", "meter": "connect-rtt", "profiles": {"ci": {"reps": 4, "params": {"count": 10, "interval": "10ms"}}}}]}`), 0o644))
	usage(t, "experiment rtt has no quick profile: use --profile ci", "run", "rtt", "--scenario", path)
	o := runOptions{experiments: []string{"rtt"}, dataplanes: "direct", profile: "ci", mtu: 1450, scenario: path}
	_, err := o.validate()
	assert.NoError(t, err, "a scenario may define one profile and run it")
}

func TestUsageCompareArguments(t *testing.T) {
	usage(t, "compare needs two results directories", "compare", "only-one")
}

func TestVersion(t *testing.T) {
	code, out, _ := edgebpf(context.Background(), "--version")
	require.Zero(t, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	assert.Regexp(t, `^edgebpf \S+$`, lines[0])
	assert.Regexp(t, `^commit \S+$`, lines[1])
	assert.Regexp(t, `^go go1\.\d+`, lines[2])
	assert.Regexp(t, `^cilium/ebpf v\d+\.\d+\.\d+`, lines[3], "read from the binary's embedded module list")
}

func TestUsageUnknownCommand(t *testing.T) {
	usage(t, `unknown command "frobnicate" for "edgebpf"`, "frobnicate")
}

func TestUsageExtraArgument(t *testing.T) {
	usage(t, `unknown command "extra" for "edgebpf list"`, "list", "extra")
}

func TestUsageUnknownSubcommand(t *testing.T) {
	usage(t, `unknown command "bogus" for "edgebpf speedlimit"`, "speedlimit", "bogus")
}

func TestUsageCrossNode(t *testing.T) {
	usage(t, `placement names service "db"`, "run", "latency", "--topology", "cross-node", "--placement", "db=1")
	usage(t, "puts server on worker 2, which does not exist", "run", "latency", "--topology", "cross-node", "--placement", "server=2")
	usage(t, "--placement: placement \"server\": give SERVICE=WORKER pairs", "run", "latency", "--topology", "cross-node", "--placement", "server")
	usage(t, "ebpf+userspace runs a different data plane on each worker of a cluster: it exists only with --topology cross-node",
		"run", "latency", "--dataplane", "ebpf+userspace")
	usage(t, "add --topology cross-node", "run", "latency", "--underlay-rate", "1G")
	usage(t, `unknown topology "mesh"`, "run", "latency", "--topology", "mesh")
	usage(t, "--underlay-rate:", "run", "latency", "--topology", "cross-node", "--underlay-rate", "fast")
	usage(t, "experiment speedlimit-response runs on one node only", "run", "speedlimit-response", "--topology", "cross-node")
}
