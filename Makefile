# tfolab — run as root or under sudo: `sudo make test`.
#
# sudo resets PATH (secure_path usually lacks /usr/local/go/bin) and may run
# git over a checkout owned by someone else, so find go explicitly and do
# not stamp VCS info into test binaries.
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
OUT     ?= out
PROCS   ?= 4
LABELS  ?=
TIMEOUT ?= 20m
# RULES=path/to/firewall.rules (iptables-save format) adds a spec that
# applies your own firewall in the router and reports what TFO does behind it.
RULES   ?=

export GOFLAGS   ?= -buildvcs=false
export GOTOOLCHAIN ?= local

# Debian package : command it provides. `deps` installs only what is missing.
DEB_DEPS := iptables:iptables iptables:ip6tables iproute2:ip tcpdump:tcpdump

GINKGO_FLAGS := -p --procs=$(PROCS) --timeout=$(TIMEOUT) --output-dir=$(OUT) \
	--junit-report=junit.xml --poll-progress-after=60s
ifneq ($(strip $(RULES)),)
export TFOLAB_RULES := $(abspath $(RULES))
endif
# Colour only for a terminal: CI logs and files stay plain text. ($(shell)'s
# stdout is a pipe, so test make's stderr, which it inherits.)
ifneq ($(shell test -t 2 && echo tty),tty)
GINKGO_FLAGS += --no-color
endif
ifneq ($(strip $(LABELS)),)
GINKGO_FLAGS += --label-filter='$(LABELS)'
endif

.PHONY: test unit suite deps preflight clean lint bench check-killed-run

## test: unit tests (no root needed) + the integration suite (root), JUnit in $(OUT)/junit.xml
test: deps preflight unit suite

## unit: every package's own tests; root-only tests skip themselves without root
unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v '^github.com/tfolab/tfolab$$')

## suite: the Ginkgo integration suite (LABELS=baseline, PROCS=4)
suite:
	@mkdir -p $(OUT)
	$(GO) tool ginkgo $(GINKGO_FLAGS) .
	@$(GO) run ./cmd/tfolab junit-summary $(OUT)/junit.xml

## deps: install missing Debian packages and download Go modules (idempotent)
deps:
	@missing=""; \
	for dep in $(DEB_DEPS); do \
		command -v "$${dep#*:}" >/dev/null 2>&1 || missing="$$missing $${dep%%:*}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(GO) mod download

## preflight: one-line verdict on root, iptables and kernel TFO support
preflight:
	@$(GO) run ./cmd/tfolab preflight

## clean: remove namespaces (and what is in them) left by killed runs, and $(OUT)
clean:
	$(GO) run ./cmd/tfolab sweep
	rm -rf $(OUT)

## lint: go vet + gofmt
lint:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

## bench: topology setup+teardown and other benchmarks
bench:
	$(GO) test -run '^$$' -bench . -benchtime 100x ./topology/

## check-killed-run: SIGKILL a running suite, `make clean`, prove nothing is left
check-killed-run:
	bash scripts/check-killed-run.sh
