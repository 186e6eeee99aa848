# baremetal.kubernetes developer and CI entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
SANITY_VENV ?= .venv-sanity
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export CONTAINERS_CONF := $(abspath tests/harness/containers.conf)
export MOLECULE_GLOB := molecule/*/molecule.yml
export ANSIBLE_NOCOLOR := 1
export PY_COLORS := 0

APT_PACKAGES := podman runc debootstrap uidmap slirp4netns iproute2 iptables ca-certificates \
	curl gnupg shellcheck haproxy keepalived openssh-client \
	qemu-system-x86 qemu-utils socat dpkg-dev e2fsprogs psmisc gcc libc6-dev libseccomp-dev
ALL_SCENARIOS := $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
# Scenarios not yet passing end to end in one `molecule test` run. `make molecule` names them on every
# run; `make molecule SCENARIOS=<name>` runs one. None today: every scenario runs in CI.
NOT_YET_GREEN :=
# Scenarios on QEMU virtual machines (molecule/vm): under software emulation, on runners without usable
# KVM such as ours, they take minutes per VM boot and seconds per Ansible task. `make test-vm` runs them
# whole; `make molecule` leaves them out; `make test` runs molecule/vm's reduced form (test-vm-kernel)
# in the background while the checks and the first scenario's steps before its verify run (README, Testing).
VM_SCENARIOS := vm
# The reduced form: only the node role's steps that containers cannot prove (swap, kernel modules,
# sysctls), with the same check mode, idempotence and reboot; the tests of the rest are named, not run.
VM_KERNEL_TAGS := node_preflight,node_swap,node_kernel,untagged
QUIET_LOCK := $(abspath build/quiet-machine.lock)
VM_KERNEL_RUN = t0=$$(date +%s); echo "== molecule test -s vm, reduced form: MOLECULE_VM_TAGS=$(VM_KERNEL_TAGS)"; \
	MOLECULE_VM_TAGS=$(VM_KERNEL_TAGS) molecule test -s vm && \
	echo "== molecule/vm (reduced form) passed in $$(( $$(date +%s) - t0 )) s"
SCENARIOS ?= $(filter-out $(NOT_YET_GREEN) $(VM_SCENARIOS),$(ALL_SCENARIOS))
SANITY_ROOT := build/sanity/ansible_collections/baremetal/kubernetes
EE_OUT ?= build/ee
EE_TAG ?= baremetal-kubernetes-ee:$(shell sed -n 's/^version: //p' galaxy.yml)

.PHONY: help deps apt venv image vm-image components packages lint sanity units integration checks molecule test test-vm \
	test-vm-kernel ee bench lab \
	lab-destroy clean

help: ## This list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: apt venv image components packages vm-image ## apt packages, venv, node image, real components, VM disk

apt: ## Debian packages the harness needs (root)
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null
	@# The Debian packages may start host services we never use; the tests run their own copies in
	@# nodes. Stop them through systemd only: a pkill here would also hit the processes inside running
	@# test containers, which the host sees.
	-systemctl disable --now haproxy keepalived >/dev/null 2>&1 || true

venv: $(VENV)/.installed ## Python venv from requirements.txt
$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

image: ## Node image localhost/baremetal-node:debian12 (rebuilt only when its recipe changes)
	tests/harness/build-node-image.sh

components: venv ## Real Kubernetes, etcd, containerd... built from the Go module proxy (cached by version)
	$(PY) tests/harness/components.py build

packages: components image ## Their .debs (signed apt mirror), release tarballs and images (cached)
	$(PY) tests/harness/packages.py build

vm-image: image ## Debian 12 qcow2 disk for the VM scenarios, from the node image (cached by recipe)
	tests/harness/build-vm-image.sh

lint: venv ## ansible-lint (production profile), yamllint, ruff
	ansible-lint --profile production
	yamllint --strict .
	ruff check .

sanity: $(SANITY_VENV)/.installed ## ansible-test sanity in a temporary ansible_collections/ tree
	rm -rf build/sanity && mkdir -p $(SANITY_ROOT) ~/.ansible/test/cache
	git ls-files -co --exclude-standard | grep -v '^\.collections/' | tar -cf - -T - | tar -xf - -C $(SANITY_ROOT)
	cd $(SANITY_ROOT) && git init -q && git add -A
	@# ansible-test bootstraps pip into its venvs with a get-pip.py it downloads from a host we cannot reach.
	for v in $$($(SANITY_VENV)/bin/python -c 'from ansible_test._internal.python_requirements import get_venv_packages as g; \
		from types import SimpleNamespace as N; print(g(N(version="3.11"))["pip"])'); do \
		cp tests/sanity/get_pip_offline.py ~/.ansible/test/cache/get_pip_$${v//./_}.py; done
	cd $(SANITY_ROOT) && $(abspath $(SANITY_VENV))/bin/ansible-test sanity --color no --python 3.11 --requirements

# ansible-test gets its own venv: its pinned linters must not fight ansible-lint's in $(VENV).
$(SANITY_VENV)/.installed: requirements.txt
	test -x $(SANITY_VENV)/bin/python || python3 -m venv $(SANITY_VENV)
	$(SANITY_VENV)/bin/pip install -q $$(grep '^ansible-core==' requirements.txt)
	touch $@

units: venv components ## Unit tests (modules, plugins, role specs)
	pytest -q tests/unit

integration: venv components ## Controller-side integration tests (preflight contacts no host, collection build)
	pytest -q tests/integration

molecule: venv image packages ## Every Molecule scenario (check mode, converge, idempotence, verify)
	@set -e; times=""; for s in $(SCENARIOS); do \
		if [ -n "$${BAREMETAL_QUIET_LOCK:-}" ]; then w0=$$(date +%s); \
			flock -w 1800 $$BAREMETAL_QUIET_LOCK true || { echo "== $$BAREMETAL_QUIET_LOCK still locked after \
			1800 s: the background VM run did not end (build/test-vm-kernel.log)"; exit 1; }; \
			echo "== quiet machine: waited $$(( $$(date +%s) - w0 )) s for the background VM run"; fi; \
		echo "== molecule test -s $$s"; t0=$$(date +%s); molecule test -s $$s; \
		t=$$(( $$(date +%s) - t0 )); times="$$times$$(printf '  %-12s %5d s' $$s $$t)\n"; \
		echo "== molecule/$$s passed in $$t s"; done; printf "== molecule scenarios\n$$times"
	@for s in $(filter $(NOT_YET_GREEN),$(filter-out $(SCENARIOS),$(ALL_SCENARIOS))); do \
		echo "== NOT RUN: molecule/$$s is not yet green end to end (make molecule SCENARIOS=$$s)"; done
	@for s in $(filter $(VM_SCENARIOS),$(filter-out $(SCENARIOS),$(ALL_SCENARIOS))); do \
		echo "== NOT RUN here: molecule/$$s boots QEMU VMs (make test-vm; make test runs its reduced form)"; done

test: venv vm-image packages ## Everything CI runs: checks, the VM scenario's reduced form next to them, every container scenario
	@# The checks share nothing and are bound by one core each (-j2; -O prints each one's output whole when
	@# it ends). molecule/vm's reduced form runs in the background from the start, holding QUIET_LOCK, next
	@# to the checks only: every container scenario waits for the lock before it starts. (Its reboot under
	@# TCG did not come back within 480 s once while molecule/cluster booted its seven containers and ran
	@# check mode next to it.) Verify steps (failover and upgrade bounds) so also run on a quiet machine;
	@# molecule/conftest.py's wait for the lock before the first testinfra verify is then a no-op. The VM
	@# run's output is printed at the end.
	@mkdir -p build; log=build/test-vm-kernel.log; lock=$(QUIET_LOCK); : > $$lock; exec 9<>$$lock; \
		flock -w 60 9 || { echo "== $$lock is held by another run (fuser -v $$lock)"; exit 1; }; \
		( ( $(VM_KERNEL_RUN) ) 9<&-; rc=$$?; flock -u 9; exit $$rc ) > $$log 2>&1 & vm=$$!; exec 9<&-; \
		$(MAKE) --no-print-directory -j2 -O checks; rc=$$?; \
		if [ $$rc -eq 0 ]; then BAREMETAL_QUIET_LOCK=$$lock $(MAKE) --no-print-directory molecule; rc=$$?; fi; \
		wait $$vm; vm=$$?; echo "== output of molecule/vm's reduced form ($$log), run in the background:"; \
		cat $$log; [ $$rc -eq 0 ] && [ $$vm -eq 0 ]

test-vm: venv vm-image packages ## The VM scenarios (QEMU; KVM when it works, else slow TCG), with their times
	@set -e; times=""; for s in $(VM_SCENARIOS); do echo "== molecule test -s $$s"; t0=$$(date +%s); molecule test -s $$s; \
		t=$$(( $$(date +%s) - t0 )); times="$$times$$(printf '  %-12s %5d s' $$s $$t)\n"; \
		echo "== molecule/$$s passed in $$t s"; done; printf "== VM scenarios\n$$times"

test-vm-kernel: venv vm-image packages ## molecule/vm's reduced form (VM_KERNEL_TAGS), as CI runs it, with its time
	@$(VM_KERNEL_RUN)

checks: lint sanity units integration ## lint, sanity, units and integration (no Molecule)

ee: venv ## AWX/AAP execution environment: build context in build/ee (EE_BUILD=1: also the image, EE_TAG)
	rm -rf $(EE_OUT)
	ansible-builder create --file execution-environment/execution-environment.yml --context $(EE_OUT)
	ansible-galaxy collection build --output-path $(EE_OUT)/_build/collections .
	mv $(EE_OUT)/_build/collections/baremetal-kubernetes-*.tar.gz $(EE_OUT)/_build/collections/baremetal-kubernetes.tar.gz
	$(if $(EE_BUILD),podman build -f $(EE_OUT)/Containerfile -t $(EE_TAG) $(EE_OUT),@echo "== build context: $(EE_OUT) (make ee EE_BUILD=1 builds $(EE_TAG))")

bench: venv image ## Benchmarks, never asserted: each tests/bench/bench_* prints a results table
	@shopt -s nullglob; set -e; for b in tests/bench/bench_*; do echo "== $$b"; $$b; done

lab: venv image packages ## 5 local podman nodes + the real components' repository, then site.yml (inventories/lab)
	tests/harness/lab.sh up
	ansible-playbook site.yml -i inventories/lab
	@tests/harness/lab.sh usage

lab-destroy: ## Remove the lab: every container labelled baremetal.lab, its network and build/lab
	tests/harness/lab.sh down

clean: ## Remove build output, the VM disk included (keeps the venv and the node image)
	rm -rf build .pytest_cache .ruff_cache
