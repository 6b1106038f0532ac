# vmhost.virt developer entry points. Every target does its own set-up, so
# `make test` on a fresh Debian 12 machine (as root) needs nothing else.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

TOP       := $(abspath .)
VENV      := $(TOP)/.venv
PY        := $(VENV)/bin/python
TMP       := $(TOP)/.tmp
COLL_ROOT := $(TMP)/collections
COLL_LINK := $(COLL_ROOT)/ansible_collections/vmhost/virt
SANITY    := $(TMP)/sanity/ansible_collections/vmhost/virt
PYTHON    ?= python3

export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLL_ROOT)
export PYTHONPATH := $(COLL_ROOT)
export ANSIBLE_NOCOLOR := 1
export PY_COLORS := 0

.PHONY: help deps venv collection fixtures unit integration sanity lint molecule compat \
        test demo demo-destroy build docs bench clean fuzz \
        molecule-chains-complete molecule-chain-1 molecule-chain-2 sanity-then-compat

help:
	@echo "make test          everything CI runs: deps, venv, unit, integration, sanity, lint, molecule"
	@echo "make demo          a throwaway VM host and build host (with a build VM), configured by playbooks/site.yml"
	@echo "make demo-destroy  stop and remove the demo hosts"
	@echo "make unit | integration | sanity | lint | molecule | compat | build | docs | bench"

# System packages from bindep.txt ([platform:dpkg] entries); apt-get only runs when one is missing.
deps:
	@pkgs=$$(sed -n 's/^\([a-z0-9][a-z0-9.+:-]*\).*platform:dpkg.*/\1/p' bindep.txt)
	missing=$$(for p in $$pkgs; do dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed' || echo "$$p"; done)
	if [ -n "$$missing" ]; then
	  echo "installing: $$missing"
	  apt-get update -qq
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 $$missing
	fi

$(VENV)/.stamp: requirements.txt
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip wheel
	$(PY) -m pip install -q -r requirements.txt
	touch $@

venv: deps $(VENV)/.stamp

# The collection must sit at ansible_collections/vmhost/virt to be importable.
collection:
	@mkdir -p $(dir $(COLL_LINK))
	ln -sfn $(TOP) $(COLL_LINK)

# Foreign-architecture test fixtures (binfmt integration tests).
fixtures: deps
	@mkdir -p $(TMP)/fixtures
	if [ ! -s $(TMP)/fixtures/busybox-static-arm64.deb ]; then
	  dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64; apt-get update -qq; }
	  (cd $(TMP)/fixtures && apt-get download busybox-static:arm64 && mv busybox-static_*_arm64.deb busybox-static-arm64.deb) \
	    || { apt-get update -qq; cd $(TMP)/fixtures && apt-get download busybox-static:arm64 && mv busybox-static_*_arm64.deb busybox-static-arm64.deb; }
	fi

unit: venv collection
	$(PY) -m pytest -q --durations=5 tests/unit

integration: venv collection fixtures
	$(PY) -m pytest -q --durations=15 tests/integration

# ansible-test needs the tree at .../ansible_collections/vmhost/virt and a venv of its own:
# scripts/sanity-one.sh copies the tree there and runs it (all files, or those named in FILES).
sanity: deps
	bash scripts/sanity-one.sh $(FILES)

lint: venv collection
	ansible-lint --profile production --offline

molecule: venv collection
	molecule test --all

# `make test` runs the scenarios in two chains of one QEMU guest at a time (the useful
# limit on two cores). Every scenario under molecule/ must be in one chain (checked first).
MOLECULE_CHAIN_1 := default bookworm_vm libvirt
MOLECULE_CHAIN_2 := build_vm site

molecule-chains-complete:
	@have=$$(cd molecule && ls -d */ | tr -d / | grep -vx resources | sort | tr '\n' ' ')
	want=$$(echo $(MOLECULE_CHAIN_1) $(MOLECULE_CHAIN_2) | tr ' ' '\n' | sort | tr '\n' ' ')
	[ "$$have" = "$$want" ] || { echo "Makefile: molecule chains ($$want) differ from molecule/ ($$have)"; exit 1; }

molecule-chain-1: venv collection molecule-chains-complete
	for s in $(MOLECULE_CHAIN_1); do
	  start=$$(date +%s); molecule test -s $$s
	  echo "stage molecule $$s: $$(( $$(date +%s) - start )) s"
	done

molecule-chain-2: venv collection molecule-chains-complete
	for s in $(MOLECULE_CHAIN_2); do
	  start=$$(date +%s); molecule test -s $$s
	  echo "stage molecule $$s: $$(( $$(date +%s) - start )) s"
	done

# Unit tests + one scenario (converge, idempotence) with the oldest supported ansible-core
# and with the current release (Python 3.13 in a Debian 13 tree), and its sanity rules.
compat: venv collection
	$(PY) -m tests.harness build
	bash scripts/compat.sh all

# sanity (pure CPU), then the compatibility stacks (one QEMU guest at a time), in one lane.
sanity-then-compat: venv collection
	@t=$$(date +%s); $(MAKE) --no-print-directory sanity; echo "stage sanity: $$(( $$(date +%s) - t )) s"
	t=$$(date +%s); $(MAKE) --no-print-directory compat; echo "stage compat: $$(( $$(date +%s) - t )) s"

# Two jobs at a time on two cores: integration (Ansible runs and QEMU boots one at a time)
# beside sanity then the compatibility stacks (one QEMU guest), then two chains of molecule
# scenarios (one QEMU guest per chain); never more than two QEMU guests at once. -O keeps
# each job's output together. Each stage prints its wall time.
test: venv collection fixtures
	@t0=$$(date +%s); t=$$t0
	stage() { echo "stage $$1: $$(( $$(date +%s) - t )) s"; t=$$(date +%s); }
	$(MAKE) --no-print-directory unit lint; stage "unit+lint"
	$(MAKE) --no-print-directory -j2 -O integration sanity-then-compat; stage "integration|sanity+compat"
	$(MAKE) --no-print-directory -j2 -O molecule-chain-1 molecule-chain-2; stage "molecule"
	echo "make test: all stages passed in $$(( $$(date +%s) - t0 )) s"

# Fuzz the parsers of hostile input (not part of `make test`): FUZZ_SECONDS of CPU, corpus
# kept in tests/fuzz/corpus; `make fuzz FUZZ_SECONDS=3600` is the hour issue #11 asks for.
FUZZ_SECONDS ?= 300
fuzz: venv collection
	nice -n 19 $(PY) tests/fuzz/fuzz_parsers.py --seconds $(FUZZ_SECONDS)

demo: venv collection
	$(PY) -m tests.harness demo up

demo-destroy: venv collection
	$(PY) -m tests.harness demo destroy

build: venv
	@mkdir -p $(TMP)/dist
	ansible-galaxy collection build --force --output-path $(TMP)/dist .

# Reference pages in docs/modules and docs/roles (antsibull-docs), the architecture picture,
# and the HTML reference site (antsibull-docs + Sphinx) in .tmp/docs/html.
docs: deps venv collection
	$(PY) scripts/gen_test_table.py
	bash scripts/build_docs.sh

# Every benchmark (benchmarks/_*.py are their helpers), or those named: make bench BENCHES="benchmarks/images.py benchmarks/iso.py"
BENCHES ?= $(sort $(filter-out benchmarks/_%,$(wildcard benchmarks/*.py)))
bench: venv collection fixtures
	for b in $(BENCHES); do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf $(TMP) .pytest_cache
