# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kubesim: a Kubernetes test double. TEST CODE ONLY; see tests/kubesim/README.md."""

# The Kubernetes version kubesim reports when no package version is given.
DEFAULT_VERSION = "1.37.1"
