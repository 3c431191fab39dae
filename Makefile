# Sluice: `make run` starts the local cluster with the controller; `make test`
# runs every test (building the cluster binaries on first use).
GO        ?= go
BIN       := bin/sluice
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
TESTFLAGS ?=

.PHONY: all build run test unit soak bench bench-analysis fuzz deps cluster fmt vet

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/sluice

## run: the embedded default — local cluster + controller (Ctrl-C stops everything)
run: build
	./$(BIN) dev --demo

## deps: system packages the tests need (Debian)
deps:
	@./hack/install-deps.sh

## cluster: build and cache the local cluster binaries, showing progress
cluster: build
	./$(BIN) dev --build-only

## test: every test, unit and end-to-end, and the nested test modules, which
## `./...` skips (e2e/oldgrpc: an older grpc-go client; e2e/envoyapi: the
## goldens against a 1.2x-era Envoy API)
## The interop tests write the client matrix (each client library and
## version, and how each test that drove it ended) to INTEROP_MATRIX, which
## is printed after the run: `go test` shows a passing package's output only
## with -v.
NESTED := e2e/oldgrpc e2e/envoyapi
INTEROP_MATRIX := bin/interop-matrix.txt
test: deps cluster vet
	@mkdir -p bin && rm -f $(INTEROP_MATRIX)
	@echo "$(GO) test -count=1 -timeout 60m $(TESTFLAGS) ./..."
	@status=0; SLUICE_INTEROP_MATRIX=$(CURDIR)/$(INTEROP_MATRIX) $(GO) test -count=1 -timeout 60m $(TESTFLAGS) ./... || status=$$?; \
	  if [ -f $(INTEROP_MATRIX) ]; then cat $(INTEROP_MATRIX); fi; exit $$status
	@set -e; for m in $(NESTED); do echo "nested module $$m"; (cd $$m && $(GO) vet ./... && $(GO) test -count=1 ./...); done

## soak: the chaos tests (a fleet of two replicas on a cluster of its own:
## leader killed, client's replica killed, API server paused) SOAK_COUNT times
## in a row; every run's result is in the output.
SOAK_COUNT ?= 20
soak: deps cluster
	$(GO) test -count=$(SOAK_COUNT) -timeout 0 -v -run '^TestChaos' ./e2e/chaos/

## unit: only the tests that need no cluster
unit:
	$(GO) test -count=1 -short ./...

vet:
	$(GO) vet ./...

## bench: benchmarks (not part of make test)
bench: deps cluster
	$(GO) test -run '^$$' -bench . -timeout 90m ./...

## bench-analysis: the analysis simulations (minutes of CPU); writes the results and plot under docs/
bench-analysis:
	$(GO) test -run '^$$' -bench BenchmarkAnalysisSimulation -benchtime 1x -timeout 60m ./rollout/analysis/ \
	  -args -analysis.report=$(CURDIR)/docs/analysis-results.md -analysis.plot=$(CURDIR)/docs/analysis.svg

## fuzz: every fuzz target for FUZZTIME each (make test runs only their seeds).
## Minimisation is capped: uncapped, Go spends minutes minimising each new input
## of these large binaries and the progress line shows 0 execs/s meanwhile.
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./... | grep -v '/e2e$$'); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$t"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5x $$pkg; \
	  done; \
	done

fmt:
	gofmt -w $$(git ls-files '*.go')

## image: the controller image for IMAGE_PLATFORMS as an OCI image layout in
## IMAGE_DIR, built without a container engine (hack/image): the same
## LDFLAGS as build, CGO_ENABLED=0, files stamped with SOURCE_DATE_EPOCH (the
## commit's time), so building twice gives the same digest.
IMAGE_DIR         ?= bin/image
IMAGE_PLATFORMS   ?= linux/amd64,linux/arm64
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
IMAGE             ?=

.PHONY: image push

image:
	$(GO) run ./hack/image build -out $(IMAGE_DIR) -platforms $(IMAGE_PLATFORMS) \
	  -version $(VERSION) -commit $(COMMIT) -ldflags "$(LDFLAGS)" -source-date-epoch "$(SOURCE_DATE_EPOCH)"

## push: make push IMAGE=registry/repo pushes the image as IMAGE:VERSION
push: image
	@test -n "$(IMAGE)" || { echo "usage: make push IMAGE=registry/repo (e.g. ghcr.io/sluice-dev/sluice)" >&2; exit 2; }
	$(GO) run ./hack/image push -layout $(IMAGE_DIR) -image $(IMAGE) -tag $(VERSION)
