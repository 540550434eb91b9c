package speedlimit

import (
	"testing"

	"github.com/edgebpf/edgebpf/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
