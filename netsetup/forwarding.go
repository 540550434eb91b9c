package netsetup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// ReadSysctl reads a /proc/sys/net key (e.g. "ipv4/ip_forward") inside the namespace, without
// its trailing newline.
func (n *Namespace) ReadSysctl(key string) (string, error) {
	var v []byte
	err := n.Do(func() (err error) {
		v, err = os.ReadFile(filepath.Join("/proc/sys/net", filepath.Clean("/"+key)))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read sysctl net/%s: %w", key, err)
	}
	return strings.TrimSpace(string(v)), nil
}

// forwardingSysctls is what a node namespace needs to route client -> service traffic back
// out of the bridge it came in by: forwarding on, and no ICMP redirects telling the client to
// talk to the server's namespace IP directly.
func forwardingSysctls(bridge string) [][2]string {
	return [][2]string{
		{"ipv4/ip_forward", "1"},
		{"ipv4/conf/all/send_redirects", "0"},
		{"ipv4/conf/default/send_redirects", "0"},
		{"ipv4/conf/" + bridge + "/send_redirects", "0"},
	}
}

// EnableForwarding turns IPv4 forwarding on and ICMP redirects off (all, default and the
// bridge) in the node namespace, as a proxy in that namespace needs. It records the values
// it changed; undo puts them back, last changed first, and is idempotent. If a setting
// fails, those already changed are put back before the error is returned.
//
// undo restores nothing once the node's namespace is closed: the settings went with it, and
// writing without the namespace would change the caller's own.
func (n *Node) EnableForwarding() (undo func() error, err error) {
	var old [][2]string // key, previous value, in the order changed
	var once sync.Once
	var undoErr error
	undo = func() error {
		once.Do(func() {
			if !n.NS.Handle().IsOpen() {
				return
			}
			var errs []error
			for i := len(old) - 1; i >= 0; i-- {
				errs = append(errs, n.NS.Sysctl(old[i][0], old[i][1]))
			}
			undoErr = errors.Join(errs...)
		})
		return undoErr
	}
	for _, s := range forwardingSysctls(n.Bridge) {
		prev, err := n.NS.ReadSysctl(s[0])
		if err == nil && prev != s[1] {
			if err = n.NS.Sysctl(s[0], s[1]); err == nil {
				old = append(old, [2]string{s[0], prev})
			}
		}
		if err != nil {
			return nil, fmt.Errorf("enable forwarding in %s: %w", n.NS.Name, errors.Join(err, undo()))
		}
	}
	return undo, nil
}
