package stats

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLookup(t *testing.T) {
	m, ok := Lookup("rtt")
	assert.True(t, ok)
	assert.Equal(t, RTT, m)
	m, ok = Lookup("cpu_process:edgebpf")
	assert.True(t, ok)
	assert.Equal(t, Metric{Name: "cpu_process:edgebpf", Unit: "percent", Better: Lower}, m)
	_, ok = Lookup("colour")
	assert.False(t, ok)
}
