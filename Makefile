# hookrelay: `make run` runs the relay on built-in defaults with ./providers.d,
# `make test` runs every test, `make lint` the linters of .golangci.yml and
# `make tidy-check` fails on an untidy go.mod. All install what they need
# through the Go module proxy.
GO ?= go
BIN := bin/hookrelay

# golangci-lint is pinned here and nowhere else. `make lint` builds this
# version into bin/tools/ the first time (a few minutes: it is built from
# source through the module proxy) and reuses it after; GOLANGCI_LINT=path
# uses another binary.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT ?= bin/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint

# `hookrelay version` and hookrelay_build_info print VERSION: the tag, or
# tag-commits-gHASH, with -dirty for a modified tree, and REVISION, the
# commit. Without git they stay empty and the binary falls back to Go's
# build info.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/hookrelay/hookrelay/internal/buildinfo.version=$(VERSION) -X github.com/hookrelay/hookrelay/internal/buildinfo.revision=$(REVISION)
IMAGE ?= hookrelay:$(or $(VERSION),dev)
IMAGE_BUILDER ?= docker
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt

.PHONY: build build-static image-context image deploy-check run test test-jetstream soak soak-js soak-js-short bench-js fuzz vet lint tidy-check bench bench-short bench-h sustain clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/hookrelay

# The binary of the container image: static (no libc in a scratch image).
build-static:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/static/hookrelay ./cmd/hookrelay

# bin/image is the build context of deploy/Dockerfile: the static binary, the
# container's relay.yaml, the shipped providers, CA roots and an empty spool.
image-context: build-static
	rm -rf bin/image
	mkdir -p bin/image/providers.d bin/image/spool
	cp bin/static/hookrelay bin/image/hookrelay
	cp deploy/relay.container.yaml bin/image/relay.yaml
	cp providers.d/*.yaml bin/image/providers.d/
	cp $(CA_BUNDLE) bin/image/ca-certificates.crt

# The image pulls no base image (FROM scratch). IMAGE_BUILDER=buildah works too.
image: image-context
	$(IMAGE_BUILDER) build -f deploy/Dockerfile -t $(IMAGE) bin/image

# Checks deploy/: the Go test (every file parses, every metric the rules and
# the dashboard use is on /metrics, Dockerfile, manifests and unit), then
# promtool, systemd-analyze and an image build where those tools are
# installed; a missing tool is skipped with a message, or fails with
# HOOKRELAY_DEPLOY_STRICT=1.
deploy-check: image-context
	GO="$(GO)" ./scripts/deploy-check.sh

# make run gives the example provider a development-only secret, unless one
# is set, so that it is enabled; real deployments set their own.
run: build
	EXAMPLE_WEBHOOK_SECRET=$${EXAMPLE_WEBHOOK_SECRET:-dev-only-example-secret} ./$(BIN) serve

# Unit, integration and crash tests, then the engine's acceptance tests again
# on a JetStream spool, then the binary checks its own shipped config and the
# commented relay.example.yaml, and runs every provider's recorded cases.
test: vet build
	$(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) test-jetstream
	./$(BIN) check
	./$(BIN) check --config relay.example.yaml
	./$(BIN) test

# The engine's acceptance tests on a JetStream spool (an embedded NATS
# server, sync_interval: always; SPEC 12), and the spool conformance suite
# and 3-node cluster test. A test in a synctest bubble starts a server of
# its own, reached in process; tests that read the bbolt file itself skip
# (README, Scale-out).
test-jetstream:
	HOOKRELAY_TEST_SPOOL=jetstream $(GO) test -count=1 -timeout 15m ./engine/ ./engine/spool/...

vet:
	@test -z "$$(gofmt -l cmd engine verifiers transforms internal deploy)" || (gofmt -l cmd engine verifiers transforms internal deploy; exit 1)
	$(GO) vet ./...

# The linters and their settings are in .golangci.yml.
lint: $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run ./...

bin/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint:
	GOBIN="$(CURDIR)/$(@D)" $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

# Fails, printing the diff, when `go mod tidy` would change go.mod or go.sum:
# builds run with the default -mod=readonly, so go.mod must be complete.
tidy-check:
	$(GO) mod tidy -diff

# Crash and fault soak: 200 SIGKILLs of `hookrelay serve` while 2,000 events over
# 50 keys flow to a failing, hanging, resetting destination, plus the full-disk
# test. `make test` runs the short form. Sizes: HOOKRELAY_SOAK_KILLS,
# HOOKRELAY_SOAK_EVENTS, HOOKRELAY_SOAK_KEYS.
soak:
	HOOKRELAY_SOAK=1 $(GO) test -count=1 -v -timeout 30m -run 'TestSoak|TestSpoolUnwritable|TestCrashKillResume' ./cmd/hookrelay/

# nats-server for the JetStream soak and benchmark, built from the version
# go.mod requires (child processes: they can be SIGKILLed like a relay).
bin/nats-server: go.mod
	$(GO) build -o $@ github.com/nats-io/nats-server/v2

# The crash soak on JetStream: a 3-node NATS cluster (sync_interval:
# always, R3) and 3 relays sharing one stream as child processes; 50
# SIGKILLs of a relay at random, each restarted, and 10 of one NATS node at a
# time, while 2,000 events over 50 keys flow to a failing, hanging,
# resetting destination (HOOKRELAY_SOAK_JS_ACTIVE=1: one relay at a time,
# the others standbys). Sizes:
# HOOKRELAY_SOAK_JS_RELAYS, _ACTIVE, _KILLS, _NATS_KILLS, _EVENTS, _KEYS.
# About 3 minutes on 2 cores.
soak-js: bin/nats-server
	HOOKRELAY_SOAK_JS=1 HOOKRELAY_NATS_SERVER=$(CURDIR)/bin/nats-server $(GO) test -count=1 -v -timeout 30m -run 'TestSoakJetStream' ./cmd/hookrelay/

# The short form CI runs (8 relay kills, 3 NATS node kills, 400 events;
# about 1 to 2 minutes).
soak-js-short: bin/nats-server
	HOOKRELAY_SOAK_JS=short HOOKRELAY_NATS_SERVER=$(CURDIR)/bin/nats-server $(GO) test -count=1 -v -timeout 10m -run 'TestSoakJetStream' ./cmd/hookrelay/

# JetStream against bbolt in the same run (BENCHMARKS.md, JetStream):
# ingest and end to end with 1 relay on R1 and R3, and failover time with
# 1k, 10k and 50k pending events. HOOKRELAY_BENCH_JS_ROUNDS, _EVENTS,
# _PENDING change it; HOOKRELAY_BENCH_JS_RELAYS=3 adds three relays on one
# R3 stream and their lease takeover after a SIGKILL (lease_ttl 2s).
bench-js: bin/nats-server
	HOOKRELAY_BENCH_JS=1 HOOKRELAY_NATS_SERVER=$(CURDIR)/bin/nats-server $(GO) test -count=1 -v -timeout 60m -run 'TestBenchJetStream' ./cmd/hookrelay/

# Every fuzz target for 30 s each; a crash leaves its input in testdata/fuzz/.
fuzz:
	./scripts/fuzz.sh 30

# Benchmarks, then the report of g, h, b, c, d side by side (three rounds,
# judged on their medians), the open-loop latencies and the overload test
# (see BENCHMARKS.md).
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3s ./...
	HOOKRELAY_BENCH_ROUNDS=3 HOOKRELAY_BENCH_REPORT=1 $(GO) test -run 'TestBenchReport|TestOpenLoopLatency|TestOverload' -count=1 -v -timeout 30m ./engine/loadtest/

# The short form CI runs: every benchmark 100 times and the report at one
# second a row. Its figures mean little; it keeps the measurements runnable.
bench-short: build
	$(GO) test -run '^$$' -bench . -benchtime 100x ./...
	HOOKRELAY_BENCH_REPORT=1 HOOKRELAY_BENCH_SECONDS=1 $(GO) test -run 'TestBenchReport|TestOpenLoopLatency|TestOverload' -count=1 -v -timeout 20m ./engine/loadtest/
	HOOKRELAY_HOTPATH=1 HOOKRELAY_BIN=$(CURDIR)/$(BIN) HOOKRELAY_HOTPATH_ROUNDS=1 HOOKRELAY_HOTPATH_SECONDS=1 $(GO) test -run 'TestHotPath$$' -count=1 -v -timeout 20m ./engine/loadtest/

# The hot path as users run it (BENCHMARKS.md): (h), a bare net/http server
# with a group-committed, fsynced bbolt put, and the built `hookrelay serve`
# with each shipped lender's provider and info logging to a file, each in a
# process of its own, in alternating rounds; ingest alone (destination
# paused) and with deliveries to `hookrelay sink`. About 8 minutes.
# HOOKRELAY_HOTPATH_ROUNDS, _SECONDS, _PROVIDERS, _MODES, _PROFILE=DIR tune it.
bench-h: build
	HOOKRELAY_HOTPATH=1 HOOKRELAY_BIN=$(CURDIR)/$(BIN) $(GO) test -run 'TestHotPath$$' -count=1 -v -timeout 60m ./engine/loadtest/

# (d) held for 60 s at 40% of (h), and the backlog's drain after a 60 s
# destination outage (about 20 minutes; see BENCHMARKS.md).
# HOOKRELAY_SUSTAIN_SECONDS=N shortens both; CI runs N = 5.
sustain:
	HOOKRELAY_SUSTAIN=1 $(GO) test -run TestSustainedAndOutage -count=1 -v -timeout 60m ./engine/loadtest/

clean:
	rm -rf bin data
