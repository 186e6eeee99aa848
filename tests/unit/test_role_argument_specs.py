"""Every role documents every default, with the same default value, and nothing else."""

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "defaults" / "main.yml").exists())


def _load(path):
    with open(path, encoding="utf-8") as stream:
        return yaml.safe_load(stream) or {}


def _documented(role):
    specs = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    options = {}
    for entry_point in specs.values():
        options.update(entry_point.get("options") or {})
    return options


def test_there_are_roles_to_check():
    assert "common" in ROLE_NAMES
    assert "cluster_defaults" in ROLE_NAMES


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_defaults_and_argument_specs_name_the_same_variables(role):
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    documented = _documented(role)
    assert sorted(set(defaults) - set(documented)) == [], "defaults missing from meta/argument_specs.yml"
    assert sorted(set(documented) - set(defaults)) == [], "argument_specs options without a default"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_documented_defaults_match(role):
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    for name, spec in _documented(role).items():
        assert "default" in spec, f"{role}: {name} documents no default"
        assert spec["default"] == defaults[name], f"{role}: {name} default differs"
        assert spec.get("description"), f"{role}: {name} has no description"


@pytest.mark.parametrize("role", [r for r in ROLE_NAMES if r != "cluster_defaults"])
def test_role_variables_carry_the_role_prefix(role):
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    assert [name for name in defaults if not name.startswith(role + "_")] == []
