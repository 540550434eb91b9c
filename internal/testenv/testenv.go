// Package testenv holds what edgebpf's privileged tests share: the skip-or-fail rule for
// missing privileges and the leak check run after a package's tests.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/edgebpf/edgebpf/netsetup"
)

// RequireEnv, when set to 1, turns skips for missing privileges into failures (CI sets it).
const RequireEnv = "EDGEBPF_REQUIRE_PRIVILEGED"

// RequirePrivileged skips t when the process cannot build namespaces, or fails it when
// EDGEBPF_REQUIRE_PRIVILEGED=1.
func RequirePrivileged(t testing.TB) {
	t.Helper()
	if err := netsetup.RequirePrivileges(); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("privileged test cannot run: %v (%s=1)", err, RequireEnv)
		}
		t.Skipf("skipping privileged test: %v", err)
	}
}

// Session starts a netsetup session that the test closes on cleanup, asserting that closing
// succeeded.
func Session(t testing.TB) *netsetup.Session {
	t.Helper()
	RequirePrivileged(t)
	s, err := netsetup.NewSession("test " + t.Name())
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close session: %v", err)
		}
	})
	return s
}

// Node builds a node with the given services, each with one instance, in a session the test
// closes.
func Node(t testing.TB, services ...string) *netsetup.Node {
	t.Helper()
	s := Session(t)
	n, err := netsetup.NewNode(s, netsetup.NodeConfig{})
	if err != nil {
		t.Fatalf("new node: %v", err)
	}
	for _, name := range services {
		if _, err := n.AddService(name); err != nil {
			t.Fatalf("add service %s: %v", name, err)
		}
		if _, err := n.AddInstance(name); err != nil {
			t.Fatalf("add instance of %s: %v", name, err)
		}
	}
	return n
}

// Cluster builds a cluster (cfg's zero fields take the defaults: two workers) in a session the
// test closes, with one instance of each service placed as "name@worker", e.g. "client@0",
// "server@1".
func Cluster(t testing.TB, cfg netsetup.ClusterConfig, placed ...string) *netsetup.Cluster {
	t.Helper()
	s := Session(t)
	c, err := netsetup.NewCluster(s, cfg)
	if err != nil {
		t.Fatalf("new cluster: %v", err)
	}
	for _, p := range placed {
		name, w, ok := strings.Cut(p, "@")
		worker, err := strconv.Atoi(w)
		if !ok || err != nil {
			t.Fatalf("placement %q: want name@worker", p)
		}
		if _, ok := c.Workers[0].Registry.Service(name); !ok {
			if _, err := c.AddService(name); err != nil {
				t.Fatalf("add service %s: %v", name, err)
			}
		}
		if _, err := c.AddInstance(name, worker); err != nil {
			t.Fatalf("add instance of %s on worker %d: %v", name, worker, err)
		}
	}
	return c
}

// Main runs a package's tests and then checks that they left nothing behind: no namespace or
// session record of a session this process created, and no more open file descriptors than
// before. Use it from TestMain.
func Main(m *testing.M) {
	before := openFDs()
	code := m.Run()
	if code == 0 {
		if err := leaks(before); err != nil {
			fmt.Fprintln(os.Stderr, "leak check:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func leaks(fdsBefore []string) error {
	var problems []string
	ids := netsetup.CreatedSessionIDs()
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		for _, id := range ids {
			if strings.HasPrefix(e.Name(), netsetup.Prefix+id+"-") {
				problems = append(problems, "namespace "+e.Name())
			}
		}
	}
	for _, id := range ids {
		p := filepath.Join(netsetup.StateDir, netsetup.Prefix+id+".json")
		if _, err := os.Stat(p); err == nil {
			problems = append(problems, "session record "+p)
		}
	}
	after := openFDs()
	for _, fd := range after {
		if !slices.Contains(fdsBefore, fd) {
			target, _ := os.Readlink(filepath.Join("/proc/self/fd", fd))
			problems = append(problems, fmt.Sprintf("file descriptor %s -> %s", fd, target))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("tests left behind: %s", strings.Join(problems, ", "))
	}
	return nil
}

func openFDs() []string {
	entries, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the directory listing's own descriptor, closed by now
		}
		// The runtime's own epoll and eventfd come and go with network use.
		if strings.HasPrefix(target, "anon_inode:[eventpoll]") || strings.HasPrefix(target, "anon_inode:[eventfd]") || strings.HasPrefix(target, "anon_inode:[pidfd]") {
			continue
		}
		out = append(out, e.Name())
	}
	return out
}

// NetState is what must not change in a namespace edgebpf does not own (a host's): its links
// (index, name, MTU, flags, MAC), addresses and routes, sorted, one line each.
func NetState(t testing.TB, ns *netsetup.Namespace) []string {
	t.Helper()
	h, err := ns.Netlink()
	if err != nil {
		t.Fatalf("netlink in %s: %v", ns.Name, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatalf("links of %s: %v", ns.Name, err)
	}
	var out []string
	for _, l := range links {
		a := l.Attrs()
		out = append(out, fmt.Sprintf("link %d %s mtu %d flags %v mac %s", a.Index, a.Name, a.MTU, a.Flags, a.HardwareAddr))
	}
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("addresses of %s: %v", ns.Name, err)
	}
	for _, ad := range addrs {
		out = append(out, fmt.Sprintf("addr %d %s", ad.LinkIndex, ad.IPNet))
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 0}, 0)
	if err != nil {
		t.Fatalf("routes of %s: %v", ns.Name, err)
	}
	for _, r := range routes {
		out = append(out, "route "+r.String())
	}
	slices.Sort(out)
	return out
}
