# Herald's developer commands. Everything installs into ./bin; only Go is needed.

GO            ?= go
BIN           := $(CURDIR)/bin
TEMPORAL      := $(BIN)/temporal
TEMPORAL_CLI  := v1.5.1
STATICCHECK   := $(BIN)/staticcheck
# The production topology's Temporal server and SQL tool: the release of the
# dev server above, built from source with go install.
TEMPORAL_SERVER_VERSION := v1.29.1
TEMPORAL_SERVER   := $(BIN)/temporal-server
TEMPORAL_SQL_TOOL := $(BIN)/temporal-sql-tool
# The helm CLI the chart test (deploy/helm) renders deploy/helm/herald with.
HELM          := $(BIN)/helm
HELM_VERSION  := v4.3.2
PRODTEST_ENV   = HERALD_PRODTEST=1 HERALD_TEMPORAL_SERVER=$(TEMPORAL_SERVER) HERALD_TEMPORAL_SQL_TOOL=$(TEMPORAL_SQL_TOOL) \
	HERALD_TEMPORAL_SCHEMA_DIR=$$($(GO) env GOMODCACHE)/go.temporal.io/server@$(TEMPORAL_SERVER_VERSION)/schema/postgresql/v12
TEST_TIMEOUT  ?= 15m

export HERALD_TEMPORAL_CLI ?= $(TEMPORAL)

.PHONY: help tools dev test faulttest lint bench build fuzz vuln clean screenshots prodtools prodtest prodbench

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-9s %s\n", $$1, $$2}'

tools: $(TEMPORAL) ## install the Temporal CLI $(TEMPORAL_CLI) into ./bin (skipped when present)

$(TEMPORAL):
	@echo "Installing the Temporal CLI $(TEMPORAL_CLI) into ./bin with go install."
	@echo "This happens once and takes about 4 minutes on 2 cores..."
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI)
	@echo "Temporal CLI installed: $(TEMPORAL)"

prodtools: $(TEMPORAL_SERVER) $(TEMPORAL_SQL_TOOL) ## build the Temporal server $(TEMPORAL_SERVER_VERSION) and its SQL tool into ./bin (skipped when present)

$(TEMPORAL_SERVER):
	@echo "Building the Temporal server $(TEMPORAL_SERVER_VERSION) into ./bin with go install."
	@echo "This happens once and takes about 8 minutes on 2 cores..."
	@mkdir -p $(BIN)/.temporal-server
	GOBIN=$(BIN)/.temporal-server $(GO) install go.temporal.io/server/cmd/server@$(TEMPORAL_SERVER_VERSION)
	mv $(BIN)/.temporal-server/server $@ && rmdir $(BIN)/.temporal-server
	@echo "Temporal server installed: $@"

$(TEMPORAL_SQL_TOOL):
	@echo "Building Temporal's SQL tool $(TEMPORAL_SERVER_VERSION) into ./bin with go install (a few minutes)..."
	@mkdir -p $(BIN)/.temporal-sql-tool
	GOBIN=$(BIN)/.temporal-sql-tool $(GO) install go.temporal.io/server/cmd/tools/sql@$(TEMPORAL_SERVER_VERSION)
	mv $(BIN)/.temporal-sql-tool/sql $@ && rmdir $(BIN)/.temporal-sql-tool
	@echo "Temporal SQL tool installed: $@"

helm: $(HELM) ## build the helm CLI $(HELM_VERSION) into ./bin (skipped when present); make test renders the chart with it

$(HELM):
	@echo "Building the helm CLI $(HELM_VERSION) into ./bin with go install (once; about 5 minutes on 2 cores)..."
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	@echo "helm installed: $@"

$(STATICCHECK):
	@echo "Installing staticcheck into ./bin..."
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

build: ## build ./bin/herald and the example worker ./bin/herald-demo
	$(GO) build -o $(BIN)/herald ./cmd/herald
	$(GO) build -o $(BIN)/herald-demo ./examples/demo

dev: tools build ## run Herald locally with the example app's worker beside it (API :8288, Temporal UI :8233); Ctrl-C stops both
	$(BIN)/herald dev --temporal-cli $(TEMPORAL) --worker $(BIN)/herald-demo

test: tools $(HELM) prodtools ## run every test (needs PostgreSQL; see README)
	@# -p 1: packages that start Temporal dev servers run one after another, so
	@# a restarted dev server never meets another server's recycled ports.
	@# PRODTEST_ENV: internal/prodtest (about 2 minutes) runs too.
	$(GO) build ./... && $(GO) vet ./...
	$(PRODTEST_ENV) $(GO) test -p 1 -count=1 -timeout $(TEST_TIMEOUT) ./...

screenshots: tools ## run the console's browser tests with chromium and write the pages' PNGs into docs/
	HERALD_REQUIRE_BROWSER=1 HERALD_SCREENSHOTS=$(CURDIR)/docs $(GO) test -count=1 -timeout 5m -run 'TestBrowser' ./internal/console/

faulttest: tools ## fault tests, full versions: crashes and outages under load, prints "fault:" summary lines (needs PostgreSQL)
	$(GO) test -count=1 -v -timeout 30m ./internal/fault/ -fault.full

lint: $(STATICCHECK) ## gofmt, go vet, staticcheck and a tidy go.mod
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	@$(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy: run go mod tidy"; exit 1; }

bench: ## herald serve/dev from outside vs the HTTP ceiling, raw COPY and the hand-written shim; then components: dispatch vs raw Temporal, wait matching at 10k-1M, flow-control costs (needs PostgreSQL)
	$(GO) test -run '^$$' -bench . -benchtime 1s ./ingest/ ./triggers/
	$(GO) test -run '^$$' -bench MatchWaits -benchtime 200x -timeout 30m ./router/
	$(GO) run ./internal/bench

prodtest: prodtools ## the production topology as processes: Temporal server on PostgreSQL, two herald serve replicas, the example worker; e2e subset and fault scenarios (prints "fault:" lines; needs PostgreSQL)
	$(PRODTEST_ENV) $(GO) test -count=1 -v -timeout 20m ./internal/prodtest/

prodbench: prodtools ## bench phase on the production topology: Herald vs the hand-written shim, durable ingest on two replicas vs one, rows and history events per run (prints "bench:" lines)
	$(PRODTEST_ENV) $(GO) run ./internal/prodtest/prodbench

fuzz: ## run each fuzz target of ingest and triggers for FUZZTIME (default 30s), one after another
	@# go test fuzzes one target per run, so list the targets and run each in
	@# turn; a target added to either package is picked up without editing this.
	@set -e; for pkg in ./ingest/ ./triggers/; do \
		targets=$$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); \
		for target in $$targets; do \
			echo "$(GO) test $$pkg -run '^\$$' -fuzz '^$$target\$$' -fuzztime $(or $(FUZZTIME),30s)"; \
			$(GO) test $$pkg -run '^$$' -fuzz "^$$target\$$" -fuzztime $(or $(FUZZTIME),30s); \
		done; \
	done

vuln: ## report known vulnerabilities in the code and its dependencies (govulncheck; needs the Go vulnerability database online, so not in test or CI)
	@log=$$(mktemp); trap 'rm -f "$$log" "$$log.rc"' EXIT; \
	{ $(GO) run golang.org/x/vuln/cmd/govulncheck@latest ./... 2>&1; echo $$? >"$$log.rc"; } | tee "$$log"; \
	rc=$$(cat "$$log.rc"); \
	if [ "$$rc" -ne 0 ] && [ "$$rc" -ne 3 ]; then \
		if grep -q 'fetching vulnerabilities' "$$log"; then \
			echo "make vuln: govulncheck could not reach the Go vulnerability database from this machine."; \
			echo "That is a network problem, not a finding: run make vuln where that database is reachable."; \
		elif grep -qE 'dial tcp|no such host|i/o timeout|connection refused' "$$log"; then \
			echo "make vuln: govulncheck could not be downloaded: the Go module proxy is not reachable from this machine."; \
		fi; \
	fi; \
	exit $$rc

clean: ## remove build output and the dev data directory
	rm -rf $(BIN)/herald $(BIN)/herald-demo .herald
