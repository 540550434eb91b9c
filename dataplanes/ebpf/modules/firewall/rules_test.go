package firewall

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestPortPattern: a port is what the API's pattern ^[0-9]+(-[0-9]+)?$ (or a plain number)
// allows and nothing else; strconv alone took "+80" and " 80".
func TestPortPattern(t *testing.T) {
	for in, want := range map[string]PortRange{
		`80`: {80, 80}, `"80"`: {80, 80}, `"5000-5999"`: {5000, 5999}, `"0080"`: {80, 80},
	} {
		var p PortRange
		if assert.NoError(t, json.Unmarshal([]byte(in), &p), in) {
			assert.Equal(t, want, p, in)
		}
	}
	for _, in := range []string{`"+80"`, `"-80"`, `" 80"`, `"80 "`, `"+80-+90"`, `"80-"`, `"-"`, `""`, `80.0`, `1e2`, `"0x50"`, `-80`} {
		var p PortRange
		assert.Error(t, json.Unmarshal([]byte(in), &p), in)
	}
}
