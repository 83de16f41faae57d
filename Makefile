SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

GO ?= go
# Packages `make test` and `make bench` run; narrow it while working on one.
PKGS ?= ./...
# Every folder under functions/ is one Lambda function.
FUNCTIONS := $(notdir $(wildcard functions/*))
# Deploy build: static, stripped linux/arm64 (provided.al2023, arm64), no
# RPC mode (lambda.norpc) since provided runtimes only use the Runtime API.
# LAMBDA_GOARCH=amd64 is only for LocalStack on x86_64 (localstack/README.md).
LAMBDA_GOARCH ?= arm64
LAMBDA_BUILD := CGO_ENABLED=0 GOOS=linux GOARCH=$(LAMBDA_GOARCH) $(GO) build -tags lambda.norpc -trimpath -ldflags='-s -w'

.PHONY: help run test e2e e2e-deps fuzz lint bench build clean build-ApiFunction build-TasksFunction build-SweeperFunction build-RotateFunction build-AuditStreamFunction build-ReportsFunction

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

run: ## escrow server -dev on 127.0.0.1:8080 with demo users, secrets and tokens
	$(GO) run ./cmd/escrow server -dev

# The -v log goes to .test.log; the screen shows each top-level test's
# result (so the moto-backed tests are seen to run) and each package's.
test: lint e2e-deps ## lint, then the whole suite with -race (moto-backed and browser tests included)
	@echo '>> go test -race -count=1 -timeout 20m $(PKGS)'
	@status=0; \
	$(GO) test -race -count=1 -timeout 20m -v $(PKGS) 2>&1 | tee .test.log \
	  | grep -E --line-buffered '^(--- |ok |FAIL|panic:|!!! )' || status=$$?; \
	if [ "$$status" -ne 0 ]; then \
	  echo '>> tests failed; the last 100 lines of .test.log:'; tail -n 100 .test.log; exit "$$status"; \
	fi
	@$(MAKE) --no-print-directory fuzz

# The browser test (e2e/e2e_test.go) drives Debian's chromium with the
# playwright-core that e2e/package-lock.json pins; npm ci installs exactly
# that, once.
E2E_DEPS := e2e/node_modules/playwright-core
e2e-deps: $(E2E_DEPS) ## install the browser test's pinned playwright-core (e2e/node_modules)
$(E2E_DEPS):
	npm ci --silent --no-audit --no-fund --prefix e2e

e2e: e2e-deps ## only the browser test of the web console (screenshots in artifacts/e2e)
	$(GO) test -count=1 -v -run TestConsoleInBrowser ./e2e/

# Every fuzz target of the decoders of untrusted input, for a short,
# bounded time each (the seed corpora also run in the plain test above).
FUZZTIME ?= 8s
FUZZ_PKGS := ./internal/qlock ./internal/qlock/qlockfmt ./internal/siem
fuzz: ## each fuzz target for FUZZTIME (default 8s)
	@for pkg in $(FUZZ_PKGS); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo ">> go test -run '^$$' -fuzz '^$$f$$' -fuzztime $(FUZZTIME) $$pkg"; \
	    if ! $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg > .fuzz.log 2>&1; then \
	      grep -v '^fuzz: elapsed' .fuzz.log | tail -n 40; \
	      if [ -n "$$(git status --porcelain -- $$pkg/testdata/fuzz 2>/dev/null)" ]; then \
	        echo "fuzz: $$f found a failing input: $$pkg/testdata/fuzz/$$f"; exit 1; \
	      fi; \
	      echo "fuzz: $$f stopped without a failing input (the engine's own hang detection); once more"; \
	      $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg > .fuzz.log 2>&1 \
	        || { grep -v '^fuzz: elapsed' .fuzz.log | tail -n 40; exit 1; }; \
	    fi; \
	    tail -n 2 .fuzz.log; \
	  done; \
	done

lint: ## gofmt, go vet, staticcheck, go mod tidy -diff, cfn-lint
	@echo '>> gofmt -l'
	@out=$$(find . -name '*.go' -not -path './.*' -not -path '*/testdata/*' -not -path '*/node_modules/*' -print0 | xargs -0 gofmt -l); \
	if [ -n "$$out" ]; then echo "these files need gofmt -w:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) mod tidy -diff
	cfn-lint template.yaml
	@echo '>> asl-validator $(ASL_FILES)'
	@for f in $(ASL_FILES); do $(ASL_VALIDATOR) --silent --json-path "$$f" || { echo "asl-validator: $$f is not valid"; exit 1; }; done

# asl-validator (npm, pinned) checks every state machine: cfn-lint does not
# look into DefinitionUri files.
ASL_VALIDATOR_VERSION := 4.0.0
ASL_VALIDATOR := .tools/node_modules/.bin/asl-validator
ASL_FILES := $(wildcard statemachines/*.asl.json internal/asl/testdata/corpus/*.asl.json)
lint: $(ASL_VALIDATOR)
$(ASL_VALIDATOR):
	npm install --silent --no-audit --no-fund --prefix .tools asl-validator@$(ASL_VALIDATOR_VERSION)

bench: ## Go benchmarks, then the loopback HTTP load run
	@# -p 1: one package's benchmarks at a time, so no figure shares the 2 cores.
	$(GO) test -p 1 -run='^$$' -bench=. -benchmem $(PKGS)
	@if [ -d cmd/escrow-load ]; then \
	  echo '>> go run ./cmd/escrow-load'; $(GO) run ./cmd/escrow-load; \
	else \
	  echo '>> cmd/escrow-load does not exist yet: no HTTP load run'; \
	fi

build: ## every function as bin/<name>/bootstrap (linux/arm64)
	@for f in $(FUNCTIONS); do \
	  echo ">> bin/$$f/bootstrap"; mkdir -p "bin/$$f"; \
	  $(LAMBDA_BUILD) -o "bin/$$f/bootstrap" "./functions/$$f"; \
	done

# sam build (BuildMethod: makefile) runs build-<LogicalId> with ARTIFACTS_DIR
# set; each writes that function's bootstrap there.
define sam_build
	@test -n "$(ARTIFACTS_DIR)" || { echo 'ARTIFACTS_DIR is not set (sam build sets it)'; exit 1; }
	$(LAMBDA_BUILD) -o "$(ARTIFACTS_DIR)/bootstrap" ./functions/$(1)
endef

build-ApiFunction:
	$(call sam_build,api)

build-TasksFunction:
	$(call sam_build,tasks)

build-SweeperFunction:
	$(call sam_build,sweeper)

build-RotateFunction:
	$(call sam_build,rotate)

build-AuditStreamFunction:
	$(call sam_build,audit-stream)

build-ReportsFunction:
	$(call sam_build,reports)

clean: ## remove build output, the test logs and artifacts, the lint and browser-test tools
	rm -rf bin .aws-sam .test.log .fuzz.log .tools artifacts e2e/node_modules
