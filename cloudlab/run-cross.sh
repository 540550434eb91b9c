#!/usr/bin/env bash
# run-cross.sh runs the cross-node measurements between two hosts over ssh, with edgebpf on
# each host as the agent: it copies the static binary up, starts `edgebpf node` on each host
# as one worker of a two-worker cluster whose underlay is the hosts' link (client on worker 0,
# server on worker 1), checks the path between the instances, runs the servers on host B and
# the clients on host A inside the instances (`edgebpf exec`), fetches the raw outputs and
# stops the nodes, which remove everything they created.
#
#   cloudlab/run-cross.sh HOST_A HOST_B OUTDIR [-- EXTRA NODE FLAGS]
#
# HOST_A and HOST_B are ssh destinations (user@hp012.utah.cloudlab.us) whose user may sudo
# without a password, joined by a link (profile.py with crossNode). Environment:
#   LAN          the link's network (default 10.10.1.0/24, the profile's)
#   NODE_IPS     the two workers' node IPs on it, free addresses (default .101 and .102)
#   UNDERLAY_A   host A's interface on the link (default: the one holding an address of LAN);
#   UNDERLAY_B   likewise for host B
#   DATAPLANE    the data plane on both workers (default direct)
#   DURATION     seconds per measurement (default 10); REPS repetitions (default 3)
#   UDP_RATE     iperf3 -u -b (default 100M); PEER_WAIT, PATH_WAIT seconds (default 60, 30)
#   EDGEBPF_BIN  the binary to copy (default dist/edgebpf-linux-<arch>); SSH (default ssh),
#   SSH_OPTS     extra ssh options; BOOTSTRAP=0 skips bootstrap.sh; REMOTE_DIR (default
#                edgebpf-cross, in the user's home)
#
# It stops at the first failing step, names it, and stops the nodes it started.
set -Eeuo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
step="start"
on_error() {
	local rc=$?
	echo "run-cross: step \"$step\" failed (exit $rc)" >&2
	exit "$rc"
}
trap on_error ERR

say() { echo "run-cross: [${SECONDS}s] $*"; }
begin() {
	step=$1
	say "$step"
}
die() {
	trap - ERR
	echo "run-cross: step \"$step\" failed: $*" >&2
	exit 1
}
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }

if [[ $# -lt 3 || ${1:-} == -h || ${1:-} == --help ]]; then
	usage >&2
	exit 2
fi
hosts=("$1" "$2")
outdir=$3
shift 3
if [[ ${1:-} == -- ]]; then
	shift
elif [[ $# -gt 0 ]]; then
	usage >&2
	exit 2
fi
extra=("$@")

begin "check the arguments"
lan=${LAN:-10.10.1.0/24}
[[ $lan =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.[0-9]+/([0-9]+)$ ]] || die "LAN=$lan is not an IPv4 network such as 10.10.1.0/24"
bits=${BASH_REMATCH[2]}
read -r -a node_ips <<<"${NODE_IPS:-${BASH_REMATCH[1]}.101 ${BASH_REMATCH[1]}.102}"
[[ ${#node_ips[@]} -eq 2 ]] || die "NODE_IPS=\"${NODE_IPS:-}\" must hold two addresses"
for ip in "${node_ips[@]}"; do
	[[ $ip =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "node IP $ip is not an IPv4 address"
done
dataplane=${DATAPLANE:-direct}
[[ $dataplane =~ ^[a-z]+$ ]] || die "DATAPLANE=$dataplane is not a data plane name"
duration=${DURATION:-10}
reps=${REPS:-3}
peer_wait=${PEER_WAIT:-60}
path_wait=${PATH_WAIT:-30}
udp_rate=${UDP_RATE:-100M}
for v in "$duration" "$reps" "$peer_wait" "$path_wait"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || die "DURATION, REPS, PEER_WAIT and PATH_WAIT must be whole numbers, not $v"
done
[[ $udp_rate =~ ^[0-9]+[KMG]?$ ]] || die "UDP_RATE=$udp_rate is not a rate such as 100M"
remote_dir=${REMOTE_DIR:-edgebpf-cross}
[[ $remote_dir =~ ^[A-Za-z0-9._/-]+$ ]] || die "REMOTE_DIR=$remote_dir holds characters other than letters, digits and ._/-"
cluster=x$(date -u +%H%M%S)
mkdir -p "$outdir"
read -r -a ssh_opts <<<"${SSH_OPTS:-}"
ssh_opts+=(-o BatchMode=yes -o ServerAliveInterval=30)
ssh_cmd=${SSH:-ssh}

# rsh I CMD runs CMD on host I; the command is a single string interpreted by that host's
# shell, built here on purpose.
# shellcheck disable=SC2029
rsh() { "$ssh_cmd" "${ssh_opts[@]}" "${hosts[$1]}" "$2"; }
# ebx I SERVICE ARGS... runs ARGS inside worker I's first instance of SERVICE.
ebx() {
	local i=$1 svc=$2
	shift 2
	local args=""
	for a in "$@"; do args+=" $(printf '%q' "$a")"; done
	rsh "$i" "sudo -n '$remote_dir/edgebpf' exec --node $cluster-w$i $svc --$args"
}
# detach I NAME CMD starts CMD on host I detached from the ssh session, its pid in NAME.pid
# and its output in NAME.log under REMOTE_DIR.
detach() {
	rsh "$1" "cd '$remote_dir' && sudo -n setsid -f sh -c 'echo \$\$ > $2.pid; exec $3' > $2.log 2>&1 < /dev/null"
}

# stop_all stops what this script started on each host, servers first, and waits up to 30 s
# for each to end (a node removes what it created before it exits). A process counts as ended
# once it is a zombie: the detached processes' reaper is the host's init.
started=()
stop_all() {
	local i
	for i in "${started[@]}"; do
		# shellcheck disable=SC2016 # expanded by the host's shell
		rsh "$i" "cd '$remote_dir' && "'alive() { grep -qs "^State:[[:space:]]*[^Z[:space:]]" /proc/$1/status; }
		for p in srv-'"$i"'-*.pid node-'"$i"'.pid; do
			[ -f "$p" ] || continue
			pid=$(cat "$p"); sudo -n kill -TERM "$pid" 2>/dev/null
			n=0; while alive "$pid" && [ $n -lt 150 ]; do sleep 0.2; n=$((n+1)); done
			alive "$pid" && echo "run-cross: $p ($pid) did not stop" >&2
			rm -f "$p"
		done; true' || true
	done
	started=()
}
trap 'stop_all' EXIT

for i in 0 1; do
	begin "reach ${hosts[$i]}"
	rsh "$i" true || die "cannot ssh to ${hosts[$i]}: check the host name, your key (SSH_OPTS=\"-i KEY\") and that the experiment is ready"
	rsh "$i" "sudo -n true" || die "${hosts[$i]}: the user cannot sudo without a password"

	begin "copy edgebpf to ${hosts[$i]}:$remote_dir"
	machine=$(rsh "$i" "uname -m")
	case $machine in
	x86_64) arch=amd64 ;;
	aarch64 | arm64) arch=arm64 ;;
	*) die "${hosts[$i]} runs on $machine: make dist builds amd64 and arm64 only" ;;
	esac
	bin=${EDGEBPF_BIN:-$repo/dist/edgebpf-linux-$arch}
	[[ -x $bin ]] || die "$bin is missing: run make dist (or set EDGEBPF_BIN)"
	rsh "$i" "mkdir -p '$remote_dir' && rm -f '$remote_dir/edgebpf'"
	rsh "$i" "cat > '$remote_dir/edgebpf'" <"$bin"
	rsh "$i" "cat > '$remote_dir/bootstrap.sh'" <"$here/bootstrap.sh"
	rsh "$i" "chmod +x '$remote_dir/edgebpf' '$remote_dir/bootstrap.sh'"
	if [[ ${BOOTSTRAP:-1} != 0 ]]; then
		begin "bootstrap ${hosts[$i]}"
		rsh "$i" "sudo -n '$remote_dir/bootstrap.sh'" || die "bootstrap.sh failed on ${hosts[$i]} (its output above names the step)"
	fi
done

underlay=("${UNDERLAY_A:-}" "${UNDERLAY_B:-}")
for i in 0 1; do
	begin "find ${hosts[$i]}'s interface on $lan"
	if [[ -z ${underlay[$i]} ]]; then
		underlay[i]=$(rsh "$i" "ip -o -4 addr show to $lan" | awk '{print $2; exit}')
		[[ -n ${underlay[$i]} ]] || die "${hosts[$i]} has no address on $lan: set LAN to the link's network or UNDERLAY_A/UNDERLAY_B to the interfaces"
	fi
	[[ ${underlay[$i]} =~ ^[A-Za-z0-9._-]+$ ]] || die "interface name ${underlay[$i]} is not a plain interface name"
	say "${underlay[$i]}, worker $i's node IP ${node_ips[$i]}"
done

begin "start the nodes"
flags=""
for a in "${extra[@]}"; do
	flags+=" $(printf '%q' "$a")"
done
for i in 0 1; do
	j=$((1 - i))
	started+=("$i")
	detach "$i" "node-$i" "./edgebpf node --dataplane $dataplane --cluster $cluster --names client,server --placement client@0,server@1 --underlay ${underlay[$i]} --underlay-ip ${node_ips[$i]}/$bits --worker $i --peer $j=${node_ips[$j]} --peer-wait ${peer_wait}s --api none --ready-file node-$i.json$flags"
done

begin "wait for both nodes to be ready"
for i in 0 1; do
	waited=0
	until rsh "$i" "test -s '$remote_dir/node-$i.json'"; do
		if ! rsh "$i" "test -d /proc/\$(cat '$remote_dir/node-$i.pid')" || ((waited > peer_wait + 30)); then
			rsh "$i" "cat '$remote_dir/node-$i.log'" >&2 || true
			die "the node on ${hosts[$i]} did not come up (its log above)"
		fi
		sleep 1
		waited=$((waited + 1))
	done
	rsh "$i" "cat '$remote_dir/node-$i.json'" >"$outdir/node-$i.json"
done
# The server's address as worker 0 knows it: its namespace IP for direct, else the service IP.
field=service_ip
[[ $dataplane == direct ]] && field=ns_ip
if [[ $field == ns_ip ]]; then
	target=$(sed -n '/"name": "server-0"/,/}/s/^ *"ns_ip": "\([0-9.]*\)",$/\1/p' "$outdir/node-0.json")
else
	target=$(sed -n '/"name": "server",$/,/"instances"/s/^ *"service_ip": "\([0-9.]*\)",$/\1/p' "$outdir/node-0.json")
fi
[[ -n $target ]] || die "worker 0's table ($outdir/node-0.json) has no server"
say "client on worker 0 -> server at $target on worker 1 ($dataplane)"

begin "start the servers on ${hosts[1]}"
detach 1 srv-1-iperf3 "./edgebpf exec --node $cluster-w1 server -- iperf3 -s -p 5201"
detach 1 srv-1-sockperf-udp "./edgebpf exec --node $cluster-w1 server -- sockperf server -i 0.0.0.0 -p 11111"
detach 1 srv-1-sockperf-tcp "./edgebpf exec --node $cluster-w1 server -- sockperf server --tcp -i 0.0.0.0 -p 11112"

begin "check the path from client to server"
waited=0
until ebx 0 client iperf3 -c "$target" -p 5201 -t 1 >/dev/null 2>&1; do
	((waited < path_wait)) || die "the client on ${hosts[0]} cannot reach $target:5201 within ${path_wait}s: does $dataplane route between workers? (logs: $remote_dir/node-*.log, srv-1-*.log)"
	sleep 1
	waited=$((waited + 1))
done

summary=$outdir/summary.tsv
printf 'rep\tmeasurement\tmetric\tvalue\tunit\n' >"$summary"
# last NAME FILE prints the last numeric value of a JSON field in FILE.
last() { sed -n "s/^[[:space:]]*\"$1\":[[:space:]]*\([0-9.e+-]*\),\{0,1\}$/\1/p" "$2" | tail -n 1; }
for rep in $(seq 1 "$reps"); do
	begin "repetition $rep of $reps"
	f=$outdir/tcp-throughput-$rep.json
	ebx 0 client iperf3 -c "$target" -p 5201 -t "$duration" -J >"$f"
	printf '%s\ttcp-throughput\tthroughput\t%s\tbit/s\n' "$rep" "$(last bits_per_second "$f")" >>"$summary"
	f=$outdir/udp-jitter-$rep.json
	ebx 0 client iperf3 -c "$target" -p 5201 -u -b "$udp_rate" -l 1400 -t "$duration" -J >"$f"
	printf '%s\tudp-jitter\tjitter\t%s\tms\n' "$rep" "$(last jitter_ms "$f")" >>"$summary"
	printf '%s\tudp-jitter\tloss\t%s\tpercent\n' "$rep" "$(last lost_percent "$f")" >>"$summary"
	for proto in udp tcp; do
		f=$outdir/rr-$proto-$rep.txt
		port=11111 pflag=()
		[[ $proto == tcp ]] && port=11112 pflag=(--tcp)
		ebx 0 client sockperf ping-pong "${pflag[@]}" -i "$target" -p "$port" -t "$duration" >"$f" 2>&1
		printf '%s\trr-%s\tlatency (half round trip)\t%s\tus\n' "$rep" "$proto" \
			"$(sed -n 's/.*Summary: Latency is \([0-9.]*\) usec.*/\1/p' "$f" | tail -n 1)" >>"$summary"
	done
done

begin "stop the servers and the nodes"
stop_all
for i in 0 1; do
	rsh "$i" "cat '$remote_dir/node-$i.log'" >"$outdir/node-$i.log"
	if rsh "$i" "test -e '$remote_dir/node-$i.json'"; then
		die "the node on ${hosts[$i]} did not stop; run: ssh ${hosts[$i]} sudo $remote_dir/edgebpf cleanup"
	fi
done

say "results: $outdir (summary.tsv, raw iperf3 JSON and sockperf output, the nodes' tables and logs)"
column -t -s $'\t' "$summary" 2>/dev/null || cat "$summary"
