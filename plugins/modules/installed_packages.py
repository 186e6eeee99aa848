#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: installed_packages
short_description: The installed packages as C(ansible_facts.packages), from one dpkg-query or rpm run
version_added: 0.2.0
description:
  - Sets C(ansible_facts.packages) in the format of M(ansible.builtin.package_facts), read with one C(dpkg-query)
    or C(rpm -qa) run. Nothing is changed.
  - Why it exists - on Debian M(ansible.builtin.package_facts) opens python-apt's whole package cache (repository
    lists included), about 0.8 s of CPU per host; this module opens no cache, it reads only dpkg's or rpm's
    database of installed packages. It is meant to gate package tasks with the
    P(baremetal.kubernetes.missing_packages#filter) filter, which reads C(version) and C(release).
  - Reports only installed packages. With dpkg a package counts as installed when its current state is
    C(installed), the second letter of the status C(dpkg -l) shows (C(ii), or C(hi) for a held package);
    half-installed, unpacked, half-configured, triggers-awaited, triggers-pending, config-files and removed
    packages are left out.
  - Package names follow package_facts (python-apt's names), so that a lookup by name gives the same answer - a
    package of a foreign architecture (multi-arch) is listed under C(name:arch), for example C(libc6:i386); one
    of the native architecture (the C(dpkg) package's) or of C(all) under its plain name.
  - "Differences from M(ansible.builtin.package_facts). dpkg: the entries have no C(category) and C(origin)
    (both come from the apt cache), and package_facts also counts unpacked, half-configured, half-installed
    and triggers-awaited/pending packages as installed. rpm: C(epoch) is an integer, or C(null) for a package
    without one, as in package_facts' documented sample (ansible-core 2.19's package_facts returns it as a
    string, C(\"None\") for none); C(arch) is C(null) for the C(gpg-pubkey) entries."
author:
  - baremetal.kubernetes maintainers (@baremetal-kubernetes)
options:
  manager:
    description:
      - The package database to read.
      - V(auto) reads dpkg's when C(dpkg-query) is found on the host, else rpm's when C(rpm) is found, else fails.
    type: str
    choices: [auto, dpkg, rpm]
    default: auto
attributes:
  platform:
    platforms: posix
    support: full
    description: Runs on the host whose packages it reads; needs C(dpkg-query) or C(rpm) there.
  facts:
    support: full
    description: Sets C(ansible_facts.packages).
extends_documentation_fragment:
  - baremetal.kubernetes.read_only
notes:
  - The facts replace a C(packages) fact set earlier, as with M(ansible.builtin.package_facts).
seealso:
  - module: ansible.builtin.package_facts
"""

EXAMPLES = r"""
- name: Read the installed packages (one dpkg-query or rpm run)
  baremetal.kubernetes.installed_packages:

- name: Install the packages, unless they are all installed at the pinned versions
  ansible.builtin.apt:
    name: "{{ wanted }}"
    state: present
  vars:
    wanted: [conntrack, kubelet=1.36.2-1.1]
  when: wanted | baremetal.kubernetes.missing_packages(ansible_facts['packages'] | default(none)) | length > 0
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to ansible_facts.
  returned: always
  type: complex
  contains:
    packages:
      description:
        - Maps each installed package's name to a list of dicts, one per installed version or architecture, in the
          format of M(ansible.builtin.package_facts).
        - "dpkg: C(name), C(version) (with its epoch, as C(1:2.3-1)), C(arch) and C(source) (C(apt)). rpm:
          C(name), C(epoch) (an integer or C(null)), C(version), C(release), C(arch) and C(source) (C(rpm))."
      returned: always
      type: dict
      sample:
        kubelet:
          - name: kubelet
            version: 1.36.2-1.1
            arch: amd64
            source: apt
        libc6:i386:
          - name: libc6:i386
            version: 2.36-9+deb12u10
            arch: i386
            source: apt
        kernel:
          - name: kernel
            epoch: null
            version: 5.14.0
            release: 503.14.1.el9_5
            arch: x86_64
            source: rpm
          - name: kernel
            epoch: null
            version: 5.14.0
            release: 503.15.1.el9_5
            arch: x86_64
            source: rpm
"""

import os

from ansible.module_utils.basic import AnsibleModule

DPKG_FORMAT = "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n"
# %{EPOCH} (not %{EPOCHNUM}) keeps "no epoch" ("(none)") apart from an explicit epoch 0, as package_facts does.
RPM_FORMAT = "%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n"
RPM_NONE = "(none)"


class InstalledPackagesError(Exception):
    """A problem reading the package database (raised inside, reported once by main())."""


def _add(packages, entry):
    packages.setdefault(entry["name"], []).append(entry)


def parse_dpkg(output, native_arch=None):
    """``ansible_facts.packages`` from dpkg-query's DPKG_FORMAT lines: only the packages whose state is installed.

    db:Status-Abbrev is three characters: the selection (u, i, h, r, p), the state (n, c, H, U, F, W, t, i) and
    the error flag (space or R); only state ``i`` is installed. A package whose architecture is neither
    ``native_arch`` nor ``all`` gets the ``name:arch`` name python-apt (so package_facts) gives it.
    ``native_arch`` None: the architecture of the ``dpkg`` package in the output (dpkg's architecture is the
    native one), else no name gets an architecture.
    """
    rows = []
    for number, line in enumerate(output.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 4 or len(fields[0]) != 3:
            raise InstalledPackagesError("unexpected dpkg-query output line %d: %r" % (number, line))
        status, name, version, arch = fields
        if native_arch is None and name == "dpkg" and arch:
            native_arch = arch
        if status[1] == "i":
            rows.append((name, version, arch))
    packages = {}
    for name, version, arch in rows:
        if native_arch and arch not in (native_arch, "all"):
            name = "%s:%s" % (name, arch)
        _add(packages, {"name": name, "version": version, "arch": arch, "source": "apt"})
    return packages


def parse_rpm(output):
    """``ansible_facts.packages`` from ``rpm -qa`` RPM_FORMAT lines (rpm's database holds installed packages only)."""
    packages = {}
    for number, line in enumerate(output.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 5:
            raise InstalledPackagesError("unexpected rpm output line %d: %r" % (number, line))
        name, epoch, version, release, arch = fields
        if epoch == RPM_NONE:
            epoch = None
        else:
            try:
                epoch = int(epoch)
            except ValueError as exc:
                raise InstalledPackagesError("unexpected epoch %r for %s in rpm output" % (epoch, name)) from exc
        _add(packages, {"name": name, "epoch": epoch, "version": version, "release": release,
                        "arch": None if arch == RPM_NONE else arch, "source": "rpm"})
    return packages


def _run(module, argv):
    rc, out, err = module.run_command(argv, environ_update={"LC_ALL": "C"})
    if rc != 0:
        raise InstalledPackagesError("%s %s failed (rc=%d): %s"
                                     % (os.path.basename(argv[0]), argv[1], rc, (err or out).strip()))
    return out


def read_dpkg(module, dpkg_query):
    return parse_dpkg(_run(module, [dpkg_query, "-W", "-f", DPKG_FORMAT]))


def read_rpm(module, rpm):
    return parse_rpm(_run(module, [rpm, "-qa", "--qf", RPM_FORMAT]))


def installed_packages(module, manager):
    """``ansible_facts.packages`` of the host, read with ``manager`` (auto, dpkg or rpm)."""
    if manager in ("auto", "dpkg"):
        dpkg_query = module.get_bin_path("dpkg-query")
        if dpkg_query:
            return read_dpkg(module, dpkg_query)
        if manager == "dpkg":
            raise InstalledPackagesError("dpkg-query not found on this host (manager=dpkg)")
    rpm = module.get_bin_path("rpm")
    if rpm:
        return read_rpm(module, rpm)
    if manager == "rpm":
        raise InstalledPackagesError("rpm not found on this host (manager=rpm)")
    raise InstalledPackagesError("neither dpkg-query nor rpm found on this host; set manager or use "
                                 "ansible.builtin.package_facts")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            manager=dict(type="str", choices=["auto", "dpkg", "rpm"], default="auto"),
        ),
        supports_check_mode=True,
    )
    try:
        packages = installed_packages(module, module.params["manager"])
    except InstalledPackagesError as exc:
        module.fail_json(msg="installed_packages: %s" % exc)
    module.exit_json(changed=False, ansible_facts={"packages": packages})


if __name__ == "__main__":
    main()
