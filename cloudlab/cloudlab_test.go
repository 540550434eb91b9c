package cloudlab

import (
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requireTool returns the path of a tool, or skips the test when it is missing, unless
// EDGEBPF_REQUIRE_TOOLS=1 (CI) makes a missing tool a failure.
func requireTool(t *testing.T, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("EDGEBPF_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s is not installed (EDGEBPF_REQUIRE_TOOLS=1): %s", name, why)
		}
		t.Skipf("skipping: %s is not installed (%s; scripts/install-deps.sh installs it)", name, why)
	}
	return p
}

// scripts are every shell script of the project.
func scripts(t *testing.T) []string {
	var out []string
	for _, pattern := range []string{"*.sh", "../scripts/*.sh", "../.ci/run"} {
		m, err := filepath.Glob(pattern)
		require.NoError(t, err)
		out = append(out, m...)
	}
	require.Contains(t, out, "bootstrap.sh")
	require.Contains(t, out, "run-remote.sh")
	return out
}

func TestScriptsParse(t *testing.T) {
	for _, s := range scripts(t) {
		out, err := exec.Command("bash", "-n", s).CombinedOutput()
		assert.NoError(t, err, "bash -n %s: %s", s, out)
		b, err := os.ReadFile(s)
		require.NoError(t, err)
		assert.Contains(t, string(b), "set -", s)
		assert.Regexp(t, `(?m)^set -E?euo pipefail$`, string(b), "%s stops at the first failing step", s)
		fi, err := os.Stat(s)
		require.NoError(t, err)
		assert.NotZero(t, fi.Mode()&0o111, "%s is executable", s)
	}
}

func TestScriptsPassShellcheck(t *testing.T) {
	sc := requireTool(t, "shellcheck", "the shell scripts' lint")
	out, err := exec.Command(sc, scripts(t)...).CombinedOutput()
	assert.NoError(t, err, "shellcheck:\n%s", out)
}

// TestScriptsRefuseBadInput checks that the scripts stop with a message naming the step.
func TestScriptsRefuseBadInput(t *testing.T) {
	cmd := exec.Command("bash", "run-remote.sh", "node.example", "huge", t.TempDir())
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), `run-remote: step "check the arguments" failed: profile "huge" is unknown`)

	out, err = exec.Command("bash", "run-remote.sh").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "HOST PROFILE OUTDIR")

	cmd = exec.Command("bash", "run-cross.sh", "a.example", "b.example", t.TempDir())
	cmd.Env = append(os.Environ(), "NODE_BASE=252", "DATAPLANES=direct userspace")
	out, err = cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), `step "check the arguments" failed: NODE_BASE=252 leaves no room for 2 addresses per data plane below .255`)
	out, err = exec.Command("bash", "run-cross.sh", "a.example").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "HOST_A HOST_B OUTDIR")

	out, err = exec.Command("bash", "bootstrap.sh", "--frobnicate").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), `step "start" failed: unknown argument --frobnicate`)
}

// rspec is the part of a GENI v3 request RSpec the profile uses.
type rspec struct {
	XMLName xml.Name `xml:"http://www.geni.net/resources/rspec/3 rspec"`
	Type    string   `xml:"type,attr"`
	Nodes   []struct {
		ClientID   string `xml:"client_id,attr"`
		Exclusive  string `xml:"exclusive,attr"`
		SliverType struct {
			Name      string `xml:"name,attr"`
			DiskImage struct {
				Name string `xml:"name,attr"`
			} `xml:"disk_image"`
		} `xml:"sliver_type"`
		HardwareType struct {
			Name string `xml:"name,attr"`
		} `xml:"hardware_type"`
		Interfaces []struct {
			ClientID string `xml:"client_id,attr"`
			IP       []struct {
				Address string `xml:"address,attr"`
				Type    string `xml:"type,attr"`
				Netmask string `xml:"netmask,attr"`
			} `xml:"ip"`
		} `xml:"interface"`
	} `xml:"node"`
	Links []struct {
		ClientID string `xml:"client_id,attr"`
		Refs     []struct {
			ClientID string `xml:"client_id,attr"`
		} `xml:"interface_ref"`
	} `xml:"link"`
}

const (
	wantHW    = "xl170"
	wantImage = "urn:publicid:IDN+emulab.net+image+emulab-ops//UBUNTU22-64-STD"
)

func parseRSpec(t *testing.T, b []byte) rspec {
	t.Helper()
	var r rspec
	dec := xml.NewDecoder(strings.NewReader(string(b)))
	dec.Strict = true
	require.NoError(t, dec.Decode(&r), "well-formed RSpec")
	return r
}

func checkDefaults(t *testing.T, r rspec) {
	t.Helper()
	assert.Equal(t, "request", r.Type)
	require.Len(t, r.Nodes, 1)
	n := r.Nodes[0]
	assert.Equal(t, "node0", n.ClientID)
	assert.Equal(t, "true", n.Exclusive)
	assert.Equal(t, "raw-pc", n.SliverType.Name)
	assert.Equal(t, wantImage, n.SliverType.DiskImage.Name)
	assert.Equal(t, wantHW, n.HardwareType.Name)
	assert.Empty(t, n.Interfaces)
	assert.Empty(t, r.Links)
}

// checkCross checks the cross-node request: two xl170 nodes, each with one interface on
// link0, addressed 10.10.1.1 and .2/24 (run-cross.sh's default LAN).
func checkCross(t *testing.T, r rspec) {
	t.Helper()
	require.Len(t, r.Nodes, 2)
	require.Len(t, r.Links, 1)
	assert.Equal(t, "link0", r.Links[0].ClientID)
	require.Len(t, r.Links[0].Refs, 2)
	for i, n := range r.Nodes {
		assert.Equal(t, wantHW, n.HardwareType.Name)
		assert.Equal(t, wantImage, n.SliverType.DiskImage.Name)
		require.Len(t, n.Interfaces, 1)
		iface := n.Interfaces[0]
		assert.Equal(t, r.Links[0].Refs[i].ClientID, iface.ClientID, "the link joins node%d's interface", i)
		require.Len(t, iface.IP, 1)
		assert.Equal(t, fmt.Sprintf("10.10.1.%d", i+1), iface.IP[0].Address)
		assert.Equal(t, "ipv4", iface.IP[0].Type)
		assert.Equal(t, "255.255.255.0", iface.IP[0].Netmask)
	}
}

func TestCrossRSpecIsTheProfilesCrossNode(t *testing.T) {
	b, err := os.ReadFile("profile-cross.rspec")
	require.NoError(t, err)
	checkCross(t, parseRSpec(t, b))
}

func TestRSpecIsTheProfilesDefault(t *testing.T) {
	b, err := os.ReadFile("profile.rspec")
	require.NoError(t, err)
	checkDefaults(t, parseRSpec(t, b))

	// profile.py's defaults are the RSpec's.
	py, err := os.ReadFile("profile.py")
	require.NoError(t, err)
	assert.Regexp(t, regexp.MustCompile(`(?m)^DEFAULT_HWTYPE = "`+regexp.QuoteMeta(wantHW)+`"$`), string(py))
	assert.Regexp(t, regexp.MustCompile(`(?m)^DEFAULT_IMAGE = "`+regexp.QuoteMeta(wantImage)+`"$`), string(py))
}

// TestProfilePy compiles profile.py and runs it standalone against the geni-lib stand-in in
// testdata/ (geni-lib itself is on PyPI, which this machine cannot reach): the default request
// equals profile.rspec, and out-of-range parameters are reported, each naming its parameter.
func TestProfilePy(t *testing.T) {
	py := requireTool(t, "python3", "profile.py is Python")
	out, err := exec.Command(py, "-B", "-c", `import sys; compile(open("profile.py").read(), "profile.py", "exec")`).CombinedOutput()
	require.NoError(t, err, "profile.py does not compile: %s", out)

	run := func(args ...string) (string, string, error) {
		cmd := exec.Command(py, append([]string{"-B", "profile.py"}, args...)...)
		cmd.Env = append(os.Environ(), "PYTHONPATH=testdata", "PYTHONDONTWRITEBYTECODE=1")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	stdout, stderr, err := run()
	require.NoError(t, err, stderr)
	checkDefaults(t, parseRSpec(t, []byte(stdout)))
	assert.Contains(t, stderr, "predates Linux 6.6", "the default image's kernel lacks TCX: the profile warns")

	stdout, _, err = run("--crossNode", "true", "--nodeCount", "2")
	require.NoError(t, err)
	checkCross(t, parseRSpec(t, []byte(stdout)))

	stdout, _, err = run("--nodeCount", "3", "--hwtype", "c220g5", "--osImage", "urn:publicid:IDN+emulab.net+image+emulab-ops//UBUNTU24-64-STD")
	require.NoError(t, err)
	r := parseRSpec(t, []byte(stdout))
	require.Len(t, r.Nodes, 3)
	assert.Equal(t, "node2", r.Nodes[2].ClientID)
	assert.Equal(t, "c220g5", r.Nodes[2].HardwareType.Name)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--nodeCount", "0"}, "['nodeCount'] Number of nodes must be 1 to 8, not 0."},
		{[]string{"--nodeCount", "9"}, "['nodeCount'] Number of nodes must be 1 to 8, not 9."},
		{[]string{"--hwtype", "xl170; rm -rf /"}, "['hwtype'] Hardware type"},
		{[]string{"--osImage", "ubuntu"}, "['osImage'] OS image 'ubuntu' is not an image URN"},
		{[]string{"--crossNode", "true"}, "['nodeCount', 'crossNode'] Cross-node joins exactly 2 nodes by a link: set Number of nodes to 2, not 1."},
	} {
		stdout, stderr, err := run(c.args...)
		assert.Error(t, err, "%v", c.args)
		assert.Contains(t, stderr, c.want, "%v", c.args)
		assert.Empty(t, stdout, "no request for %v", c.args)
	}
}
