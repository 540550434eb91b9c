package manager

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Access says who may use the API. The zero value serves local clients without a token: what
// a Unix socket that only root can open needs.
type Access struct {
	// Token, when set, must come with every request as "Authorization: Bearer <Token>"
	// (401 otherwise). edgebpf node sets one when the API listens on TCP.
	Token string
	// Hosts are the listen addresses (host:port) a request's Host header may name besides
	// localhost, 127.0.0.1 and [::1] on any port. An unspecified host (0.0.0.0, [::]) admits
	// any IP address literal on its port.
	Hosts []string
}

// guard refuses, with a JSON error, a request whose Host is not an address of this API (403:
// a web page that rebinds a DNS name to 127.0.0.1 sends its own name) or that lacks the token
// (401).
func (a Access) guard(h http.Handler) http.Handler {
	want := sha256.Sum256([]byte("Bearer " + a.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.hostAllowed(r.Host) {
			WriteError(w, http.StatusForbidden, fmt.Errorf("host %q is not this API's address: address it as localhost or by its listen address", r.Host))
			return
		}
		if a.Token != "" {
			got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="edgebpf"`)
				WriteError(w, http.StatusUnauthorized, errors.New("missing or wrong token: send the node's API token (see its token file) as Authorization: Bearer <token>"))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// hostAllowed reports whether a Host header names this API.
func (a Access) hostAllowed(hostport string) bool {
	host, port := splitHost(hostport)
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err == nil && ip.IsLoopback() {
		return true
	}
	for _, allowed := range a.Hosts {
		ahost, aport := splitHost(allowed)
		if port != "" && aport != "" && port != aport {
			continue
		}
		if strings.EqualFold(host, ahost) {
			return true
		}
		if aip, aerr := netip.ParseAddr(ahost); aerr == nil && aip.IsUnspecified() && err == nil {
			return true
		}
	}
	return false
}

// splitHost splits host[:port], with or without brackets around an IPv6 address.
func splitHost(hostport string) (host, port string) {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return h, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), ""
}
