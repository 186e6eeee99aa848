"""The Makefile only names targets: no recipe is longer than five lines, and every target says what it does.

The orchestration (locks, background jobs, timings) lives in tests/harness/ci.sh, where it can carry comments
and be read as a program; a recipe that grows past five lines belongs there.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TARGET = re.compile(r"^([A-Za-z0-9_.$()/-]+):(?!=)")
MAX_RECIPE_LINES = 5


def recipes():
    """target -> its recipe's lines (continuation lines counted as lines, as a reader sees them)."""
    found, current = {}, None
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t") and current:
            found[current].append(line)
        elif TARGET.match(line):
            current = TARGET.match(line).group(1)
            found[current] = []
        elif line.strip() and not line.startswith("#"):
            current = None
    return found


def test_the_makefile_is_parsed():
    assert {"deps", "checks", "test", "molecule", "sanity", "lab"} <= set(recipes())


def test_no_recipe_is_longer_than_five_lines():
    long = {target: len(lines) for target, lines in recipes().items() if len(lines) > MAX_RECIPE_LINES}
    assert not long, "move these recipes into tests/harness/ci.sh: %s" % long


def test_every_phony_target_is_described_in_make_help():
    text = (ROOT / "Makefile").read_text()
    phony = " ".join(re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", text, re.M).group(1).replace("\\\n", " ").split())
    described = set(re.findall(r"^([a-z-]+):.*## ", text, re.M))
    assert set(phony.split()) - described == set()
