#!/usr/bin/env bash
# bootstrap.sh prepares a fresh Ubuntu or Debian node for edgebpf's static binary: it installs
# what the run needs and nothing more (iproute2 to inspect nodes by hand; iperf3 and sockperf,
# which only the calibration experiment runs; hping3 if the distribution has it), loads the
# kernel modules the data planes use, and says what the kernel lacks. Idempotent: it installs
# only what is missing and records what it changed under /var/lib/edgebpf-bootstrap.
#
#   sudo ./bootstrap.sh                 packages and modules
#   sudo ./bootstrap.sh --hwe-kernel    also Ubuntu 22.04's HWE kernel (Linux 6.8: TCX for the
#                                       ebpf data plane); reboot afterwards and run it again
#   sudo ./bootstrap.sh --performance   also CPU governor performance and turbo off, until reboot
#   sudo ./bootstrap.sh --restore-cpu   undo --performance
#   sudo ./bootstrap.sh --undo          remove the packages this script installed
#
# Every step is named; on a failure the script stops and says which step failed and what it
# had changed so far, with the command that undoes it.
set -Eeuo pipefail

state=/var/lib/edgebpf-bootstrap
step="start"
changed=() # what this invocation changed, for the failure message

fail_report() {
	local rc=$?
	echo "bootstrap: step \"$step\" failed (exit $rc)" >&2
	report_changes
	exit "$rc"
}

report_changes() {
	if ((${#changed[@]})); then
		echo "bootstrap: this run had already changed: ${changed[*]}" >&2
	else
		echo "bootstrap: this run changed nothing" >&2
	fi
	echo "bootstrap: to undo what bootstrap.sh changed: sudo $0 --undo; sudo $0 --restore-cpu" >&2
}
trap fail_report ERR

say() { echo "bootstrap: $*"; }
begin() {
	step=$1
	say "$step"
}
die() {
	trap - ERR
	echo "bootstrap: step \"$step\" failed: $*" >&2
	report_changes
	exit 1
}

usage() {
	sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
}

hwe=0 performance=0 restore_cpu=0 undo=0
for arg in "$@"; do
	case $arg in
	--hwe-kernel) hwe=1 ;;
	--performance) performance=1 ;;
	--restore-cpu) restore_cpu=1 ;;
	--undo) undo=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		die "unknown argument $arg"
		;;
	esac
done

begin "check privileges"
[[ $(id -u) -eq 0 ]] || die "run as root (sudo $0)"
mkdir -p "$state"

# installed lists the packages this script installed, one per line, for --undo.
installed_file=$state/installed-packages
cpu_file=$state/cpu-settings

restore_cpu_settings() {
	begin "restore CPU settings"
	if [[ ! -f $cpu_file ]]; then
		say "no CPU settings recorded: nothing to restore"
		return
	fi
	local path value
	while IFS=' ' read -r path value; do
		[[ -n $path ]] || continue
		if [[ -w $path ]]; then
			echo "$value" >"$path"
		fi
	done <"$cpu_file"
	rm -f "$cpu_file"
	say "CPU governor and turbo restored"
}

if ((restore_cpu)); then
	restore_cpu_settings
	((undo)) || exit 0
fi

if ((undo)); then
	begin "remove the packages bootstrap.sh installed"
	if [[ -s $installed_file ]]; then
		mapfile -t pkgs <"$installed_file"
		DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq "${pkgs[@]}" >/dev/null
		rm -f "$installed_file"
		say "removed ${pkgs[*]}"
	else
		say "bootstrap.sh installed no packages: nothing to remove"
	fi
	exit 0
fi

begin "check the distribution"
[[ -r /etc/os-release ]] || die "/etc/os-release is missing: this is not a Debian or Ubuntu system"
# shellcheck disable=SC1091
. /etc/os-release
case " ${ID:-} ${ID_LIKE:-} " in
*" debian "* | *" ubuntu "*) say "${PRETTY_NAME:-$ID}" ;;
*) die "${PRETTY_NAME:-unknown system} is neither Debian nor Ubuntu: install iproute2, iperf3 and sockperf by hand" ;;
esac
command -v apt-get >/dev/null || die "apt-get is missing"

# No pipes into grep -q here: under pipefail the writer's SIGPIPE would fail the test.
is_installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }
has_candidate() {
	local policy
	policy=$(apt-cache policy "$1" 2>/dev/null)
	[[ $policy =~ Candidate:\ [^\(] ]]
}

begin "install packages"
required=(iproute2 iperf3 sockperf)
optional=(hping3)
missing=()
for p in "${required[@]}" "${optional[@]}"; do
	is_installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
	apt-get update -qq
	want=()
	for p in "${missing[@]}"; do
		if has_candidate "$p"; then
			want+=("$p")
		elif [[ " ${optional[*]} " == *" $p "* ]]; then
			say "optional package $p is not available here: skipped"
		else
			die "package $p is not available from this system's apt sources (on Ubuntu it is in universe: add-apt-repository universe)"
		fi
	done
	if ((${#want[@]})); then
		# iperf3 asks whether to start a daemon: no.
		echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections
		say "installing ${want[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
		printf '%s\n' "${want[@]}" >>"$installed_file"
		changed+=("installed ${want[*]}")
	fi
else
	say "every package is already installed"
fi

begin "load kernel modules"
# Built-in modules load as no-ops; a missing one is reported by edgebpf check, not fatal here.
if command -v modprobe >/dev/null; then
	for m in veth bridge tun nf_tables nft_chain_nat nf_nat nf_conntrack; do
		if ! modprobe -q "$m" 2>/dev/null; then
			say "module $m could not be loaded (built in, or missing: edgebpf check will say)"
		fi
	done
else
	say "modprobe is not installed (no kmod): the kernel loads modules on demand; edgebpf check will say what is missing"
fi

begin "check the kernel"
kernel=$(uname -r)
major=${kernel%%.*}
rest=${kernel#*.}
minor=${rest%%[!0-9]*}
if ((major < 6 || (major == 6 && minor < 6))); then
	say "Linux $kernel predates 6.6: the ebpf data plane needs TCX and will be skipped"
	if [[ ${ID:-} == ubuntu && ${VERSION_ID:-} == 22.04 ]]; then
		if ((hwe)); then
			begin "install the HWE kernel"
			if is_installed linux-generic-hwe-22.04; then
				say "linux-generic-hwe-22.04 is installed: reboot into it (sudo reboot)"
			else
				DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-generic-hwe-22.04 >/dev/null
				echo linux-generic-hwe-22.04 >>"$installed_file"
				changed+=("installed linux-generic-hwe-22.04")
				say "installed linux-generic-hwe-22.04; reboot (sudo reboot) and run bootstrap.sh again."
				say "to undo: sudo $0 --undo, then reboot into $kernel, which stays installed"
			fi
		else
			say "on Ubuntu 22.04, sudo $0 --hwe-kernel installs Linux 6.8; then reboot"
		fi
	fi
else
	say "Linux $kernel has TCX"
fi
[[ -e /sys/kernel/btf/vmlinux ]] || say "/sys/kernel/btf/vmlinux is missing: the ebpf data plane will be skipped"

if ((performance)); then
	begin "set CPU governor performance and turbo off"
	recorded=0
	[[ -f $cpu_file ]] && recorded=1 # keep the first recorded values: they are the originals
	targets=()
	for g in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
		[[ -w $g ]] && targets+=("$g performance")
	done
	[[ -w /sys/devices/system/cpu/intel_pstate/no_turbo ]] && targets+=("/sys/devices/system/cpu/intel_pstate/no_turbo 1")
	[[ -w /sys/devices/system/cpu/cpufreq/boost ]] && targets+=("/sys/devices/system/cpu/cpufreq/boost 0")
	if ((${#targets[@]} == 0)); then
		say "this machine exposes no CPU frequency controls: nothing to set"
	fi
	for t in "${targets[@]}"; do
		path=${t% *}
		value=${t##* }
		((recorded)) || echo "$path $(cat "$path")" >>"$cpu_file"
		echo "$value" >"$path"
	done
	if ((${#targets[@]})); then
		changed+=("CPU governor and turbo (until reboot)")
		say "set; undo with: sudo $0 --restore-cpu (or reboot)"
	fi
fi

trap - ERR
say "done. Next: sudo ./edgebpf check, then sudo ./edgebpf run all --dataplane all --profile quick"
