# idemgate — every target a newcomer or CI needs. `make help` lists them.
SHELL := /bin/bash
GO ?= go
BUILD := build
WASM := $(BUILD)/idempotency.wasm
FUZZTIME ?= 60s

.DEFAULT_GOAL := help
.PHONY: help deps demo-deps wasm build image image-push unit test test-wasm bench bench-v8 fuzz fuzz-smoke lint check mutate demo e2e e2e-docker chaos bench-e2e load clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

# Tests start private redis-server instances on free loopback ports; the
# race detector needs cgo, hence a C compiler; Node.js (V8, Envoy's Wasm
# engine) runs the V8 benchmark harness, which a test runs too.
deps: ## install what tests and benchmarks need beyond Go: redis-server, redis-cli, redis-benchmark, gcc, node
	@missing=""; \
	for c in redis-server redis-cli redis-benchmark; do command -v $$c >/dev/null || missing="redis-server"; done; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing:$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	else \
	  echo "missing:$$missing — install it (Debian/Ubuntu: sudo apt-get install -y $$missing; macOS: brew install redis node)" >&2; \
	  exit 1; \
	fi

# The demo needs nothing beyond Go: without redis-server it runs on the
# embedded dev-only store (e2e/README.md). So this only tries to install
# redis-server, and never fails: not root, no apt, offline — it says so and
# the demo falls back.
demo-deps: ## try to install redis-server for the demo (root + apt only); never fails
	@command -v redis-server >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing redis-server for the demo"; \
	  if apt-get update -o Acquire::Retries=0 -o Acquire::http::Timeout=20 -o Acquire::https::Timeout=20 && \
	     DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; then exit 0; fi; \
	  echo "could not install redis-server: the demo will use the embedded dev-only store" >&2; \
	else \
	  echo "redis-server is not installed (installing it needs root and apt-get): the demo will use the embedded dev-only store" >&2; \
	fi

# The module is replaced only when its bytes change: the tests that read it
# keep their cached results (make unit) while it is the same.
wasm: ## build the filter: build/idempotency.wasm (standard Go, wasip1 reactor)
	@mkdir -p $(BUILD)
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -o $(WASM).new ./plugin
	@if cmp -s $(WASM).new $(WASM); then rm $(WASM).new; else mv $(WASM).new $(WASM); fi

build: wasm ## build the wasm filter and the binaries into build/
	$(GO) build -trimpath -o $(BUILD)/ ./controlplane/... ./e2e/cmd/...

# The images (images/, README "Images"), built with no Docker engine. The
# version, revision and time come from git, so the same commit gives the
# same digests; override them (and IMAGE_TAG) for a release.
IMAGE_TAG ?= dev
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
MKIMAGE := $(GO) run ./images/cmd/mkimage -out $(BUILD)/images -tag $(IMAGE_TAG)

image: wasm ## build/images/{idempotency-wasm,controlplane}.tar without Docker; prints the digests to pin
	$(MKIMAGE) -wasm $(WASM) -version $(VERSION) -revision $(REVISION) -created $(SOURCE_DATE_EPOCH)

# Checked before anything is built.
ifneq ($(filter image-push,$(MAKECMDGOALS)),)
ifeq ($(REGISTRY),)
$(error make image-push needs REGISTRY, e.g. make image-push REGISTRY=ghcr.io/you)
endif
endif
image-push: image ## push both images to REGISTRY (REGISTRY=ghcr.io/you [IMAGE_TAG=v1.0.0]; auth: your Docker config)
	$(MKIMAGE) -push $(REGISTRY)

lint: $(BUILD)/staticcheck ## gofmt, go vet and staticcheck (native and wasip1)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./plugin/...
	$(BUILD)/staticcheck ./...
	GOOS=wasip1 GOARCH=wasm $(BUILD)/staticcheck ./plugin/...

# staticcheck at the version tools/go.mod pins (go.sum-checked), built from
# that module of its own so that the linter's dependencies never raise the
# versions the filter and the control plane link. Built for the host: it
# reads GOOS/GOARCH only to load the packages it checks.
$(BUILD)/staticcheck: tools/go.mod tools/go.sum
	@mkdir -p $(BUILD)
	$(GO) -C tools build -o $(CURDIR)/$@ honnef.co/go/tools/cmd/staticcheck

# make unit: the tests that need no Redis, no Node.js, no network beyond
# loopback and nothing make build or make image writes (only the wasm
# module), for the edit-test loop; make test stays the gate. Every
# package, except those whose tests all need Redis or the built stack
# (UNIT_EXCLUDE), run but for the tests UNIT_SKIP names (those that need
# Redis, Node.js or make build/image, and the filter's two memory soaks,
# TestSoak and TestHeldStreamsMemory: half of unit's time); the packages
# that mix (UNIT_MIXED) run only the tests UNIT_RUN names, those that
# start no Redis. With IDEMGATE_UNIT=1 internal/redistest fails any test
# that starts a redis-server, so a list that lets one in fails loudly.
# Go's test cache stays on: a package whose code, files read (the wasm
# module included) and environment are unchanged is not run again, so
# the loop reruns what an edit touched; make test runs all with -count=1.
UNIT_EXCLUDE := controlplane/store|e2e|e2e/chaos|e2e/cmd/demo
UNIT_MIXED := controlplane|controlplane/reconcile|controlplane/server|internal/redistest
UNIT_SKIP := ^Test(V8|Keys|Soak$$|HeldStreamsMemory$$|BurstStaysBounded$$|RegistryRoundTrip$$|MakeImageReproducible$$|RedisServerRestartKeepsData$$|SupervisedStackSurvivesKills$$|GovernedRequests$$|EdgeCacheSharedByWorkers$$|NoResendOnDroppedConnection$$|UpstreamDown$$|ConcurrentDuplicates$$|UpstreamDropNeverReexecutes$$|ClientGoneMidBodyNotForwarded$$|UpstreamResetMidBody$$|ResponseOverBufferLimit$$|MemoryReported$$|RouteTable$$|ModuleCompiledOnce$$)
UNIT_RUN := ^Test(Serve|ParseConfig|ValidateConfig|ReadConfig|RunInsecureWarns|RunBadConfig|RunVersion|VersionLine|IsToken68|HTTPServerTimeouts|Lookup|ParseTargetFlag|ValidateTemplate|TargetURL|ResolveTargets|CredentialEnv|Backoff|RetryAfter|Gate|ReserveLimitOf|RedisSilent|NewRequiresAToken|RequestLimits|PanicIsA500Problem|ParseInfo|MissingBinaryFailsWithInstallHint|UnitRunStartsNoServer)
MODULE := github.com/idemgate/idemgate

unit: wasm ## the tests that need no Redis, Node.js or network (test cache on): under a minute
	IDEMGATE_UNIT=1 $(GO) test -skip '$(UNIT_SKIP)' $$($(GO) list ./... | grep -v -E '^$(MODULE)/($(UNIT_EXCLUDE)|$(UNIT_MIXED))$$')
	IDEMGATE_UNIT=1 $(GO) test -run '$(UNIT_RUN)' $(addprefix $(MODULE)/,$(subst |, ,$(UNIT_MIXED)))

# The filter's soak (plugin TestSoak): 10 000 requests in make test, 100 000
# in make check (a target-specific value, which make test inherits there).
SOAK_REQUESTS ?= 10000
check: SOAK_REQUESTS = 100000

test: deps build lint test-wasm image ## all tests (builds the wasm module and the images first: tests run against them)
	$(GO) test -count=1 -timeout 30m ./plugin/ -soak.requests=$(SOAK_REQUESTS)
	$(GO) test -count=1 -timeout 30m $$($(GO) list ./plugin/... | grep -v -x '$(MODULE)/plugin')
	@# The race detector covers the concurrent service code; idemctl (a CLI)
	@# links Envoy's API types, which would compile a second time with -race.
	$(GO) test -race -count=1 -timeout 30m $$($(GO) list ./controlplane/... ./internal/... | grep -v /idemctl)
	$(GO) test -count=1 ./controlplane/idemctl/
	$(GO) test -count=1 ./envoy/...
	$(GO) test -count=1 ./images/...
	$(GO) test -count=1 -timeout 30m ./e2e/...

# The pure packages the filter links are also tested compiled to wasip1 and
# run under wazero: Wasm differs (a small call stack, 32-bit int in places).
test-wasm: $(BUILD)/wasip1-exec ## pure packages' tests compiled to wasip1, run under wazero
	GOOS=wasip1 GOARCH=wasm $(GO) test -count=1 -exec $(CURDIR)/$(BUILD)/wasip1-exec ./plugin/canon/ ./plugin/frame/ ./plugin/policy/ ./controlplane/api/

$(BUILD)/wazero: go.mod
	@mkdir -p $(BUILD)
	$(GO) build -o $@ github.com/tetratelabs/wazero/cmd/wazero

# go test -exec runs this with the test binary and its flags; the tests read
# ../shared, so the host's file system is mounted and the directory kept.
$(BUILD)/wasip1-exec: $(BUILD)/wazero
	printf '#!/bin/sh\nbin=$$1; shift\nexec "%s" run -mount=/:/ -env=PWD="$$PWD" "$$bin" "$$@"\n' "$(CURDIR)/$(BUILD)/wazero" > $@
	chmod +x $@

bench: deps ## benchmarks, each side by side with its baseline; runs go into BENCHMARKS.md
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./plugin/canon/
	$(GO) test -run '^$$' -bench BenchmarkControlPlane -benchtime 3s ./controlplane/server/
	$(MAKE) wasm && $(GO) test -run '^$$' -bench BenchmarkGuest -benchtime 2000x -count 5 ./plugin/
	$(MAKE) bench-v8

# The same guest paths as BenchmarkGuest, under V8 (Envoy's default Wasm
# runtime) through a small proxy-wasm host in Node.js: best of 5 runs.
bench-v8: deps wasm ## guest time per request of build/idempotency.wasm under V8 (Node.js)
	node --experimental-wasi-unstable-preview1 plugin/bench/v8/guest_bench.mjs --wasm $(WASM) --config plugin/policy/testdata/demo.json --n 2000 --runs 5

fuzz: ## fuzz the canonicalizer, the callout bodies and the policy parser for FUZZTIME per target (default 60s)
	$(GO) test -run '^$$' -fuzz '^FuzzDifferential$$' -fuzztime $(FUZZTIME) ./plugin/canon/
	$(GO) test -run '^$$' -fuzz '^FuzzAppend$$' -fuzztime $(FUZZTIME) ./plugin/canon/
	$(GO) test -run '^$$' -fuzz '^FuzzWalkGrammar$$' -fuzztime $(FUZZTIME) ./plugin/canon/
	$(GO) test -run '^$$' -fuzz '^FuzzCalloutBody$$' -fuzztime $(FUZZTIME) ./plugin/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./plugin/policy/
	$(GO) test -run '^$$' -fuzz '^FuzzParseKey$$' -fuzztime $(FUZZTIME) ./plugin/policy/

fuzz-smoke: ## a short fuzz run of each target
	$(MAKE) fuzz FUZZTIME=10s

check: test fuzz-smoke ## everything CI runs, the soak at 100 000 requests, plus a short fuzz

# Mutation testing (README "Mutation testing"), not part of make test: at
# 1 to 5 mutants a minute on our shared 2 cores the whole run takes hours;
# MUTATE_FLAGS narrows it (-E 'route\.go$$' leaves files out; --workers).
# gremlins runs with go run at a fixed version, so its own dependencies
# (cobra, viper, ...) stay out of our go.mod and go.sum; go caches the
# built tool. Only mutants the package's tests cover are run, each against
# that package's tests in a copy of the tree (hence IDEM_JCS_DIR: the RFC
# 8785 vectors beside the repository). -count=1 keeps the coverage run,
# whose time sets each mutant's timeout, from being a cached result; the
# timeouts are generous because a loaded machine compiles slowly. Two
# control-plane tests are skipped there: the Sentinel failover (24 s of the
# package's 57 s; Redis processes rather than the handlers' logic) and 64
# concurrent reserves, which under load can hit the Redis pool's timeout
# and would "kill" mutants by chance.
GREMLINS ?= $(GO) run github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0
MUTATE_FLAGS ?= --workers 2
mutate: deps ## mutation testing (gremlins) of plugin/canon, plugin/policy, controlplane/server; slow, scores in README
	IDEM_JCS_DIR=$(abspath ../shared/testdata/jcs) GOFLAGS=-count=1 \
	  $(GREMLINS) unleash $(MUTATE_FLAGS) --timeout-coefficient 10 ./plugin/canon
	GOFLAGS=-count=1 $(GREMLINS) unleash $(MUTATE_FLAGS) --timeout-coefficient 10 ./plugin/policy
	GOFLAGS='-count=1 -skip=^(TestSentinelKillMasterHTTP|TestConcurrentReservesOneAcquires)$$' \
	  $(GREMLINS) unleash $(MUTATE_FLAGS) --timeout-coefficient 5 ./controlplane/server

demo: demo-deps build ## run the local stack in the foreground with the demo policy (Ctrl-C stops it)
	$(BUILD)/demo

e2e: build ## the end-to-end suite on the local stack (free loopback ports, private redis-server)
	$(GO) test -count=1 ./e2e/...

# The chaos tests (e2e/chaos) run in make test small: a storm of 10 clients
# x 20 keys for 15 s, 5 forced Sentinel failovers, 4 kill -9 of each
# appendfsync setting's redis-server. This runs them wider and longer: at
# least 50 failovers, as issue 11 asks. Override CHAOS_FLAGS.
CHAOS_FLAGS ?= -chaos.clients 24 -chaos.keys 60 -chaos.duration 3m -chaos.failovers 50 -chaos.kills 20
chaos: deps build ## the chaos tests of issues 10 and 11, wider and longer (CHAOS_FLAGS); prints the SUMMARY lines README quotes
	$(GO) test -count=1 -v -timeout 30m ./e2e/chaos/ -args $(CHAOS_FLAGS)

bench-e2e: deps build ## load through the local stack: edge replay, miss, pass-through vs direct-to-upstream
	$(BUILD)/bench-e2e -c 16 -d 5s

# Issue 12's burst: 1000 slow originals on distinct keys and 2000 waiters
# on 10 keys through two gateways of two VMs each; prints each VM's linear
# memory (before, peak, after), reserve calls/s at the control plane, the
# originals' p99 and shed counts. Override LOAD_FLAGS (build/load -h).
LOAD_FLAGS ?=
load: deps build ## issue 12's burst through two gateways: memory per VM, reserves/s, p99, shed counts (LOAD_FLAGS)
	$(BUILD)/load $(LOAD_FLAGS)

# Docker is not available on our build machines: this target is for users
# and any machine that has Docker with the compose plugin. The same suite
# as make e2e; Envoy's log is shown when it fails.
COMPOSE := docker compose -f e2e/docker-compose.yml
e2e-docker: wasm ## the same e2e suite against real Envoy (>= 1.33) in Docker Compose (needs Docker)
	@command -v docker >/dev/null || { echo "make e2e-docker needs Docker with the compose plugin; without it run make e2e (the local proxy-wasm host)" >&2; exit 2; }
	$(COMPOSE) up -d --build
	IDEM_E2E_TARGET=docker $(GO) test -count=1 -v ./e2e/; rc=$$?; \
	  if [ $$rc -ne 0 ]; then $(COMPOSE) logs --no-color envoy; fi; \
	  $(COMPOSE) down -v; exit $$rc

clean: ## remove build output
	rm -rf $(BUILD)
