# Herald's developer commands. Everything installs into ./bin; only Go is needed.

GO            ?= go
BIN           := $(CURDIR)/bin
TEMPORAL      := $(BIN)/temporal
TEMPORAL_CLI  := v1.5.1
STATICCHECK   := $(BIN)/staticcheck
TEST_TIMEOUT  ?= 15m

export HERALD_TEMPORAL_CLI ?= $(TEMPORAL)

.PHONY: help tools dev test lint bench build fuzz clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

tools: $(TEMPORAL) ## install the Temporal CLI $(TEMPORAL_CLI) into ./bin (skipped when present)

$(TEMPORAL):
	@echo "Installing the Temporal CLI $(TEMPORAL_CLI) into ./bin with go install."
	@echo "This happens once and takes about 4 minutes on 2 cores..."
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI)
	@echo "Temporal CLI installed: $(TEMPORAL)"

$(STATICCHECK):
	@echo "Installing staticcheck into ./bin..."
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

build: ## build ./bin/herald
	$(GO) build -o $(BIN)/herald ./cmd/herald

dev: tools build ## run Herald locally with its example app (API :8288, Temporal UI :8233)
	$(BIN)/herald dev --examples --temporal-cli $(TEMPORAL)

test: tools ## run every test (needs PostgreSQL; see README)
	@# -p 1: packages that start Temporal dev servers run one after another, so
	@# a restarted dev server never meets another server's recycled ports.
	$(GO) build ./... && $(GO) vet ./...
	$(GO) test -p 1 -count=1 -timeout $(TEST_TIMEOUT) ./...

lint: $(STATICCHECK) ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

bench: ## ingest vs HTTP ceiling and COPY, dispatch vs raw Temporal, wait matching at 10k-1M (needs PostgreSQL)
	$(GO) test -run '^$$' -bench . -benchtime 1s ./ingest/ ./triggers/
	$(GO) test -run '^$$' -bench MatchWaits -benchtime 200x -timeout 30m ./router/
	$(GO) run ./internal/bench

fuzz: ## run each fuzz target for a bounded time (FUZZTIME, default 30s)
	$(GO) test ./ingest/ -run '^$$' -fuzz FuzzDecodeEvents -fuzztime $${FUZZTIME:-30s}

clean: ## remove build output and the dev data directory
	rm -rf $(BIN)/herald .herald
