"""docs/reference/ is what tests/harness/refdocs.py generates from the collection's own documentation.

A changed option, default, alias or return value must come with its regenerated page (`make docs`): the
reference never drifts from `ansible-doc`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
REFDOCS = ROOT / "tests" / "harness" / "refdocs.py"
REFERENCE = ROOT / "docs" / "reference"


def test_the_reference_is_current():
    check = subprocess.run([sys.executable, str(REFDOCS), "check"], capture_output=True, text=True, timeout=300,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr[-3000:]


def test_every_role_module_and_filter_has_a_page_linked_from_the_index():
    index = (REFERENCE / "index.md").read_text()
    pages = sorted(p.name for p in REFERENCE.glob("*.md") if p.name != "index.md")
    expected = {"%s_role.md" % p.name for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml")
                .is_file()}
    expected |= {"%s_module.md" % p.stem for p in (ROOT / "plugins" / "modules").glob("*.py")}
    assert expected <= set(pages), expected - set(pages)
    assert all("(%s)" % page in index for page in pages), [p for p in pages if "(%s)" % p not in index]


def test_markup_becomes_markdown_without_needless_escapes():
    page = (REFERENCE / "etcd_health_module.md").read_text()
    assert "| `endpoints` | list of str | **required** |" in page
    assert "<code>" in page and "\\," not in page and "\\." not in page
