#!/usr/bin/env bash
# Installs what edgebpf needs on a fresh Debian/Ubuntu machine: the pinned BPF toolchain (to
# regenerate and check BPF objects), iproute2, the reference tools the calibration compares
# against (iperf3, sockperf, hping3), gcc (cgo for the race detector and the host include path)
# and shellcheck (the scripts' tests); then the Go modules.
# Idempotent: it installs only what is missing and touches nothing else.
set -euo pipefail

pkgs=(clang-14 llvm-14 libbpf-dev bpftool gcc libc6-dev iproute2 iperf3 sockperf hping3 jq chromium fonts-liberation shellcheck)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "install-deps: missing packages ${missing[*]}: run as root (sudo make deps)" >&2
		exit 1
	fi
	echo "install-deps: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v go >/dev/null; then
	echo "install-deps: Go is not installed: install Go $(sed -n 's/^go //p' go.mod) or newer" >&2
	exit 1
fi
go mod download
