package netsetup_test

import (
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// privateEnv names the test a child test binary runs in a private mount namespace.
const privateEnv = "EDGEBPF_TEST_PRIVATE_RUN"

// inPrivateRun re-runs the calling test in a child test binary that has a private mount
// namespace with a fresh tmpfs over /run: /run/netns and /run/edgebpf start empty, and
// whatever the test mounts, creates or cleans up there stays invisible to the host and to
// other tests. In the parent it waits for the child, fails t if the child failed, and
// returns false; in the child it returns true and the test goes on.
func inPrivateRun(t *testing.T) bool {
	t.Helper()
	if os.Getenv(privateEnv) == t.Name() {
		if err := unix.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"); err != nil {
			t.Fatalf("mount a tmpfs over /run in the private mount namespace: %v", err)
		}
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), privateEnv+"="+t.Name())
	// Go makes every mount of the new mount namespace private before the child runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in a private mount namespace: %v\n%s", t.Name(), err, out)
	}
	t.Logf("%s in a private mount namespace:\n%s", t.Name(), out)
	return false
}
