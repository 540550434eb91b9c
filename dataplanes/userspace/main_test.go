package userspace_test

import (
	"os"
	"testing"

	"github.com/edgebpf/edgebpf/internal/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		helperNode()
		return
	}
	testenv.Main(m)
}
