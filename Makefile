# apisessions — run `make` for the list of targets.
GO        ?= go
PKGS      ?= ./...
BIN       ?= bin/apisessions
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X github.com/apisessions/apisessions/cmd/apisessions/app.Version=$(VERSION) -X github.com/apisessions/apisessions/cmd/apisessions/app.Commit=$(COMMIT)
RUN_ARGS  ?=
FUZZTIME  ?= 15s
BENCHTIME ?= 1s
COUNT     ?= 1

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build the static binary into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/apisessions

.PHONY: install
install: ## install apisessions into $(GOBIN) (default: $(go env GOPATH)/bin), on your PATH if that is
	CGO_ENABLED=0 $(GO) install -trimpath -ldflags '$(LDFLAGS)' ./cmd/apisessions

.PHONY: run
run: ## run the server on the defaults (gRPC 127.0.0.1:50051, HTTP 127.0.0.1:8080); RUN_ARGS="--config FILE" for yours
	$(GO) run ./cmd/apisessions serve $(RUN_ARGS)

.PHONY: test
test: lint ## lint, then every test with the race detector (e2e included); -short skips the slow ones
	$(GO) test -race -short -count=1 $(PKGS)

# SLOW_PKGS are the packages with tests that skip under -short (real-time waits such as the
# 31 s keepalive test, killed helper processes, image builds); test-slow runs them in full.
SLOW_PKGS = $(sort $(dir $(shell grep -rl --include='*_test.go' 'testing.Short()' .)))

.PHONY: test-slow
test-slow: ## the packages whose tests -short cuts, in full, with the race detector (CI runs both)
	$(GO) test -race -count=1 $(SLOW_PKGS)

.PHONY: test-e2e
test-e2e: ## only the end-to-end tests
	$(GO) test -race -count=1 ./e2e/...

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    if ! out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg 2>&1); then \
	      echo "$$out"; \
	      if echo "$$out" | grep -q 'Failing input written'; then exit 1; fi; \
	      echo "fuzz $$f: the fuzzing engine stopped without a failing input (e.g. a worker that missed its deadline on a busy machine); running it again"; \
	      $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	    else echo "$$out" | tail -n 3; fi; \
	  done; \
	done

.PHONY: bench
bench: ## run the benchmarks (COUNT=10 for benchstat)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(COUNT) $(PKGS)

.PHONY: bench-smoke
bench-smoke: ## run every benchmark once so none rots
	$(GO) test -run '^$$' -bench . -benchtime 1x $(PKGS)

.PHONY: cover
cover: ## test coverage report in coverage.html
	$(GO) test -count=1 -coverprofile=coverage.out $(PKGS)
	$(GO) tool cover -html=coverage.out -o coverage.html

.PHONY: envoy-config
envoy-config: ## print an Envoy bootstrap for RUN_ARGS (e.g. RUN_ARGS="--config FILE --mode inline")
	$(GO) run ./cmd/apisessions envoy-config $(RUN_ARGS)

.PHONY: docker
docker: ## build the container image apisessions:dev
	docker build -t apisessions:dev .

.PHONY: clean
clean: ## remove build and test output
	rm -rf bin coverage.out coverage.html
