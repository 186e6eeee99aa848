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
# Which scenarios run where (container, VM, reduced form) is tests/harness/ci.sh's; SCENARIOS=<names>
# runs only those with `make molecule`.
SCENARIOS ?=
EE_OUT ?= build/ee
EE_TAG ?= baremetal-kubernetes-ee:$(shell sed -n 's/^version: //p' galaxy.yml)

.PHONY: help deps apt venv image vm-image components packages lint sanity units integration checks molecule test test-vm \
	test-vm-kernel ee bench lab \
	lab-destroy clean docs

help: ## This list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: apt venv image components packages vm-image ## apt packages, venv, node image, real components, VM disk

# The Debian packages may start host services we never use (the tests run their own copies in nodes): they
# are stopped through systemd only, as a pkill would also hit the processes inside running test containers.
apt: ## Debian packages the harness needs (root)
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null
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
	SANITY_VENV=$(SANITY_VENV) tests/harness/ci.sh sanity

# ansible-test gets its own venv: its pinned linters must not fight ansible-lint's in $(VENV).
$(SANITY_VENV)/.installed: requirements.txt
	test -x $(SANITY_VENV)/bin/python || python3 -m venv $(SANITY_VENV)
	$(SANITY_VENV)/bin/pip install -q $$(grep '^ansible-core==' requirements.txt)
	touch $@

units: venv components ## Unit tests (modules, plugins, role specs)
	pytest -q tests/unit

integration: venv components ## Controller-side integration tests (preflight contacts no host, collection build)
	pytest -q tests/integration

molecule: venv image packages ## Every container scenario (check mode, converge, idempotence, verify), timed
	tests/harness/ci.sh molecule $(SCENARIOS)

test: venv vm-image packages ## Everything CI runs: the checks, molecule/vm's reduced form, every container scenario
	tests/harness/ci.sh test

test-vm: venv vm-image packages ## The VM scenarios (QEMU; KVM when it works, else slow TCG), timed
	tests/harness/ci.sh test-vm

test-vm-kernel: venv vm-image packages ## molecule/vm's reduced form, as CI runs it, timed
	tests/harness/ci.sh vm-kernel

checks: lint sanity units integration ## lint, sanity, units and integration (no Molecule)

docs: venv ## docs/reference/, generated from the roles' argument specs and the plugins' documentation
	$(PY) tests/harness/refdocs.py write

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

clean: ## Remove build output (keeps the venv, the node image and the build cache)
	rm -rf build .pytest_cache .ruff_cache
