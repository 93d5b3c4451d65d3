# calico-lb. `make test` is what CI runs (.ci/run); `make bench` prints the
# allocator's benchmark figures that README quotes.

GO          ?= go
# The Go toolchain calico-lb is built, shipped and tested with. The go command
# fetches it from the module proxy once per machine (76 MB); a machine's own Go
# (go1.26.8 here) lacks standard-library fixes that the listeners need
# (net/http's HTTP/2 server among them). go.mod's go line stays at the oldest
# Go the module builds with. `make GOTOOLCHAIN=local` uses the machine's own.
export GOTOOLCHAIN := go1.27.3
CACHE       := $(CURDIR)/.cache
BIN         := $(CACHE)/bin
STATICCHECK_VERSION := v0.8.2
# The tools are built with the toolchain, which they must be at least as new as.
STATICCHECK := $(BIN)/staticcheck-$(STATICCHECK_VERSION)-$(GOTOOLCHAIN)
# govulncheck and the Go vulnerability database, both pinned: the database
# is the golang.org/x/vulndb module (its data/osv directory), which the Go
# module proxy serves, so the check needs no other network access.
GOVULNCHECK_VERSION := v1.9.0
GOVULNCHECK := $(BIN)/govulncheck-$(GOVULNCHECK_VERSION)-$(GOTOOLCHAIN)
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
# How much each fuzz target runs in `make test`: a count of executions, not a
# duration. With a duration, Go 1.26's fuzz coordinator can report its own
# deadline as a failure with no crasher (golang/go#75804, fixed in Go 1.27).
# `make fuzz FUZZTIME=2000000x` for a longer run.
FUZZTIME    ?= 50000x
# `make demo MODE=l2` runs the L2-mode demo instead of the default one;
# `make demo MODE=racks` the racks topology (Calico's BGP on the nodes, the
# speakers peering the spine).
MODE        ?=
BENCHCOUNT  ?= 5

# package:FuzzTarget, one go test -fuzz run each (go test fuzzes one target at a time).
FUZZ_TARGETS := \
	./workload/iprange:FuzzParse \
	./workload/iprange:FuzzCIDRs \
	./workload/config:FuzzParsePools \
	./workload/config:FuzzParsePeers \
	./workload/config:FuzzParseFile \
	./workload/calico:FuzzParse \
	./workload/calico:FuzzMerge \
	./workload/speaker:FuzzOpenHeartbeat

.PHONY: all build demo test unit e2e fuzz lint vulncheck tools deps bench bench-summary bench-controller bench-takeover bench-bgp bench-l2 bench-flood bench-failover bench-charm bench-speaker-memory charm image sbom clean

all: build

build:
	$(GO) build ./...
	$(GO) build -o bin/calico-lb ./workload/cmd/calico-lb
	CGO_ENABLED=0 $(GO) build -o bin/calico-lb-juju ./charm/cmd/calico-lb-juju

# A real control plane on loopback, the real controller, a handful of
# Services, and a held-back pool change applied; then spine mode (MODE=l2:
# L2 mode) on real nodes with calico-lb deployed as Juju deploys it. Builds
# what it needs.
demo: build tools deps
	$(GO) run ./tests/demo --binary bin/calico-lb --mode "$(MODE)"

test: lint vulncheck e2e fuzz

# The fast tests alone: pure logic, fakes for unit tests, no control plane,
# no network namespaces, no root (-short skips the others).
unit:
	$(GO) test -short -race -count=1 ./...

# Every test, real parts included: real control planes, kubelets, routers
# in network namespaces, Pebble (root, packages from `make deps`). The test
# beds (tests/...) run one package at a time: each starts real clusters and
# nodes, and two side by side starve each other's timers on 2 cores (L2
# heartbeats are 350 ms).
e2e: tools deps
	$(GO) test -race -count=1 -timeout 30m ./charm/... ./workload/... ./docs/...
	$(GO) test -race -count=1 -timeout 45m -p 1 ./tests/...

# Debian packages the network test beds use: real routers (FRR, BIRD), the
# tools to build and break links, and what the beds' real nodes need besides
# the Kubernetes components and containerd built into .cache/bin (runc, the
# CNI plugins, iptables and conntrack for kube-proxy), and QEMU with busybox
# for the router whose kernel has VRF devices (tests/vmrouter; it downloads
# Debian's kernel package into .cache/vm on first use). Installed when missing
# and running as root; otherwise those tests skip (or fail under
# CALICO_LB_E2E=1).
DEBS := frr bird2 nftables iproute2 iputils-arping iputils-ping tcpdump curl runc containernetworking-plugins iptables conntrack qemu-system-x86 busybox-static \
	libuv1-dev liblz4-dev autoconf automake libtool pkg-config
deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run make deps as root)"; exit 0; fi; \
	echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null

# etcd, the Kubernetes components (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy, kubectl), containerd and Pebble for the
# tests' real clusters, built once into .cache/bin from tests/tools/* (cold:
# about 5 minutes on an idle 2-core machine, more under load); and Juju 4
# (client, controller agent with Dqlite, unit agent, hook tools) into
# .cache/juju for the real controller of tests/jujubed (cold: 5-8 minutes).
tools: deps
	$(GO) run ./tests/cluster/cmd/controlplane build
	$(GO) run ./tests/jujubed/cmd/jujubed build

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	if [ -n "$$out" ]; then echo "gofmt -l reports unformatted files:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Known vulnerabilities in code calico-lb calls: each must be fixed or listed,
# with the reason, in .ci/vuln-allow.txt.
vulncheck: $(GOVULNCHECK)
	@mkdir -p $(CACHE)
	@db=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	$(GOVULNCHECK) -db "file://$$db/data/osv" ./... > $(CACHE)/vulncheck.txt 2>&1; \
	found=$$(sed -n 's/^Vulnerability #[0-9]*: \(GO-[0-9]*-[0-9]*\).*/\1/p' $(CACHE)/vulncheck.txt | sort -u); \
	if [ -z "$$found" ] && ! grep -q "No vulnerabilities found\|Your code is affected" $(CACHE)/vulncheck.txt; then cat $(CACHE)/vulncheck.txt; echo "govulncheck did not run"; exit 1; fi; \
	new=""; for id in $$found; do grep -q "^$$id " .ci/vuln-allow.txt || new="$$new $$id"; done; \
	if [ -n "$$new" ]; then cat $(CACHE)/vulncheck.txt; echo "vulnerabilities in code calico-lb calls, not in .ci/vuln-allow.txt:$$new"; exit 1; fi; \
	stale=""; for id in $$(sed -n 's/^\(GO-[0-9]*-[0-9]*\) .*/\1/p' .ci/vuln-allow.txt); do echo "$$found" | grep -qx "$$id" || stale="$$stale $$id"; done; \
	if [ -n "$$stale" ]; then echo ".ci/vuln-allow.txt lets through what govulncheck no longer finds; take these lines out:$$stale"; exit 1; fi; \
	echo "govulncheck $(GOVULNCHECK_VERSION), vulndb $(VULNDB_VERSION): $$(echo $$found | wc -w) known, each listed with its reason in .ci/vuln-allow.txt; nothing new"

$(GOVULNCHECK):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)
	mv $(BIN)/govulncheck $@

$(STATICCHECK):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(BIN)/staticcheck $@

# The allocator benchmarks, BENCHCOUNT runs each, then the median per case.
bench:
	@mkdir -p $(CACHE)
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) ./workload/allocator/ | tee $(CACHE)/bench.txt
	@$(MAKE) --no-print-directory bench-summary

# The median of each case in the last `make bench` run.
bench-summary:
	@echo; echo "median per case ($(CACHE)/bench.txt):"
	@$(GO) run ./tests/bench/cmd/benchsummary $(CACHE)/bench.txt

# A burst of 5,000 Services from 8 clients against the real control plane and
# the real controller; the last line is the summary README quotes.
bench-controller: build tools
	$(GO) run ./tests/bench/controller --binary bin/calico-lb --services 5000 --clients 8

# Standby takeover: 30,000 Services, then the leading controller killed with
# SIGKILL beside two warm standbys, twice (the second a leader 2 s into its
# term), each timed from the kill to a new Service's IP in its status.
bench-takeover: build tools
	$(GO) run ./tests/bench/controller --binary bin/calico-lb --services 30000 --clients 8 --takeover

# Spine-mode timings on real nodes (containerd, kubelet, kube-proxy) with
# calico-lb deployed as Juju deploys it and an FRR spine, in network
# namespaces (root), BFD at 50 ms x 3, then 10 minutes with both cores
# saturated counting BFD sessions down; the last line is the summary.
bench-bgp: tools deps
	$(GO) run ./tests/bench/bgp --bfd-interval 50ms --soak 10m

# A speaker's resident memory (the real binary, the real control plane)
# while a tenant creates 1,000 Services with 200 KiB of annotations each,
# which every speaker caches; its limit in the DaemonSet is 384 MiB.
bench-speaker-memory: build tools
	$(GO) run ./tests/bench/speakermem --binary bin/calico-lb --services 1000 --annotation-kib 200

# L2-mode failover as a client sees it on three real nodes: 20 speaker
# SIGKILLs (in their pods) and 20 owner link-downs on one segment, in network
# namespaces (root), then 10 minutes with both cores saturated, counting
# false failovers; `l2-failover` is the summary README quotes.
bench-l2: tools deps
	$(GO) run ./tests/bench/l2 --trials 20 --soak 10m

# A UDP flood from a host that is not a speaker at the l2 heartbeat port
# and the BFD port: false failovers, BFD downs and the client's failures,
# quiet and flooded, a minute each.
bench-flood: tools deps
	$(GO) run ./tests/bench/flood --for 1m

# The failover-test action, each mode 10 times on the spine bed (BFD) and the
# L2 bed, through the charm's real dispatch with the probe agent on the
# client (root); the last line is the summary README quotes.
bench-failover: tools deps
	$(GO) run ./tests/bench/failover --runs 10

# The real dispatch binary's wall time for config-changed and update-status
# (with `calico-lb access` not due, and due), with the real workload binary
# under a live Pebble against a real kube-apiserver and the fake hook tools,
# medians of 20; the last line is the summary.
bench-charm: tools
	$(GO) test -run '^$$' -bench Dispatch -benchtime 20x -count 1 ./tests/bench/charm/ | tee $(CACHE)/bench-charm.txt
	@grep '^charm-dispatch' $(CACHE)/bench-charm.txt | tail -1

# The charm without charmcraft: dispatch built as charmcraft.yaml builds
# it, zipped reproducibly with the charm's files (charm/cmd/pack).
# One charm per architecture the image has (charmcraft's platforms): Juju
# deploys the one of the cluster's nodes.
CHARM_ARCHES := amd64 arm64
charm:
	@mkdir -p bin
	@set -e; for arch in $(CHARM_ARCHES); do \
		CGO_ENABLED=0 GOARCH=$$arch $(GO) build -trimpath -ldflags=-s -o bin/dispatch-$$arch ./charm/cmd/dispatch; \
		$(GO) run ./charm/cmd/pack -o calico-lb_$$arch.charm -dispatch bin/dispatch-$$arch -arch $$arch; \
		echo "calico-lb_$$arch.charm"; \
	done

# The workload image as an OCI archive (amd64 + arm64), without Docker; the
# same commit gives the same digest. README shows how to push it.
image:
	$(GO) run ./workload/cmd/mkimage -o bin/calico-lb.oci.tar

# The image and its SBOM: one CycloneDX document per binary in it (calico-lb
# and Pebble, each architecture), from the module list Go embeds in each
# binary, so it names exactly what was linked (bin/sbom/ARCH-NAME.cdx.json).
CYCLONEDX_GOMOD := github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0
sbom:
	rm -rf bin/image bin/sbom
	$(GO) run ./workload/cmd/mkimage -o bin/calico-lb.oci.tar -binaries bin/image
	mkdir -p bin/sbom
	for b in bin/image/*/*; do \
		arch=$$(basename $$(dirname $$b)); name=$$(basename $$b); \
		$(GO) run $(CYCLONEDX_GOMOD) bin -json -output bin/sbom/$$arch-$$name.cdx.json $$b || exit 1; \
	done
	@ls bin/sbom

clean:
	rm -rf bin calico-lb.charm calico-lb_*.charm $(CACHE)/bench.txt
