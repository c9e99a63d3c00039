# tfolab — run as root or under sudo: `sudo make test`.
#
# sudo resets PATH (secure_path usually lacks /usr/local/go/bin) and may run
# git over a checkout owned by someone else, so find go explicitly and do
# not stamp VCS info into test binaries.
SHELL   := /bin/bash
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
OUT     ?= out
PROCS   ?= 24
LABELS  ?=
TIMEOUT ?= 20m
# RULES=path/to/firewall.rules (iptables-save format) adds a spec that
# applies your own firewall in the router and reports what TFO does behind it.
RULES   ?=
# make check-firewall RULES=v4.rules RULES6=v6.rules NFT=ruleset.nft PORT=443 PLACE=router
RULES6  ?=
NFT     ?=
PORT    ?=
PLACE   ?= router
# make report [PROFILE=f.conf] [CLIENT_PROFILE=] [SERVER_PROFILE=] [RTT=50ms] [BASELINE=a.conf]
PROFILE        ?=
CLIENT_PROFILE ?=
SERVER_PROFILE ?=
BASELINE       ?=
RTT            ?=
PARALLEL       ?=
# make report KERNEL=debian:6.12 (or a vmlinuz path; host: no VM), or
# KERNELS="debian:6.1 debian:6.12 host": one report per kernel and the matrix
KERNEL         ?=
KERNELS        ?=
# make run SCENARIO=name [KEEP=1]: one catalogue scenario (tfolab list).
SCENARIO ?=
FILE     ?=
KEEP     ?=

# The scripts read these from the environment: no shell quoting to break.
export GO OUT PROCS LABELS TIMEOUT RULES SCENARIO RULES6 NFT PORT PLACE
export PROFILE CLIENT_PROFILE SERVER_PROFILE BASELINE RTT PARALLEL KERNEL KERNELS
export GOFLAGS   ?= -buildvcs=false
export GOTOOLCHAIN ?= local
# sudo's secure_path may lack the sbin folders iptables and ip live in.
export PATH := $(PATH):/usr/sbin:/sbin

# Debian package : file it provides. `deps` installs only what is missing
# (a path, not a command name: python3 on PATH may be a pyenv shim), with a
# policy-rc.d that keeps the packages' postinst from starting nginx or
# HAProxy on the host.
DEB_DEPS := iptables:/usr/sbin/iptables iptables:/usr/sbin/ip6tables iproute2:/usr/bin/ip \
	iproute2:/usr/bin/nstat tcpdump:/usr/bin/tcpdump python3:/usr/bin/python3 \
	curl:/usr/bin/curl nginx:/usr/sbin/nginx haproxy:/usr/sbin/haproxy \
	tshark:/usr/bin/tshark python3-scapy:/usr/bin/scapy nftables:/usr/sbin/nft
# What a report inside another kernel needs besides (QEMU, the guest's
# busybox, depmod for the guest's modules): installed only when KERNEL or
# KERNELS names a kernel other than host, or LABELS asks for `kernels`.
VM_DEB_DEPS := qemu-system-x86:/usr/bin/qemu-system-x86_64 busybox-static:/bin/busybox kmod:/usr/sbin/depmod
ifneq ($(filter-out host,$(KERNEL) $(KERNELS))$(findstring kernels,$(LABELS)),)
DEB_DEPS += $(VM_DEB_DEPS)
endif

.PHONY: test check-args unit suite deps preflight clean lint bench check-killed-run check-kill-group run list check-firewall report FORCE

## test: unit tests (no root needed) + the integration suite (root), JUnit in $(OUT)/junit.xml
test: check-args deps preflight unit suite

## check-args: the suite's input checks (PROCS, RULES, LABELS syntax): one line and exit 2, before the unit tests
check-args:
	@bash scripts/suite.sh --check-args

## unit: every package's own tests; root-only tests skip themselves without root
unit:
	@echo "unit: go test of every package"
	@set -o pipefail; $(GO) test -count=1 $$($(GO) list ./... | grep -v '^github.com/tfolab/tfolab$$') 2>&1 | grep -v 'no test files'

## suite: the Ginkgo integration suite (LABELS=baseline, PROCS=16)
# The recipe builds a file make deletes when it is interrupted: make passes
# SIGTERM on to its children but only waits for them on SIGINT (sudo with
# use_pty relays Ctrl-C to make alone), so the suite watches that file.
SUITE_STAMP = $(OUT)/.suite-running
suite: $(SUITE_STAMP)
$(SUITE_STAMP): FORCE
	@bash scripts/suite.sh "$@"
FORCE:

## run: one scenario from the catalogue or a scenario file: make run SCENARIO=name | FILE=lab.yaml [KEEP=1]
run:
	@test -n "$(SCENARIO)$(FILE)" || { echo "run: SCENARIO=name (make list shows the catalogue) or FILE=lab.yaml" >&2; exit 2; }
	@$(GO) run ./cmd/tfolab run $(if $(FILE),-f "$(FILE)","$$SCENARIO") --out "$(OUT)" $(if $(KEEP),--keep)

## report: the catalogue under a sysctl profile -> $(OUT)/report/{report.md,report.json,junit.xml}
##   PROFILE=f.conf CLIENT_PROFILE= SERVER_PROFILE= RTT=50ms LABELS= BASELINE=a.conf (diff; exit 1 on a regression)
##   KERNEL=debian:6.12|/path/vmlinuz (inside that kernel, in QEMU); KERNELS="debian:6.1 debian:6.12 host" (matrix.md/json)
report: deps preflight
	@bash scripts/report.sh

## check-firewall: TFO-safety verdict for your ruleset: RULES=v4.rules RULES6=v6.rules NFT=ruleset.nft PORT=443 PLACE=router|server|client
##   The script exits 0 (TFO-safe), 1 (not TFO-safe, or no verdict: its last line says which) or 2 (bad input);
##   make turns any failure into its own exit 2, so a CI gate reads $(OUT)/firewall/exit-code (written on
##   every exit) or runs the script itself with the same variables:
##   sudo env RULES=v4.rules RULES6=v6.rules bash scripts/check-firewall.sh; echo $$?
check-firewall: deps
	@bash scripts/check-firewall.sh

## list: the catalogue's scenarios
list:
	@$(GO) run ./cmd/tfolab list

## deps: install missing Debian packages and download Go modules (idempotent)
deps:
	@missing=""; \
	for dep in $(DEB_DEPS); do \
		[ -x "$${dep#*:}" ] || case " $$missing " in *" $${dep%%:*} "*) ;; *) missing="$$missing $${dep%%:*}";; esac; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then guard=1; printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; rc=$$?; \
		if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
		if command -v systemctl >/dev/null; then systemctl disable --now nginx haproxy >/dev/null 2>&1; fi; \
		[ $$rc = 0 ] || exit 1; \
	fi
	@$(GO) mod download

## preflight: one-line verdict on root, iptables and kernel TFO support
preflight:
	@$(GO) run ./cmd/tfolab preflight

## clean: remove namespaces (and what is in them) left by killed runs, and $(OUT)
clean:
	$(GO) run ./cmd/tfolab sweep
	rm -rf "$(OUT)"

## lint: go vet + gofmt + the docs check (README length, links) + actionlint on the workflows
lint:
	$(GO) vet ./...
	$(GO) tool actionlint .github/workflows/*.yml
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	@bash scripts/check-docs.sh

## bench: topology setup+teardown and other benchmarks
bench:
	$(GO) test -run '^$$' -bench . -benchtime 100x ./topology/

## check-killed-run: SIGKILL a running suite, `make clean`, prove nothing is left
check-killed-run:
	bash scripts/check-killed-run.sh

## check-kill-group: SIGKILL the process group of a running `make test` (as CI does), prove the run ends within 1 s
check-kill-group:
	bash scripts/check-kill-group.sh
