// Package userspace is the user-space service proxy of Oakestra's worker nodes, the baseline
// the Riegel thesis measured the eBPF proxy against (reference.md §1). It is selected as
// `--dataplane userspace`.
//
// Deploy creates a TUN device (ebtun0, Oakestra's goProxyTun; address 10.19.1.254/32, the
// node's MTU) in the node's namespace, routes the service range (10.30.0.0/16) into it and
// turns forwarding on. A packet an instance sends to a service IP or an instance IP leaves
// its namespace through the bridge, is routed into the TUN device and read by the proxy,
// which translates it, fixes its checksums and writes it back; the kernel then routes it
// over the bridge to the chosen instance. Replies come back the same way, because the
// server answers the client's instance IP, which is in the service range too. (The node
// gives its bridge a fixed MAC: one that changed as instances joined would leave their gateway
// entries stale.) Close stops the proxy, closes the device (its address and route go with it)
// and restores the sysctls it changed.
//
// Translation (the same for every proxy of issue 4): a client sending to a service IP gets
// the next instance of that service in round-robin order (an atomic counter per service);
// the destination becomes that instance's namespace IP and the source the client's instance
// IP. A reply has its source rewritten to the address the client addressed and its
// destination to the client's namespace IP, so the client sees only the service IP and the
// server only the client's instance IP. An instance IP reaches exactly that instance.
// Sessions are keyed by protocol, both addresses and both ports, stored under both
// directions, and end after TCP FIN in both directions or RST (plus a short grace period),
// or when idle (Config); a SYN on the tuple of a connection that ended is balanced afresh.
// A miss is resolved from the node's registry (Oakestra's table
// query) while the packet waits, so the first packet of every session is delivered.
//
// What is not forwarded is refused, never left to time out: a TCP segment gets a RST and a
// UDP datagram an ICMP port unreachable when the service has no instance, when its session
// was to or from an instance that has been removed (sessions are marked dead at once on the
// registry's InstanceRemoved event, so no packet is sent towards a namespace that is going
// away), when the sender is not an instance, when the address is unknown, or when a TCP
// segment other than a SYN has no session (it expired, or never went through the proxy).
// Other IP protocols get ICMP protocol unreachable. A full session table refuses nothing:
// it makes room.
//
// The session table is bounded (Config.MaxSessions, 131,072 by default: the eBPF proxy's
// 262,144 entries, one per direction) and its slots are allocated once, so memory stays
// flat whatever the traffic. A TCP session the server has not answered (half-open, SYN
// seen) ends after TCPHalfOpen, 10 s: longer than the gaps between a Linux client's first
// SYN retransmissions (1, 2, 4 and 8 s), far shorter than conntrack's SYN_SENT (120 s, sized for
// the Internet's round trips; an instance on the node answers within microseconds). A new
// session never waits for room: a client that holds its share (MaxSessionsPerClient, a
// quarter of the table) evicts its own least recently used session, and otherwise a full
// table evicts its least recently used one; half-open, unanswered and ended sessions go
// before any established one. A SYN flood from one instance, which no server answers, thus
// displaces only its own half-open sessions and is gone TCPHalfOpen after it stops, while
// established sessions and new connections of every client go on (issue 15, finding 6).
//
// Note: the first table refused new sessions once it held 2^20, each TCP one kept for the
// full idle time from its SYN on. About 1.1 M SYNs from one instance that nothing answered
// filled it (RSS 20 MB to 250 MB) and every client's connects were refused until minutes
// after the flood. Its sessions were also pointers in a map the garbage collector had to
// scan; the slots are now one pointer-free array indexed from the map.
//
// ICMP echo to a service IP is translated like UDP with the echo identifier as both ports:
// ping through a service IP is answered by the instance the session was balanced to. ICMP
// errors about a session's packets (a server's port unreachable, a time exceeded) are
// translated too, outer and quoted headers both. Other ICMP is dropped. IPv4 options are
// kept (the header length is read from IHL). Checksums are updated incrementally (RFC 1624):
// IPv4 header, and the TCP or UDP checksum's pseudo-header; a UDP checksum of 0 stays 0.
//
// Fragments are dropped, every one of them, first and later alike, and counted
// (dropped_fragment in Stats), as the eBPF proxy does: the proxy does not reassemble, and
// a later fragment carries no ports to find its session by. A datagram larger than the
// node's MTU therefore does not cross the proxy; TCP is unaffected (Linux sets DF and
// segments to the path MTU), and UDP applications keep datagrams within MTU - 28 bytes.
//
// Note: translating the head of a datagram and remembering (addresses, protocol, IP id)
// for its later fragments was tried: it depended on the head arriving first, kept state
// per datagram that a stream of heads without tails could fill, and differed from the eBPF
// proxy, which keeps no such state.
//
// On a worker of a cluster (netsetup.NewCluster) the proxy is also Oakestra's tunnel
// (reference.md §8). Every worker's registry holds every instance of the cluster, and the
// events carry each instance's worker and node IP to the proxy process. A packet whose chosen
// instance runs on another worker is translated exactly as on one node, then sent, unchanged,
// as the whole payload of one UDP datagram from this worker's node IP, port
// netsetup.TunnelPort (50103), to that worker's node IP and port: no extra header. The proxy
// process binds that socket in the node's namespace; a second goroutine reads it. A datagram
// is accepted only from another worker's node IP, no larger than the overlay MTU, holding
// exactly one whole unfragmented IPv4 packet. A reply to a session of this worker (its key is
// the session's reply key, and it comes from the server's worker) is reverse-translated;
// any other packet is written into the device as it is, provided it goes from the instance
// IP of an instance on the sending worker to the namespace IP of an instance here. Such a
// packet opens a transit session, which translates nothing: the local instance's replies
// (read from the device) go back to the sending worker unchanged, and only that worker, which
// holds the session, reverse-translates them. A local instance's TCP segment (not a SYN) or
// echo reply to a remote instance IP without any session here goes back the same way. What
// is refused is dropped and counted by cause (Stats: tunnel_dropped_unknown_peer, _oversized,
// _truncated, _not_ipv4, _fragment, _unknown_dst, _unknown_src, _dead_session, _unsupported),
// never written into the device. A packet for the tunnel larger than the overlay MTU is
// dropped and counted (tunnel_dropped_too_big) rather than fragmented; the device's MTU,
// the overlay's, keeps the kernel from handing the proxy one. Traffic between instances of
// one worker takes the path it takes on a standalone node.
//
// Note: telling a local server's reply to a remote client's instance IP from a new session
// to that instance IP by the TCP flags alone was considered: it leaves UDP and echo
// ambiguous, and a UDP reply balanced as a new session would reach the client from the
// server's instance IP instead of the service IP it addressed. The transit session is the
// proxy's record that the flow came through the tunnel, as conntrack's would be.
//
// The proxy is faithful to Oakestra's design and has no offload Oakestra lacks: one reader
// goroutine, one packet per read and write system call, no GSO or checksum offload on the
// TUN device, so every packet crosses into user space and back. When the reader falls
// behind, the device's queue (500 packets) drops the excess, as Oakestra's does; TCP backs
// off, and a SYN caught in such a burst is retransmitted after a second. Stats reports its
// counters.
//
// The proxy runs in a process of its own, as Oakestra's NetManager does: edgebpf-proxy
// (ProcessName), the same binary re-executed (/proc/self/exe) in the node's namespace. Deploy
// creates and configures the TUN device and hands it to the process (descriptor 3) with one
// end of a Unix socket pair (descriptor 4); over it the data plane sends the proxy's Config,
// then the registry's contents and every registry event, one JSON request and one reply at a
// time, and asks for the counters. The event is applied in the proxy process before the
// registry's caller goes on, so a refused service is rolled back and the sessions of a
// removed instance are dead before its namespace goes, as before. The proxy process keeps a
// copy of the registry and resolves misses from it (the table query) without a round trip.
// So the packet loop has a scheduler, a garbage collector and CPUs of its own, not the
// meters'; the resources experiment samples its CPU time and memory by name
// (cpu_process:edgebpf-proxy, ram:edgebpf-proxy), and --cpu-proxy pins every thread of it
// (cpupin.Pinning.Process). Its life is the node's: the node's session records it (so
// `edgebpf cleanup` ends it after a SIGKILL), it is killed when the edgebpf process dies
// (PR_SET_PDEATHSIG; it checks at start that its parent is the one that started it, in case
// that one died first) and when the control socket closes, and Close kills and reaps it; its
// device, address and route go with its last descriptor.
//
// Note: the proxy process is recognised in the package's init, by an environment variable
// naming its parent, and not by an edgebpf subcommand: the test binaries of every package
// that deploys the data plane (this one, scenarios, cmd/edgebpf) must run it too, and a test
// binary has no subcommands. Resolving misses by asking the edgebpf process was rejected:
// every new session, each TCP connect of the latency experiment among them, would wait for a
// round trip between two processes on a loaded machine.
//
// Note: the reader waits for packets in the kernel on its own thread (a non-blocking read,
// then poll(2) when the device is empty) rather than in Go's poller (os.File on the non-blocking
// descriptor). Measured on one node each, interleaved (2-core VM under other load), the
// TCP-connect RTT median was 173, 188, 203 µs with the own thread (a plain blocking read:
// 204, 195, 136 µs) against 195 to 282 µs in six runs with the poller, whose wake-up adds a
// netpoll round and a goroutine switch for every packet that finds the reader idle; bulk
// TCP throughput was the same within the noise. A plain blocking read can only be woken for
// Close by deleting the device; poll's timeout (pollInterval) lets Close stop the reader
// without touching the node.
package userspace
