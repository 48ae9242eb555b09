# Build tooling for the iforest processor and the otelcol-iforest distribution.
# Needs only Go, git and make: every tool is built from tools/go.mod into bin/.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
BIN       := $(CURDIR)/bin
BUILD_DIR := $(CURDIR)/_build
DIST      := $(BUILD_DIR)/otelcol-iforest

OCB         := $(BIN)/ocb
MDATAGEN    := $(BIN)/mdatagen
STATICCHECK := $(BIN)/staticcheck
BENCHSTAT   := $(BIN)/benchstat

TEST_TIMEOUT ?= 10m
E2E_TIMEOUT  ?= 10m
BENCH        ?= .
CONFIG       ?= examples/laptop.yaml

TOOLS_MOD := tools/go.mod tools/go.sum

.PHONY: help
help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} \
	  {name[NR] = $$1; text[NR] = $$2; if (length($$1) > w) w = length($$1)} \
	  END {for (i = 1; i <= NR; i++) printf "  %-*s  %s\n", w, name[i], text[i]}'

# ---------------------------------------------------------------- tools

.PHONY: tools
tools: $(OCB) $(MDATAGEN) $(STATICCHECK) $(BENCHSTAT) ## build the pinned tools (tools/go.mod) into bin/

$(OCB): $(TOOLS_MOD)
	cd tools && $(GO) build -o $@ go.opentelemetry.io/collector/cmd/builder

$(MDATAGEN): $(TOOLS_MOD)
	cd tools && $(GO) build -o $@ go.opentelemetry.io/collector/cmd/mdatagen

$(STATICCHECK): $(TOOLS_MOD)
	cd tools && $(GO) build -o $@ honnef.co/go/tools/cmd/staticcheck

$(BENCHSTAT): $(TOOLS_MOD)
	cd tools && $(GO) build -o $@ golang.org/x/perf/cmd/benchstat

# ---------------------------------------------------------------- generate

# mdatagen resolves the component's import path with `go list` in the
# directory of metadata.yaml, which fails at the (package-less) repository
# root. A throw-away file makes the root a package for the duration of the
# run. The root-level generated tests (generated_component_test.go,
# generated_package_test.go) would form a bogus package at the root, so they
# are removed; the processor package has its own tests. mdatagen names that
# package after the directory, which fails for a checkout named like
# `wt-x`, so it reads the root through a link named iforest.
MDATAGEN_TMP  := zz_mdatagen_tmp.go
MDATAGEN_ROOT := $(BUILD_DIR)/mdatagen/iforest

.PHONY: generate
generate: $(MDATAGEN) ## regenerate internal/metadata, internal/metadatatest and documentation.md from metadata.yaml (and the same under connector/)
	@printf '// Temporary file created by `make generate`; safe to delete.\n\npackage iforest\n' > $(MDATAGEN_TMP)
	@mkdir -p $(dir $(MDATAGEN_ROOT)) && ln -sfn $(CURDIR) $(MDATAGEN_ROOT)
	@rc=0; $(MDATAGEN) $(MDATAGEN_ROOT)/metadata.yaml || rc=$$?; \
	  rm -f $(MDATAGEN_TMP) generated_component_test.go generated_package_test.go; \
	  exit $$rc
	@# The connector: mdatagen names the generated tests' package after the
	@# directory (connector), the Go package is anomalyeventsconnector.
	@$(MDATAGEN) connector/metadata.yaml
	@sed -i.bak 's/^package connector$$/package anomalyeventsconnector/' connector/generated_component_test.go connector/generated_package_test.go
	@rm -f connector/generated_component_test.go.bak connector/generated_package_test.go.bak
	@echo "generated: internal/metadata internal/metadatatest documentation.md connector/internal/metadata connector/internal/metadatatest connector/documentation.md"

# Everything `generate` writes, for both components; untracked files count
# too (a metric added to metadata.yaml adds none, but a new component does).
GENERATED := internal/metadata internal/metadatatest documentation.md \
	connector/internal/metadata connector/internal/metadatatest connector/documentation.md \
	connector/generated_component_test.go connector/generated_package_test.go

.PHONY: check-generated
check-generated: generate ## fail if the committed generated code (processor and connector) differs from the metadata.yaml files
	@if [ -n "$$(git status --porcelain -- $(GENERATED))" ]; then \
	  git status --short -- $(GENERATED); git --no-pager diff -- $(GENERATED); \
	  echo "generated code is out of date: run 'make generate' and commit"; exit 1; \
	fi

# ---------------------------------------------------------------- dist

# ocb always runs: it regenerates _build/ and `go build`s it, and Go's build
# cache makes an up-to-date rebuild take seconds, so no stale binary can be
# left behind by a file make does not know about. The first build on a fresh
# machine downloads and compiles the whole collector (minutes).
.PHONY: dist
dist: $(OCB) ## build the collector distribution into _build/otelcol-iforest
	@[ -x $(DIST) ] || echo "building the otelcol-iforest collector with ocb: the first build downloads and compiles the whole collector and takes several minutes (7-8 on 2 cores), printing little; later builds take seconds"
	$(OCB) --config builder-config.yaml

.PHONY: run
run: dist ## build, then run the collector with examples/laptop.yaml (CONFIG=... to override)
	$(DIST) --config $(CONFIG)

# A file without a top-level `service:` holds only the iforest processor's
# settings (e.g. examples/seed-cpu-memory.yaml, for `iforest-eval replay`):
# it is checked under processors: iforest: of a minimal otlp -> nop pipeline.
.PHONY: validate
validate: dist ## check examples/*.yaml, the scale-out's second tier, the benchmark configs and the READMEs' configurations with the distribution's validate command
	@for f in examples/*.yaml; do \
	  if grep -q '^service:' $$f; then \
	    echo "validate $$f"; $(DIST) validate --config $$f; \
	  else \
	    echo "validate $$f (processor settings)"; \
	    w=$(BUILD_DIR)/validate-$$(basename $$f); \
	    { printf 'receivers:\n  otlp:\n    protocols:\n      grpc:\nprocessors:\n  iforest:\n'; \
	      sed 's/^/    /' $$f; \
	      printf 'exporters:\n  nop:\nservice:\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      processors: [iforest]\n      exporters: [nop]\n'; \
	    } > $$w; \
	    $(DIST) validate --config $$w; \
	  fi; \
	done
	@# The scale-out's first tier uses the contrib load-balancing exporter,
	@# which otelcol-iforest does not include (nor does this environment's
	@# module proxy have it), so only the second-tier files are validated.
	@for f in examples/scale-out/*.yaml; do \
	  case $$(basename $$f) in \
	    first-tier*) echo "skip $$f (needs the contrib loadbalancing exporter)";; \
	    *) echo "validate $$f"; $(DIST) validate --config $$f;; \
	  esac; \
	done
	@for f in testdata/bench/*.yaml; do echo "validate $$f"; $(DIST) validate --config $$f; done
	@rm -rf $(BUILD_DIR)/readme-configs
	@for f in $$(scripts/readme-configs.sh $(BUILD_DIR)/readme-configs); do echo "validate $$f (from a README)"; $(DIST) validate --config $$f; done

# ---------------------------------------------------------------- checks

# Lint with the e2e tag so the end-to-end package is checked too (the tag
# only adds files).
LINT_TAGS := e2e

.PHONY: vet
vet: ## go vet
	$(GO) vet -tags $(LINT_TAGS) ./...

.PHONY: staticcheck
staticcheck: $(STATICCHECK) ## staticcheck
	$(STATICCHECK) -tags $(LINT_TAGS) ./...

.PHONY: fmt-check
fmt-check: ## fail if gofmt would change a tracked Go file
	@files=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$files" ]; then echo "gofmt would change (run gofmt -w):"; echo "$$files"; exit 1; fi

.PHONY: lint
lint: fmt-check vet staticcheck ## gofmt check, vet, staticcheck

# -short skips only the long data-set evaluations, which `quality` runs
# without the race detector (they take seconds normally, many minutes under it).
.PHONY: unit
unit: ## go test -race -short ./...
	$(GO) test -race -short -timeout $(TEST_TIMEOUT) ./...

.PHONY: quality
quality: ## the long evaluations on ../shared/data (skipped when it is absent) and the million-series limit test, without -race
	$(GO) test -count=1 -v -timeout $(TEST_TIMEOUT) -run 'TestODDSMatchesScikitLearn|TestNABCorpus|TestScenarioFolders' ./cmd/iforest-eval/
	$(GO) test -count=1 -v -timeout $(TEST_TIMEOUT) -run 'TestMillionSeriesUnderLimit' ./processor/

# End-to-end tests run against the built distribution. They live in package
# e2e/ behind the `e2e` build tag and find the binary via OTELCOL_IFOREST_BIN.
.PHONY: e2e
e2e: dist ## end-to-end tests against _build/otelcol-iforest
	@if [ -d e2e ]; then \
	  OTELCOL_IFOREST_BIN=$(DIST) $(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) ./e2e/...; \
	else \
	  echo "e2e: no e2e/ package yet, skipping"; \
	fi

.PHONY: test
test: lint unit quality e2e ## gofmt, vet, staticcheck, unit tests with -race, data-set evaluations, dist + e2e (CI also runs check-generated and validate)

.PHONY: bench
# The processor's throughput target is stated per core: GOMAXPROCS=1 by
# default (BENCH_CPU=1,2 to compare).
BENCH_CPU ?= 1

bench: ## benchmarks at GOMAXPROCS=1 (BENCH=regexp to select, BENCH_CPU=1,2)
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -cpu $(BENCH_CPU) ./...

# Each fuzz target in turn (go test fuzzes one target a run). An input that
# fails is written to testdata/fuzz/ of its package: commit it, and it is a
# regression case of every later `go test`.
FUZZTIME ?= 30s
FUZZ_TARGETS := ./processor:FuzzConsumeMetrics ./processor:FuzzConfig \
	./internal/detector:FuzzRestore ./internal/forest:FuzzDecodeTree
.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzz $${t#*:} ($${t%%:*}) for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

# ---------------------------------------------------------------- pipeline load

# The built distribution on loopback, fed by `iforest-replay --load`; see
# scripts/pipeline-bench.sh for what is measured. Minutes each, so not part
# of `test`.
SERIES        ?= 1000
BATCH         ?= 500
WORKERS       ?= 4
DURATION      ?= 30s
ROUNDS        ?= 2
SOAK_DURATION ?= 10m
SOAK_RATE     ?= 10000
EXPORTER      ?= nop
HIGHCARD      ?= false
BENCH_ENV = SKIP_BUILD=1 SERIES=$(SERIES) BATCH=$(BATCH) WORKERS=$(WORKERS) EXPORTER=$(EXPORTER) HIGHCARD=$(HIGHCARD)

.PHONY: loadtest
loadtest: dist ## pipeline dp/s with and without iforest, and their ratio (SERIES, BATCH, WORKERS, DURATION, ROUNDS, EXPORTER=nop|file, HIGHCARD=true)
	$(BENCH_ENV) DURATION=$(DURATION) ROUNDS=$(ROUNDS) scripts/pipeline-bench.sh throughput

# The realistic pipeline: OTLP -> [iforest] -> batch -> otlp_grpc (gzip) ->
# a second collector that drops the data, at a fixed rate, alternating with
# and without iforest; CPU time per datapoint and RSS (minutes per round).
RATE              ?= 10000
SHAPES            ?= mix
PIPELINE_DURATION ?= 60s
PIPELINE_ROUNDS   ?= 3

.PHONY: loadtest-pipeline
loadtest-pipeline: dist ## collector CPU per datapoint with and without iforest in a gateway pipeline (SERIES, RATE, SHAPES, PIPELINE_DURATION, PIPELINE_ROUNDS)
	$(BENCH_ENV) RATE=$(RATE) SHAPES=$(SHAPES) DURATION=$(PIPELINE_DURATION) ROUNDS=$(PIPELINE_ROUNDS) scripts/pipeline-bench.sh pipeline

.PHONY: soak
soak: dist ## 10 minutes at a fixed rate through iforest, the collector's RSS sampled every 10 s (SOAK_DURATION, SOAK_RATE)
	$(BENCH_ENV) SOAK_DURATION=$(SOAK_DURATION) SOAK_RATE=$(SOAK_RATE) scripts/pipeline-bench.sh soak

# ---------------------------------------------------------------- clean

.PHONY: clean
clean: ## remove bin/ and _build/
	rm -rf $(BIN) $(BUILD_DIR)

# ---------------------------------------------------------------- eval

# The NAB corpus lives outside the repository (see ../shared/NAB.md).
# EVAL_FLAGS passes more flags to `iforest-eval nab`, e.g.
# EVAL_FLAGS='--config my.yaml --name tuned --files'.
NAB_DIR    ?= ../shared/data/nab
EVAL_FLAGS ?=

.PHONY: eval
eval: ## NAB scores of the processor on ../shared/data/nab (results in eval-results/; skipped without the data)
	@if [ -d $(NAB_DIR) ]; then \
	  $(GO) run ./cmd/iforest-eval nab --data $(NAB_DIR)/data --windows $(NAB_DIR)/labels/combined_windows.json --out eval-results $(EVAL_FLAGS); \
	else \
	  echo "eval: no NAB data at $(NAB_DIR); skipping"; \
	fi
