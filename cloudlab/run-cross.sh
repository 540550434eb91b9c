#!/usr/bin/env bash
# run-cross.sh runs the cross-node measurements between two hosts over ssh, with edgebpf on
# each host as the agent: it copies the static binary up and, per data plane, starts
# `edgebpf node` on each host as one worker of a two-worker cluster whose underlay is the
# hosts' link (client on worker 0 on host A, server on worker 1 on host B); it checks each
# path, runs the servers on host B and the clients on host A inside the instances (`edgebpf
# exec`), the data planes interleaved repetition by repetition, fetches the raw outputs and
# stops the nodes, which remove everything they created.
#
#   cloudlab/run-cross.sh HOST_A HOST_B OUTDIR [-- EXTRA NODE FLAGS]
#
# HOST_A and HOST_B are ssh destinations (user@hp012.utah.cloudlab.us) whose user may sudo
# without a password, joined by a link (profile.py with crossNode). Environment:
#   DATAPLANES   data planes to compare, in this order (default "direct userspace ebpf nftables")
#   LAN          the link's network (default 10.10.1.0/24, the profile's)
#   NODE_BASE    the k-th data plane's workers take the free LAN addresses NODE_BASE+2k (on
#                host A) and NODE_BASE+2k+1 (host B); default 101
#   UNDERLAY_A   host A's interface on the link (default: the one holding an address of LAN);
#   UNDERLAY_B   likewise for host B
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
usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; }

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
read -r -a dataplanes <<<"${DATAPLANES:-direct userspace ebpf nftables}"
((${#dataplanes[@]})) || die "DATAPLANES is empty: name at least one data plane"
for dp in "${dataplanes[@]}"; do
	[[ $dp =~ ^[a-z]+$ ]] || die "DATAPLANES holds \"$dp\", which is not a data plane name"
done
lan=${LAN:-10.10.1.0/24}
[[ $lan =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.[0-9]+/([0-9]+)$ ]] || die "LAN=$lan is not an IPv4 network such as 10.10.1.0/24"
net3=${BASH_REMATCH[1]} bits=${BASH_REMATCH[2]}
base=${NODE_BASE:-101}
if ! [[ $base =~ ^[1-9][0-9]*$ ]] || ((base + 2 * ${#dataplanes[@]} - 1 > 254)); then
	die "NODE_BASE=$base leaves no room for 2 addresses per data plane below .255"
fi
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
# node_ip K I is worker I's address for the K-th data plane; cluster K its cluster's name.
node_ip() { echo "$net3.$((base + 2 * $1 + $2))"; }
run_id=x$(date -u +%H%M%S)
cluster() { echo "$run_id-${dataplanes[$1]}"; }
mkdir -p "$outdir"
read -r -a ssh_opts <<<"${SSH_OPTS:-}"
ssh_opts+=(-o BatchMode=yes -o ServerAliveInterval=30)
ssh_cmd=${SSH:-ssh}

# rsh I CMD runs CMD on host I; the command is a single string interpreted by that host's
# shell, built here on purpose.
# shellcheck disable=SC2029
rsh() { "$ssh_cmd" "${ssh_opts[@]}" "${hosts[$1]}" "$2"; }
# ebx I K SERVICE ARGS... runs ARGS inside the first instance of SERVICE on worker I of the
# K-th data plane's cluster.
ebx() {
	local i=$1 k=$2 svc=$3
	shift 3
	local args=""
	for a in "$@"; do args+=" $(printf '%q' "$a")"; done
	rsh "$i" "sudo -n '$remote_dir/edgebpf' exec --node $(cluster "$k")-w$i $svc --$args"
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
		for p in srv-'"$i"'-*.pid node-*-'"$i"'.pid; do
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
	say "${underlay[$i]}"
done

begin "start the nodes"
flags=""
for a in "${extra[@]}"; do
	flags+=" $(printf '%q' "$a")"
done
started=(0 1)
for k in "${!dataplanes[@]}"; do
	for i in 0 1; do
		j=$((1 - i))
		say "${dataplanes[$k]}: worker $i on ${hosts[$i]}, node IP $(node_ip "$k" "$i")"
		detach "$i" "node-$k-$i" "./edgebpf node --dataplane ${dataplanes[$k]} --cluster $(cluster "$k") --names client,server --placement client@0,server@1 --underlay ${underlay[$i]} --underlay-ip $(node_ip "$k" "$i")/$bits --worker $i --peer $j=$(node_ip "$k" "$j") --peer-wait ${peer_wait}s --api none --ready-file node-$k-$i.json$flags"
	done
done

begin "wait for the nodes to be ready"
targets=()
for k in "${!dataplanes[@]}"; do
	dp=${dataplanes[$k]}
	mkdir -p "$outdir/$dp"
	for i in 0 1; do
		waited=0
		until rsh "$i" "test -s '$remote_dir/node-$k-$i.json'"; do
			if ! rsh "$i" "test -d /proc/\$(cat '$remote_dir/node-$k-$i.pid')" || ((waited > peer_wait + 30)); then
				rsh "$i" "cat '$remote_dir/node-$k-$i.log'" >&2 || true
				die "the $dp node on ${hosts[$i]} did not come up (its log above)"
			fi
			sleep 1
			waited=$((waited + 1))
		done
		rsh "$i" "cat '$remote_dir/node-$k-$i.json'" >"$outdir/$dp/node-$i.json"
	done
	# The server's address as worker 0 knows it: its namespace IP for direct, else the service IP.
	if [[ $dp == direct ]]; then
		target=$(sed -n '/"name": "server-0"/,/}/s/^ *"ns_ip": "\([0-9.]*\)",$/\1/p' "$outdir/$dp/node-0.json")
	else
		target=$(sed -n '/"name": "server",$/,/"instances"/s/^ *"service_ip": "\([0-9.]*\)",$/\1/p' "$outdir/$dp/node-0.json")
	fi
	[[ -n $target ]] || die "worker 0's table ($outdir/$dp/node-0.json) has no server"
	targets+=("$target")
	say "$dp: client on worker 0 -> server at $target on worker 1"
done

begin "start the servers on ${hosts[1]}"
for k in "${!dataplanes[@]}"; do
	w1="--node $(cluster "$k")-w1 server --"
	detach 1 "srv-1-$k-iperf3" "./edgebpf exec $w1 iperf3 -s -p 5201"
	detach 1 "srv-1-$k-sockperf-udp" "./edgebpf exec $w1 sockperf server -i 0.0.0.0 -p 11111"
	detach 1 "srv-1-$k-sockperf-tcp" "./edgebpf exec $w1 sockperf server --tcp -i 0.0.0.0 -p 11112"
done

for k in "${!dataplanes[@]}"; do
	begin "check the path from client to server on ${dataplanes[$k]}"
	waited=0
	until ebx 0 "$k" client iperf3 -c "${targets[$k]}" -p 5201 -t 1 >/dev/null 2>&1; do
		((waited < path_wait)) || die "the client on ${hosts[0]} cannot reach ${targets[$k]}:5201 within ${path_wait}s: does ${dataplanes[$k]} carry packets between workers? (logs: $remote_dir/node-$k-*.log, srv-1-$k-*.log)"
		sleep 1
		waited=$((waited + 1))
	done
done

summary=$outdir/summary.tsv
printf 'rep\tdataplane\tmeasurement\tmetric\tvalue\tunit\n' >"$summary"
# last NAME FILE prints the last numeric value of a JSON field in FILE.
last() { sed -n "s/^[[:space:]]*\"$1\":[[:space:]]*\([0-9.e+-]*\),\{0,1\}$/\1/p" "$2" | tail -n 1; }
# measure REP K runs one repetition of every measurement on the K-th data plane.
measure() {
	local rep=$1 k=$2 dp=${dataplanes[$2]} target=${targets[$2]} f proto port
	f=$outdir/$dp/tcp-throughput-$rep.json
	ebx 0 "$k" client iperf3 -c "$target" -p 5201 -t "$duration" -J >"$f"
	printf '%s\t%s\ttcp-throughput\tthroughput\t%s\tbit/s\n' "$rep" "$dp" "$(last bits_per_second "$f")" >>"$summary"
	f=$outdir/$dp/udp-jitter-$rep.json
	# iperf3 warns that 1400 bytes exceed the TCP MSS (1398 at MTU 1450): true, and irrelevant.
	ebx 0 "$k" client iperf3 -c "$target" -p 5201 -u -b "$udp_rate" -l 1400 -t "$duration" -J >"$f" 2>>"$outdir/$dp/client.stderr"
	printf '%s\t%s\tudp-jitter\tjitter\t%s\tms\n' "$rep" "$dp" "$(last jitter_ms "$f")" >>"$summary"
	printf '%s\t%s\tudp-jitter\tloss\t%s\tpercent\n' "$rep" "$dp" "$(last lost_percent "$f")" >>"$summary"
	for proto in udp tcp; do
		f=$outdir/$dp/rr-$proto-$rep.txt
		port=11111
		[[ $proto == tcp ]] && port=11112
		if [[ $proto == tcp ]]; then
			ebx 0 "$k" client sockperf ping-pong --tcp -i "$target" -p "$port" -t "$duration" >"$f" 2>&1
		else
			ebx 0 "$k" client sockperf ping-pong -i "$target" -p "$port" -t "$duration" >"$f" 2>&1
		fi
		printf '%s\t%s\trr-%s\tlatency (half round trip)\t%s\tus\n' "$rep" "$dp" "$proto" \
			"$(sed -n 's/.*Summary: Latency is \([0-9.]*\) usec.*/\1/p' "$f" | tail -n 1)" >>"$summary"
	done
}
for rep in $(seq 1 "$reps"); do
	for k in "${!dataplanes[@]}"; do
		begin "repetition $rep of $reps on ${dataplanes[$k]}"
		measure "$rep" "$k"
	done
done

begin "stop the servers and the nodes"
stop_all
for k in "${!dataplanes[@]}"; do
	for i in 0 1; do
		rsh "$i" "cat '$remote_dir/node-$k-$i.log'" >"$outdir/${dataplanes[$k]}/node-$i.log"
		if rsh "$i" "test -e '$remote_dir/node-$k-$i.json'"; then
			die "the ${dataplanes[$k]} node on ${hosts[$i]} did not stop; run: ssh ${hosts[$i]} sudo $remote_dir/edgebpf cleanup"
		fi
	done
done

say "results: $outdir (summary.tsv; per data plane the raw iperf3 JSON and sockperf output, the nodes' tables and logs)"
say "medians over $reps repetitions (load on ${hosts[0]}: $(rsh 0 "cut -d' ' -f1-3 /proc/loadavg"))"
tail -n +2 "$summary" | sort -t $'\t' -k3,3 -k4,4 -k2,2 -k5,5g |
	awk -F '\t' '{ key = $3 "\t" $4 "\t" $2 "\t" $6; v[key, ++n[key]] = $5; if (!(key in seen)) { seen[key] = 1; order[++m] = key } }
		END { for (i = 1; i <= m; i++) { k = order[i]; c = n[k]; med = (c % 2) ? v[k, (c + 1) / 2] : (v[k, c / 2] + v[k, c / 2 + 1]) / 2; print k "\t" med } }' |
	column -t -s $'\t'
