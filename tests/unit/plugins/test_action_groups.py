"""meta/runtime.yml's action groups hold modules that share their options.

module_defaults for a group passes every option to every module of the group in its scope, and a module fails
on an option it does not take: a group is only usable when its members all take the group's options.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "harness"))
from refdocs import ansible_doc  # noqa: E402  # the reference generator's ansible-doc call, reused

GROUP_OPTIONS = {
    "cluster": {"kubeconfig", "context", "api_server", "validate_certs"},
    "etcd": {"endpoints", "cacert", "cert", "key", "etcdctl", "command_timeout"},
}


def module_options():
    names = ["baremetal.kubernetes.%s" % p.stem for p in (ROOT / "plugins" / "modules").glob("*.py")]
    return {fqcn.split(".")[-1]: set(entry["doc"].get("options") or {}) for fqcn, entry in
            ansible_doc("-t", "module", "--json", *names).items()}


def test_each_group_holds_exactly_the_modules_that_take_its_options():
    groups = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())["action_groups"]
    assert set(groups) == set(GROUP_OPTIONS)
    options = module_options()
    for group, shared in GROUP_OPTIONS.items():
        takers = {name for name, taken in options.items() if shared <= taken}
        assert set(groups[group]) == takers, (group, set(groups[group]) ^ takers)
