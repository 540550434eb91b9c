// Package netsetup builds emulated edge worker nodes out of network namespaces: a node
// namespace holding a Linux bridge, one namespace per service instance joined to the bridge
// by a veth pair, Oakestra-like addressing, and a service registry that tells data planes
// when services and instances come and go.
//
// It is the only package that switches network namespaces (Namespace.Do), and it never
// changes the host's own namespace: veth pairs are created from the node namespace straight
// into the instance namespace. Everything it creates belongs to a Session, carries the
// "edgebpf-" prefix and the session's id, is recorded in a state file before it exists, and
// is removed by Session.Close or, after a SIGKILL, by Cleanup. Cleanup never touches a
// namespace that a live process holds open, and removes a namespace that no dead session's
// record proves to be its own only when asked to (CleanupOptions.Force). Before its first
// namespace, a process sets /run/netns up as a shared mount point exactly as `ip netns add`
// does, so that the two can be used side by side.
package netsetup
