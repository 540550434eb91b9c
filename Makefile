# edgebpf: build, test, run and regenerate BPF objects. Targets that create namespaces need root.
GO       ?= go
# The clang major version is pinned: generated BPF objects must not change with the compiler.
CLANG    ?= clang-14
STRIP    ?= llvm-strip-14
BPF_CFLAGS ?= -O2 -g -Wall -Werror
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X github.com/edgebpf/edgebpf/reports.Version=$(VERSION) -X github.com/edgebpf/edgebpf/reports.Commit=$(COMMIT)
PROFILE  ?= quick
OUT      ?= results/$(shell date +%Y%m%d-%H%M%S)-$(PROFILE)

# AS_ROOT runs what needs root (apt, namespaces, BPF) directly when make runs as root and
# through sudo otherwise, keeping PATH so that sudo finds the same Go. A fresh root machine has
# no sudo and needs none.
AS_ROOT := $(if $(filter 0,$(shell id -u)),,sudo env "PATH=$(PATH)")

# dist builds these architectures into DIST_DIR.
DIST_ARCHS ?= amd64 arm64
DIST_DIR   ?= dist

.PHONY: all build dist deps run reproduce gate test test-short test-unprivileged test-race vet generate check-generated clean

all: build

# deps installs what a fresh Debian machine lacks (apt packages, Go modules); idempotent.
deps:
	$(AS_ROOT) scripts/install-deps.sh

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o edgebpf ./cmd/edgebpf

# dist: static binaries dist/edgebpf-linux-<arch> that run without Go, clang, libc or the
# source tree (the BPF objects are embedded), and their SHA256SUMS. cloudlab/run-remote.sh
# copies one to the node.
dist:
	@mkdir -p $(DIST_DIR)
	@for arch in $(DIST_ARCHS); do \
		echo "$(DIST_DIR)/edgebpf-linux-$$arch"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" \
			-o $(DIST_DIR)/edgebpf-linux-$$arch ./cmd/edgebpf || exit 1; \
	done
	cd $(DIST_DIR) && sha256sum edgebpf-linux-* > SHA256SUMS

# run: the experiment suite on this machine with the built-in topology.
run: deps build
	$(AS_ROOT) ./edgebpf run all --dataplane all --profile $(PROFILE) --out $(OUT)

# reproduce: the whole suite on every data plane with the theses' parameters (PROFILE=full,
# the default here; hours: README.md, "Reproducing on bare metal"), then the report.
reproduce: PROFILE = full
reproduce: deps build
	$(AS_ROOT) ./edgebpf check
	$(AS_ROOT) ./edgebpf run all --dataplane all --profile $(PROFILE) --out $(OUT)

# gate: the CI regression gate (README, "Regression gates in CI"): a ci run of the headline
# metrics on direct and ebpf (2 - 3 min here), compared relative to direct with BASE, a
# stored run made the same way; exit 1 on a regression.
gate: PROFILE = ci
gate: build
	@test -n "$(BASE)" || { echo "make gate needs BASE=<results directory of a ci run>"; exit 2; }
	$(AS_ROOT) ./edgebpf run all --profile ci --dataplane direct,ebpf --out $(OUT)
	./edgebpf compare $(BASE) $(OUT) --relative-to direct

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt would change:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# test: every tier. Privileged tests skip without root unless EDGEBPF_REQUIRE_PRIVILEGED=1.
test: deps vet
	$(AS_ROOT) $(GO) test -count=1 -timeout 20m ./...

test-short: vet
	$(GO) test -count=1 -short ./...

# test-unprivileged: the short tests as root with every capability dropped, as a user without
# privileges runs them: privileged tests must skip, and every input check must come before
# anything needs a privilege. It ignores EDGEBPF_REQUIRE_PRIVILEGED on purpose.
test-unprivileged: vet
	env -u EDGEBPF_REQUIRE_PRIVILEGED setpriv --bounding-set=-all --inh-caps=-all $(GO) test -count=1 -short ./...

# test-race: every tier under the race detector (about 3 min here); CI runs it after test.
test-race: deps
	$(AS_ROOT) $(GO) test -race -count=1 -timeout 30m ./...

# generate rebuilds the committed bpf2go output (*_bpfel.go, *_bpfel.o) from bpf/.
# bpf2go reads its compiler, strip tool and flags from these variables.
generate:
	BPF2GO_CC=$(CLANG) BPF2GO_STRIP=$(STRIP) BPF2GO_CFLAGS="$(BPF_CFLAGS)" $(GO) generate ./...

# check-generated fails when the committed BPF objects differ from what bpf/ compiles to.
check-generated: generate
	@git diff --exit-code -- '*_bpfel.go' '*_bpfel.o' || { echo "generated BPF files are stale: run 'make generate' and commit them"; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard -- '*_bpfel.go' '*_bpfel.o')" || { echo "generated BPF files are not committed: run 'make generate' and commit them"; exit 1; }

clean:
	rm -f edgebpf
	rm -rf dist
