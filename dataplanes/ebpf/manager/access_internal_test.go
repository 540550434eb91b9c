package manager

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestHostAllowed needs no privileges: which Host headers name the API.
func TestHostAllowed(t *testing.T) {
	local := Access{}
	tcp := Access{Hosts: []string{"192.0.2.7:6000"}}
	public := Access{Hosts: []string{"0.0.0.0:6000"}}
	for _, c := range []struct {
		a    Access
		host string
		ok   bool
	}{
		{local, "localhost", true}, {local, "LOCALHOST:80", true}, {local, "127.0.0.1:6000", true},
		{local, "[::1]:6000", true}, {local, "127.9.9.9", true}, {local, "", false},
		{local, "evil.example", false}, {local, "localhost.evil.example", false}, {local, "192.0.2.7:6000", false},
		{tcp, "192.0.2.7:6000", true}, {tcp, "192.0.2.7", true}, {tcp, "192.0.2.7:6001", false},
		{public, "198.51.100.4:6000", true}, {public, "198.51.100.4:6001", false}, {public, "rebound.example:6000", false},
	} {
		assert.Equal(t, c.ok, c.a.hostAllowed(c.host), "%+v %q", c.a.Hosts, c.host)
	}
}

// TestNoDuplicateKeys needs no privileges: a key twice in any object is refused.
func TestNoDuplicateKeys(t *testing.T) {
	for body, dup := range map[string]bool{
		`{"a":1,"b":2}`:                     false,
		`{"a":1,"a":2}`:                     true,
		`{"a":{"b":1},"c":{"b":2}}`:         false,
		`{"a":{"b":1,"b":2}}`:               true,
		`[{"a":1},{"a":2}]`:                 false,
		`[{"a":1,"a":2}]`:                   true,
		`{"a":[1,{"x":1}],"b":{},"c":[]}`:   false,
		`{"a":[{"x":1,"y":{"x":2}}],"a":0}`: true,
		`{"Name":1,"name":2}`:               true,
		`{"a":1`:                            false, // the decoder reports malformed JSON
	} {
		err := noDuplicateKeys([]byte(body))
		assert.Equal(t, dup, err != nil, "%s: %v", body, err)
	}
}
