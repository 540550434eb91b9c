#!/usr/bin/env bash
# run-remote.sh runs an edgebpf profile on a remote node over ssh and fetches the results:
# it copies the static binary (make dist) and bootstrap.sh up, bootstraps the node, shows
# `edgebpf check`, starts `edgebpf run all --dataplane all --profile PROFILE` detached from the
# ssh session (a full run takes a day), waits for it with one progress line per poll, and
# copies the results directory, with its index.html, into OUTDIR.
#
#   cloudlab/run-remote.sh HOST PROFILE OUTDIR [-- EXTRA RUN FLAGS]
#   cloudlab/run-remote.sh --attach RUN HOST OUTDIR      wait for and fetch a run started before
#
# HOST is an ssh destination (user@hp012.utah.cloudlab.us) whose user may sudo without a
# password, as on CloudLab. PROFILE is smoke, quick or full. Environment: EDGEBPF_BIN (the
# binary to copy; default dist/edgebpf-linux-<the node's architecture>), SSH_OPTS (extra ssh
# options, e.g. "-i ~/.ssh/cloudlab -p 22"), POLL (seconds between polls, default 60),
# BOOTSTRAP=0 to skip bootstrap.sh, BOOTSTRAP_FLAGS (e.g. "--performance"), REMOTE_DIR
# (default edgebpf-run, in the user's home).
#
# It stops at the first failing step and names it. The node keeps what was copied up
# (~/REMOTE_DIR) and the results; the run itself removes everything it creates on exit.
set -Eeuo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
step="start"
on_error() {
	local rc=$?
	echo "run-remote: step \"$step\" failed (exit $rc)" >&2
	exit "$rc"
}
trap on_error ERR

say() { echo "run-remote: $*"; }
begin() {
	step=$1
	say "$step"
}
die() {
	trap - ERR
	echo "run-remote: step \"$step\" failed: $*" >&2
	exit 1
}
usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

attach=""
if [[ ${1:-} == --attach ]]; then
	[[ $# -eq 4 ]] || {
		usage >&2
		exit 2
	}
	attach=$2
	host=$3
	outdir=$4
	profile=""
	shift 4
else
	if [[ $# -lt 3 || ${1:-} == -h || ${1:-} == --help ]]; then
		usage >&2
		exit 2
	fi
	host=$1
	profile=$2
	outdir=$3
	shift 3
	if [[ ${1:-} == -- ]]; then
		shift
	elif [[ $# -gt 0 ]]; then
		usage >&2
		exit 2
	fi
fi
extra=("$@")

begin "check the arguments"
if [[ -z $attach ]]; then
	case $profile in
	smoke | quick | full) ;;
	*) die "profile \"$profile\" is unknown: choose smoke, quick or full" ;;
	esac
fi
poll=${POLL:-60}
[[ $poll =~ ^[1-9][0-9]*$ ]] || die "POLL=$poll is not a number of seconds"
remote_dir=${REMOTE_DIR:-edgebpf-run}
[[ $remote_dir =~ ^[A-Za-z0-9._/-]+$ ]] || die "REMOTE_DIR=$remote_dir holds characters other than letters, digits and ._/-"
bootstrap_flags=${BOOTSTRAP_FLAGS:-}
[[ $bootstrap_flags =~ ^[a-z\ -]*$ ]] || die "BOOTSTRAP_FLAGS=$bootstrap_flags is not a list of bootstrap.sh flags"
mkdir -p "$outdir"
read -r -a ssh_opts <<<"${SSH_OPTS:-}"
ssh_opts+=(-o BatchMode=yes -o ServerAliveInterval=30)

# rsh runs a command on the node; the command is a single string interpreted by the node's
# shell, built here on purpose.
# shellcheck disable=SC2029
rsh() { ssh "${ssh_opts[@]}" "$host" "$1"; }

begin "reach $host"
rsh true || die "cannot ssh to $host: check the host name, your key (SSH_OPTS=\"-i KEY\") and that the experiment is ready"
rsh "sudo -n true" || die "$host: the user cannot sudo without a password"

if [[ -z $attach ]]; then
	begin "detect the node's architecture"
	machine=$(rsh "uname -m")
	case $machine in
	x86_64) arch=amd64 ;;
	aarch64 | arm64) arch=arm64 ;;
	*) die "$host runs on $machine: make dist builds amd64 and arm64 only" ;;
	esac
	say "$machine"

	begin "find the binary"
	bin=${EDGEBPF_BIN:-$repo/dist/edgebpf-linux-$arch}
	[[ -x $bin ]] || die "$bin is missing: run make dist (or set EDGEBPF_BIN)"

	begin "copy edgebpf and bootstrap.sh to $host:$remote_dir"
	rsh "mkdir -p '$remote_dir'"
	rsh "cat > '$remote_dir/edgebpf'" <"$bin"
	rsh "cat > '$remote_dir/bootstrap.sh'" <"$here/bootstrap.sh"
	rsh "chmod +x '$remote_dir/edgebpf' '$remote_dir/bootstrap.sh'"

	if [[ ${BOOTSTRAP:-1} != 0 ]]; then
		begin "bootstrap the node"
		rsh "sudo '$remote_dir/bootstrap.sh' $bootstrap_flags" || die "bootstrap.sh failed on $host (its output above names the step)"
	fi

	begin "check the node's kernel"
	rsh "sudo '$remote_dir/edgebpf' check" || die "edgebpf check failed on $host"

	begin "start the $profile profile"
	run=$(date -u +%Y%m%d-%H%M%S)-$profile
	flags=""
	for a in "${extra[@]}"; do
		flags+=" $(printf '%q' "$a")"
	done
	# Detached from this ssh session: the run survives a dropped connection. Its log and pid
	# sit beside the results directory.
	rsh "cd '$remote_dir' && mkdir -p results && sudo -n setsid -f sh -c 'echo \$\$ > results/$run.pid; exec ./edgebpf run all --dataplane all --profile $profile --out results/$run$flags' > results/$run.log 2>&1 < /dev/null &"
	sleep 2
	say "started $run on $host; if this script is stopped the run goes on: cloudlab/run-remote.sh --attach $run $host $outdir"
else
	run=$attach
	[[ $run =~ ^[A-Za-z0-9._-]+$ ]] || die "run name $run holds characters other than letters, digits and ._-"
	rsh "test -f '$remote_dir/results/$run.pid'" || die "no run $run on $host (looked for ~/$remote_dir/results/$run.pid)"
fi

begin "wait for $run"
trap 'echo; say "stopped waiting; the run goes on on $host. Resume: cloudlab/run-remote.sh --attach $run $host $outdir; stop it: ssh $host sudo kill -INT \$(cat $remote_dir/results/$run.pid)"; exit 130' INT
failures=0
while :; do
	if status=$(rsh "pid=\$(cat '$remote_dir/results/$run.pid' 2>/dev/null) && test -d /proc/\$pid && echo running || echo ended; tail -n 1 '$remote_dir/results/$run.log' 2>/dev/null" 2>/dev/null); then
		failures=0
		state=${status%%$'\n'*}
		last=${status#*$'\n'}
		[[ $state == "$status" ]] && last=""
		say "$state: ${last:0:160}"
		[[ $state == ended ]] && break
	else
		failures=$((failures + 1))
		say "cannot reach $host (attempt $failures of 10); retrying"
		((failures < 10)) || die "lost $host; resume later with: cloudlab/run-remote.sh --attach $run $host $outdir"
	fi
	sleep "$poll"
done
trap - INT

begin "fetch the results into $outdir"
rsh "test -d '$remote_dir/results/$run'" || die "the run left no results directory; its log: ssh $host cat $remote_dir/results/$run.log"
rsh "tar -C '$remote_dir/results' -cf - '$run' '$run.log'" | tar -C "$outdir" -xf -
say "results: $outdir/$run (log: $outdir/$run.log)"

begin "read the run's status"
status=$(sed -n 's/^  "status": "\(.*\)",\{0,1\}$/\1/p' "$outdir/$run/meta.json" | tail -n 1)
[[ -f $outdir/$run/index.html ]] && say "report: $outdir/$run/index.html"
say "status: ${status:-unknown}"
[[ $status == "done" ]] || {
	trap - ERR
	say "not every experiment ran through: see $outdir/$run/meta.json and $outdir/$run.log"
	exit 1
}
