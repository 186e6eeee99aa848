# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loading a role's variable files for the unit tests that render its derived values with a Templar."""

from __future__ import annotations

import yaml
from ansible.template import trust_as_template


def load_yaml(path):
    with open(path, encoding="utf-8") as stream:
        return yaml.safe_load(stream) or {}


def trusted(value):
    """Mark strings as templates, as ansible-core does for everything loaded from a role's files."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {name: trusted(item) for name, item in value.items()}
    if isinstance(value, list):
        return [trusted(item) for item in value]
    return value
