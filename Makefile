# virtops.virtnet — developer entry points. `make test` and `make demo` work on a fresh
# Debian 12 machine as root: they install what they need first (apt packages, a pinned venv).
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT      := $(abspath .)
VENV      := $(ROOT)/.venv
VENV216   := $(ROOT)/.venv-2.16
VENV221   := $(ROOT)/.venv-2.21
PY        := $(VENV)/bin/python
BUILD     := $(ROOT)/build
COLL      := $(BUILD)/collections
COLL_LINK := $(COLL)/ansible_collections/virtops/virtnet
SANITY    := $(BUILD)/sanity/ansible_collections/virtops/virtnet
# Debian's own python3 (built with PGO/LTO, the interpreter `apt install ansible` runs on) rather than
# whatever `python3` is first on PATH (this image's pyenv build is compiled without optimisations and
# runs the trace parser about a quarter slower; bench/results/trace_parse.json records the interpreter).
PYTHON    ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
PYTEST_ARGS ?=
# integration tests run in parallel, one lab per worker, a test file per worker at a time
IT_WORKERS ?= 3
SANITY_ARGS ?=

export ANSIBLE_COLLECTIONS_PATH := $(COLL)
export ANSIBLE_HOST_KEY_CHECKING := False
export ANSIBLE_NOCOLOR := 1
export PATH := $(VENV)/bin:$(PATH)

APT_PACKAGES := libvirt-daemon-system libvirt-clients libvirt-dev pkg-config qemu-system-x86 \
  dnsmasq-base iptables nftables openssh-server openssh-client iproute2 python3-libvirt \
  python3-lxml python3-venv bridge-utils procps kmod util-linux rsync netcat-openbsd chromium iputils-ping \
  gcc libc6-dev patchelf shellcheck mmdebstrap strace

.PHONY: help deps apt venv venv-2.16 link unit integration sanity sanity-2.16 compat lint vermin \
  molecule test demo lab-up lab-down bench build collection-check clean \
  pytargets rootfs integration-userlands matrix venv-2.21 sanity-2.21 compat-2.21 integration-targets

help:
	@echo "make demo      - bring up a lab hypervisor, trace a NAT'd guest connection, explain it"
	@echo "make test      - everything CI runs: unit, integration (lab), sanity, lint, vermin, molecule, 2.16 lane"
	@echo "make unit | integration | sanity | lint | vermin | molecule [SCENARIO=trace] | compat | bench"
	@echo "make lab-up | lab-down | build | collection-check | clean"

## --- set-up -------------------------------------------------------------------------------
deps: apt venv link

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo ">>> apt-get install $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo ">>> apt packages present"; fi

venv: $(VENV)/.stamp
$(VENV)/.stamp: tests/requirements.txt
	@echo ">>> venv $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt 2>&1 | grep -v '^WARNING: Location' || true
	@$(VENV)/bin/python -c 'import ansible, pytest, lxml, yaml' && touch $@

venv-2.16: $(VENV216)/.stamp
$(VENV216)/.stamp: tests/requirements-2.16.txt
	@echo ">>> venv $(VENV216) (ansible-core 2.16 compatibility lane)"
	@$(PYTHON) -m venv $(VENV216)
	@$(VENV216)/bin/pip install -q --disable-pip-version-check -r tests/requirements-2.16.txt 2>&1 | grep -v '^WARNING: Location' || true
	@$(VENV216)/bin/python -c 'import ansible, pytest, lxml, yaml' && touch $@

link:
	@mkdir -p $(dir $(COLL_LINK))
	@[ -e $(COLL_LINK) ] || ln -s $(ROOT) $(COLL_LINK)

## --- tests --------------------------------------------------------------------------------
unit: venv link
	$(PY) -m pytest -q -m "not integration" $(PYTEST_ARGS)

integration: deps rootfs
	@rm -rf $(BUILD)/reliability $(BUILD)/matrix
	$(PY) -m pytest -q -m integration -n $(IT_WORKERS) --dist load --durations=15 tests/integration $(PYTEST_ARGS)
	@$(PY) tests/integration/reliability.py

vermin: venv
	$(VENV)/bin/vermin -q --no-tips --violations --eval-annotations -t=2.7- -t=3.6- plugins/modules plugins/module_utils
	@echo ">>> vermin: target-side code parses on Python 2.7 and 3.6+"

# ansible-test wants the collection under ansible_collections/<ns>/<name>; copy the tracked tree.
# ansible-test fetches a pip bootstrap script from a CI file server; seed its cache offline.
define sanity_run
	@mkdir -p $(HOME)/.ansible/test/cache && for v in 25_2 24_2 23_1_2 21_3_1 20_3_4; do \
	  cp tests/utils/ansible_test_get_pip.py $(HOME)/.ansible/test/cache/get_pip_$$v.py; done
	@rm -rf $(BUILD)/sanity && mkdir -p $(SANITY)
	@rsync -a --exclude-from=<(printf '%s\n' .git '.venv*' build .pytest_cache .hypothesis __pycache__ 'bench/results') $(ROOT)/ $(SANITY)/
	@cd $(SANITY) && git init -q && git add -A && git -c user.name=ci -c user.email=ci@localhost commit -qm sanity
	cd $(SANITY) && $(1)/bin/ansible-test sanity --color no --python $$($(1)/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])') $(2)
endef

sanity: venv
	$(call sanity_run,$(VENV),--requirements $(SANITY_ARGS))

sanity-2.16: venv-2.16
	$(call sanity_run,$(VENV216),--requirements)

compat: venv-2.16 link
	@echo ">>> compatibility lane: unit tests under ansible-core 2.16"
	$(VENV216)/bin/python -m pytest -q -m "not integration" -p no:cacheprovider $(PYTEST_ARGS)
	$(MAKE) sanity-2.16

## --- ansible-core lanes and real old target Pythons (issue 11) ----------------------------
# Lanes: 2.16 (the last to run modules on Python 2.7 and 3.6 targets: el7 and el8 get the real
# CPython 2.7 / 3.6 built by tests/lab/pytargets.py), 2.19 (.venv, the default), 2.21 (controller
# on the image's pyenv CPython 3.13). What cannot run here is skipped with the reason printed.
PY313 ?= $(shell p=$$(command -v pyenv || echo $(HOME)/.pyenv/bin/pyenv); \
  pre=$$($$p prefix 3.13.0 2>/dev/null) && test -x $$pre/bin/python3.13 && echo $$pre/bin/python3.13)
TARGETS_IT := tests/integration/test_network.py tests/integration/test_guest_interface.py
# the tracing suites' per-host tests, run on the target persona's host only (-k), and the corpus conformance
# test on the target's own libvirt (selected by its name): the other hosts of
# those labs (debian12, el7, el6) are covered by `make integration`
TRACING_IT := tests/integration/test_nf_log.py tests/integration/test_trace_rule.py tests/integration/test_log_rule.py \
  tests/integration/test_network_corpus.py tests/integration/test_trace_capture_userlands.py
lane_k = -k "test_network or test_guest_interface or $(1)-1"
SMOKE_IT   := tests/integration/test_lab.py tests/integration/test_nf_log.py \
  tests/integration/test_network.py::test_mode_lifecycle \
  tests/integration/test_network.py::test_check_mode_reports_and_changes_nothing \
  tests/integration/test_network.py::test_xml_with_external_entity_is_refused

pytargets: venv
	@$(PY) tests/lab/pytargets.py build

# real Debian 11 and 13 root filesystems for the debian11/debian13/el10 personas (cached in
# /var/cache/virtlab/rootfs, rebuilt when the package list changes; about 25 s each from cold)
rootfs: apt
	@$(PYTHON) tests/lab/rootfs.py build >/dev/null

venv-2.21: $(VENV221)/.stamp
$(VENV221)/.stamp: tests/requirements-2.21.txt
	@if [ -z "$(PY313)" ]; then echo "SKIP venv-2.21: no CPython 3.13 (pyenv 3.13.0) for the 2.21 controller"; exit 0; fi; \
	echo ">>> venv $(VENV221) (ansible-core 2.21 lane on $(PY313))"; \
	$(PY313) -m venv $(VENV221) && \
	{ $(VENV221)/bin/pip install -q --disable-pip-version-check -r tests/requirements-2.21.txt 2>&1 | grep -v '^WARNING: Location' || true; } && \
	$(VENV221)/bin/python -c 'import ansible, pytest, lxml, yaml' && touch $@

sanity-2.21: venv-2.21
	@if [ -x $(VENV221)/bin/ansible-test ]; then :; else echo "SKIP sanity-2.21: no 2.21 venv"; exit 0; fi
	$(call sanity_run,$(VENV221),--requirements)

# 2.16 lane: the libvirt module suites on el7 (real Python 2.7) and el8 (real Python 3.6), two labs
# side by side (logs in build/it-2.16-*.log).
integration-targets: deps pytargets venv-2.16
	@mkdir -p $(BUILD); rc=0; for t in el7 el8; do \
	  VIRTLAB_NAME=$${VIRTLAB_NAME:-it}-$$t VIRTLAB_TARGET=$$t $(VENV216)/bin/python -m pytest -q -m integration \
	    -p no:cacheprovider --durations=5 $(TARGETS_IT) $(TRACING_IT) $(call lane_k,$$t) $(PYTEST_ARGS) \
	    > $(BUILD)/it-2.16-$$t.log 2>&1 & \
	done; for t in el7 el8; do wait -n || rc=1; done; \
	for t in el7 el8; do echo "--- ansible-core 2.16, VIRTLAB_TARGET=$$t"; tail -n 25 $(BUILD)/it-2.16-$$t.log; done; exit $$rc

# The libvirt module suites on the real Debian 11 / 13 userlands (libvirt 7.0 / 11.3, Python 3.9 / 3.13)
# and on el10 (libvirt's nftables backend), under the default lane, three labs side by side.
USERLANDS ?= debian11 debian13 el10
integration-userlands: deps rootfs
	@mkdir -p $(BUILD); rc=0; for t in $(USERLANDS); do \
	  VIRTLAB_NAME=$${VIRTLAB_NAME:-it}-$$t VIRTLAB_TARGET=$$t $(PY) -m pytest -q -m integration \
	    -p no:cacheprovider -p no:xdist --durations=5 $(TARGETS_IT) $(TRACING_IT) $(call lane_k,$$t) $(PYTEST_ARGS) \
	    > $(BUILD)/it-$$t.log 2>&1 & \
	done; for t in $(USERLANDS); do wait -n || rc=1; done; \
	for t in $(USERLANDS); do echo "--- VIRTLAB_TARGET=$$t"; tail -n 25 $(BUILD)/it-$$t.log; done; exit $$rc

# 2.21 lane: unit tests, the integration smoke set (debian12 and the netfilter personas), sanity.
compat-2.21: venv-2.21 link
	@if [ -x $(VENV221)/bin/python ]; then :; else echo "SKIP compat-2.21: no 2.21 venv (needs CPython 3.13)"; exit 0; fi
	@echo ">>> ansible-core 2.21 lane: unit tests, smoke integration, sanity"
	$(VENV221)/bin/python -m pytest -q -m "not integration" -p no:cacheprovider $(PYTEST_ARGS)
	VIRTLAB_NAME=$${VIRTLAB_NAME:-it}-221 $(VENV221)/bin/python -m pytest -q -m integration -p no:cacheprovider $(SMOKE_IT)
	$(MAKE) --no-print-directory sanity-2.21

lint: venv link
	$(VENV)/bin/ansible-lint --profile production

molecule: deps
	@if ls molecule/*/molecule.yml >/dev/null 2>&1; then \
	  cd $(ROOT) && $(VENV)/bin/molecule test $(if $(SCENARIO),-s $(SCENARIO),--all); \
	else echo ">>> no molecule scenarios yet"; fi

collection-check: build
	@tar -tzf $(BUILD)/virtops-virtnet-*.tar.gz > $(BUILD)/tarball.list; \
	echo ">>> $$(wc -l < $(BUILD)/tarball.list) files, $$(du -k $(BUILD)/virtops-virtnet-*.tar.gz | cut -f1) KiB in the tarball; files per directory:"; \
	sed 's|/[^/]*$$||' $(BUILD)/tarball.list | sort | uniq -c | sort -rn | head -n 15; \
	if grep -E '(^|/)(\.venv[^/]*|rootfs|\.git)(/|$$)|^(build|tests|molecule|bench)/|\.tar(\.zst)?$$' $(BUILD)/tarball.list | head -n 5 | grep .; then \
	  echo "FAIL: the tarball packs venvs, root filesystems, lab or build artifacts (galaxy.yml build_ignore)"; exit 1; fi
	@rm -rf $(BUILD)/install && mkdir -p $(BUILD)/install
	$(VENV)/bin/ansible-galaxy collection install --force -p $(BUILD)/install $(BUILD)/virtops-virtnet-*.tar.gz
	@for m in $$(ls plugins/modules/*.py | xargs -n1 basename | sed 's/\.py$$//' | grep -v '^__'); do \
	  ANSIBLE_COLLECTIONS_PATH=$(BUILD)/install $(VENV)/bin/ansible-doc virtops.virtnet.$$m >/dev/null || exit 1; \
	  echo "ansible-doc virtops.virtnet.$$m: ok"; done

build: venv
	@rm -f $(BUILD)/virtops-virtnet-*.tar.gz; mkdir -p $(BUILD)
	$(VENV)/bin/ansible-galaxy collection build --force --output-path $(BUILD) .

test: deps
	@echo "=== unit";        $(MAKE) --no-print-directory unit
	@echo "=== vermin";      $(MAKE) --no-print-directory vermin
	@echo "=== build";       $(MAKE) --no-print-directory collection-check
	@echo "=== sanity";      $(MAKE) --no-print-directory sanity
	@echo "=== lint";        $(MAKE) --no-print-directory lint
	@echo "=== integration"; $(MAKE) --no-print-directory integration
	@echo "=== molecule";    $(MAKE) --no-print-directory molecule
	@echo "=== compat";      $(MAKE) --no-print-directory compat
	@echo "=== 2.16 targets"; $(MAKE) --no-print-directory integration-targets
	@echo "=== userlands";  $(MAKE) --no-print-directory integration-userlands
	@echo "=== compat 2.21"; $(MAKE) --no-print-directory compat-2.21
	@echo "=== matrix";    $(MAKE) --no-print-directory matrix

# docs/matrix.md: persona x suite of the integration runs above (versions read from the hosts);
# docs/matrix.json its summary, and README.md's support table rendered from it
matrix: venv
	@$(PY) tests/lab/matrix.py $(BUILD)/matrix docs/matrix.md docs/matrix.json README.md

## --- lab, demo, bench ---------------------------------------------------------------------
lab-up: deps
	@$(PYTHON) tests/lab/virtlab.py up --hosts 3 --persona debian12 --persona el7 --persona el6

lab-down:
	@$(PYTHON) tests/lab/virtlab.py down

demo: deps
	@bash scripts/demo.sh

bench: deps
	$(PY) bench/run.py

clean:
	rm -rf $(BUILD) .pytest_cache
