# ec2spot.autorecover: every entry point sets itself up from a fresh clone.
#   make test   - unit, sandbox-fidelity, module (ansible-playbook), sanity and lint tests
#   make demo   - the Spot interruption drill end to end in the sandbox, with real data (both AZ cases)
#   make bench  - benchmarks that report figures
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT        := $(CURDIR)
VENV        := $(ROOT)/.venv
BUILD       := $(ROOT)/.build
# Ansible and ansible-lint resolve ec2spot.autorecover through this tree (a symlink to the checkout).
COLLECTIONS := $(BUILD)/collections
# ansible-test needs a real copy under .../ansible_collections/ec2spot/autorecover.
SANITY_ROOT := $(BUILD)/sanity/ansible_collections
SANITY_DIR  := $(SANITY_ROOT)/ec2spot/autorecover
# amazon.aws 11 needs Python >= 3.12; 3.11 is this machine's default and would silently get an older ansible.
PYTHON      ?= $(shell for p in python3.12 python3.13 $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3 $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3; do \
                 if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then command -v $$p; break; fi; done)
PY_TAG      := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)

export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
export PYTHONPATH := $(ROOT):$(COLLECTIONS)
export PYTHONDONTWRITEBYTECODE := 1
export MOTO_EC2_LOAD_DEFAULT_AMIS := false

.PHONY: help venv collection agent-tools test format unit module-test molecule sanity lint doc demo demo-foundation bench clean

help:
	@echo "make test   - run every test (sets up .venv and the sandbox itself)"
	@echo "make demo   - deploy, write canaries, interrupt, recover (same AZ, then another AZ); report in .build/demo/"
	@echo "make bench  - run the benchmarks"

$(VENV)/.installed: requirements.txt tests/requirements.txt
	@if [ -z "$(PYTHON)" ]; then echo "error: Python >= 3.12 is required (amazon.aws 11 needs it); install one or pass PYTHON=/path/to/python3.12" >&2; exit 1; fi
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r tests/requirements.txt
	touch $@

venv: $(VENV)/.installed

collection: venv
	@mkdir -p $(COLLECTIONS)/ansible_collections/ec2spot
	@ln -sfn $(ROOT) $(COLLECTIONS)/ansible_collections/ec2spot/autorecover

test: format unit module-test molecule sanity lint doc
	@echo "make test: all suites passed"

# One formatter for the tree (ruff.toml: 120 columns; `ruff format` applies it), and no name left undefined or unused.
format: venv
	ruff format --check --quiet .
	ruff check --quiet --select E9,F .
	@echo "ruff: every Python file is formatted, nothing undefined or unused"

unit: collection agent-tools
	python -m pytest -q tests/unit
	python -m pytest -q tests/sandbox
	python -m pytest -q tests/agent

# The instance agent's tests prove its refusals on real XFS as well as ext4 (mkfs.xfs, xfs_repair) and
# crash a filesystem with its journal full (xfs_io's shutdown): xfsprogs, from Debian's packages.
agent-tools:
	@if ! command -v mkfs.xfs >/dev/null || ! command -v xfs_io >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q xfsprogs >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q xfsprogs >/dev/null; }; \
	  else echo "make agent-tools: install xfsprogs (mkfs.xfs, xfs_repair, xfs_io) for tests/agent" >&2; exit 1; fi; fi

# In parallel, one worker per test file (each file's fixtures deploy once; see tests/integration/conftest.py).
# The tests mostly wait on the sandbox's modeled AWS time, so three workers share two CPUs well.
MODULE_TEST_WORKERS ?= 3
module-test: collection
	python -m pytest -q -n $(MODULE_TEST_WORKERS) --durations=12 tests/integration

# Molecule scenarios (default driver, no container), each against a private sandbox, MOLECULE_JOBS at a time;
# a failed scenario's output is printed.
MOLECULE_SANDBOX_SCENARIOS := control_plane fleet standby cpu_watchdog monitoring
MOLECULE_JOBS ?= 3
molecule: collection
	@mkdir -p $(BUILD)/molecule
	@printf '%s\n' $(MOLECULE_SANDBOX_SCENARIOS) | xargs -P $(MOLECULE_JOBS) -I{} sh -c \
	  'if python -m sandbox run -- molecule test -s {} > $(BUILD)/molecule/{}.log 2>&1; then echo "molecule {}: passed"; \
	   else echo "molecule {}: FAILED" >&2; tail -n 150 $(BUILD)/molecule/{}.log >&2; exit 1; fi'
	molecule test -s instance_agent

# ansible-test: copy the tracked tree (it scans every file outside git), link the dependency
# collections it cannot see in site-packages, and give it the pip bootstrap it cannot download.
sanity: venv
	@rm -rf $(SANITY_DIR) && mkdir -p $(SANITY_DIR)
	@git ls-files -co --exclude-standard -z | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C $(SANITY_DIR)
	@cd $(SANITY_DIR) && git init -q . && git add -A >/dev/null
	@SITE=$$(python -c 'import os, sysconfig; print(os.path.join(sysconfig.get_paths()["purelib"], "ansible_collections"))'); \
	  ln -sfn $$SITE/amazon $(SANITY_ROOT)/amazon; ln -sfn $$SITE/community $(SANITY_ROOT)/community
	python tools/ansible_test_offline_pip.py
	cd $(SANITY_DIR) && ansible-test sanity --python $(PY_TAG) --color no

lint: collection
	ansible-lint --profile production --offline

doc: collection
	@# Every module, role and filter there is (derived from the tree, never a hand-kept list); a role without
	@# meta/argument_specs.yml is an error, not a skip.
	@for f in plugins/modules/*.py; do m=$$(basename $$f .py); \
	  ansible-doc ec2spot.autorecover.$$m >/dev/null || { echo "ansible-doc failed for module $$m" >&2; exit 1; }; done
	@for r in roles/*/; do r=$$(basename $$r); test -f roles/$$r/meta/argument_specs.yml || { echo "role $$r has no meta/argument_specs.yml" >&2; exit 1; }; \
	  ansible-doc -t role ec2spot.autorecover.$$r >/dev/null || { echo "ansible-doc failed for role $$r" >&2; exit 1; }; done
	@for f in plugins/filter/*.py; do n=$$(basename $$f .py); \
	  ansible-doc -t filter ec2spot.autorecover.$$n >/dev/null || { echo "ansible-doc failed for filter $$n" >&2; exit 1; }; done
	@echo "ansible-doc renders every module, role and filter of the collection"

# The drill end to end: deploy.yml, canaries, drill.yml twice (same AZ, other AZ); .build/demo/report.{json,txt,png}.
demo: collection
	python -m sandbox.demo

# The foundation demo: the recovery core's modules in one playbook (backup, restore across AZs, EIP).
demo-foundation: collection
	python -m sandbox run -- ansible-playbook sandbox/demo/foundation.yml

# RTO of both strategies, the handler's critical path, 100 interruptions, retention over 1,000 AMIs
# (.build/bench/results.{json,md}); then the recovery core's moves in modeled AWS time.
bench: collection
	python -m benchmarks
	python -m benchmarks.foundation

clean:
	rm -rf $(BUILD) $(VENV) .pytest_cache tests/output
