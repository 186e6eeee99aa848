# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make ``ansible_collections.baremetal.kubernetes`` importable when pytest runs from the checkout.

``.collections/ansible_collections/baremetal/kubernetes`` is a symlink back to the repository
root, so putting ``.collections`` on ``sys.path`` exposes this checkout under its collection name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

COLLECTIONS_DIR = Path(__file__).resolve().parents[2] / ".collections"


def _collection_importable():
    try:
        return importlib.util.find_spec("ansible_collections.baremetal.kubernetes") is not None
    except ImportError:
        return False


if not _collection_importable() and str(COLLECTIONS_DIR) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_DIR))
