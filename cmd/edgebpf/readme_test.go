package main

import (
	"os"
	"os/exec"
	"os/user"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadmeOpensWithTwoCommands checks that the README opens with exactly the two set-up
// commands, and that they work as written on a root machine without sudo: make runs what needs
// root directly as root and through sudo only for another user.
func TestReadmeOpensWithTwoCommands(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(b), "```sh\n")
	require.True(t, ok, "the README starts with a sh block")
	block, _, _ := strings.Cut(rest, "```")
	var cmds []string
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		cmd, _, _ := strings.Cut(line, "#")
		cmds = append(cmds, strings.TrimSpace(cmd))
	}
	assert.Equal(t, []string{"make run", "make test"}, cmds)

	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	u, err := user.Current()
	require.NoError(t, err)
	for _, target := range []string{"run", "test"} {
		out, err := exec.Command("make", "-n", "-C", "../..", target).CombinedOutput()
		require.NoError(t, err, string(out))
		if u.Uid == "0" {
			assert.NotContains(t, string(out), "sudo", "as root, make %s needs no sudo", target)
		} else {
			assert.Contains(t, string(out), "sudo env", "another user's make %s goes through sudo", target)
		}
	}
}
