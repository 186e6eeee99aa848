"""Offline stand-in for get-pip.py, which ansible-test downloads to put pip into its venvs.

Our machines reach PyPI but not the host ansible-test fetches get-pip.py from. This does the
same job with the standard library: ensurepip installs the bundled pip, then pip installs the
exact packages ansible-test asked for (from the configured package index).
`make sanity` copies it to ~/.ansible/test/cache/get_pip_<version>.py.
"""

import subprocess
import sys

# Options that only get-pip.py itself understands.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main():
    # In a child process: ensurepip disables pip's configuration in its own process
    # environment, and the install below needs that configuration (index, certificates).
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))


if __name__ == "__main__":
    main()
