#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: config_files
short_description: Several configuration files and directories in one module run
version_added: 0.2.0
description:
  - Makes a list of files, directories and absent paths on the host match what the task says - content, owner,
    group and mode - in one module run, and reports for each of them whether it changed.
  - Why it exists - M(ansible.builtin.template) and M(ansible.builtin.copy) need two module runs for a file that
    is already right (a C(stat) for the checksum, then M(ansible.builtin.file) for owner and mode), and
    M(ansible.builtin.file) one per directory; a role that manages six files then pays about twelve module runs on
    every re-run. Render the content on the controller with
    P(ansible.builtin.template#lookup) and hand all of a role's files to this module.
  - Nothing is half-written - a file's new content goes to a temporary file in the same directory, gets its owner
    and mode, is checked with O(files[].validate), and only then replaces the old file with one rename.
  - All or nothing for content - every changed file is written and validated before the first one is renamed into
    place, and absent paths are removed after that; when a validation fails no file is replaced or removed
    (directories created for them stay, and so do owner and mode fixes of unchanged paths).
  - Files that need a service restart when they change belong in a task of their own, which notifies the handler,
    or are picked out of RV(changed_files).
author:
  - baremetal.kubernetes maintainers (@baremetal-kubernetes)
options:
  files:
    description:
      - The paths, in order. A directory listed before a file is there when the file is written.
    type: list
    elements: dict
    required: true
    suboptions:
      dest:
        description: Absolute path on the host.
        type: path
        required: true
      state:
        description:
          - V(file) - a regular file with O(files[].content).
          - V(directory) - a directory; missing parents are created with the same owner, group and mode.
          - V(absent) - no file or symlink at O(files[].dest). A directory there is an error, never removed.
        type: str
        choices: [file, directory, absent]
        default: file
      content:
        description:
          - The whole content of the file (V(state=file) only), for example
            C("{{ lookup('ansible.builtin.template', 'app.conf.j2') }}").
          - Written as UTF-8, byte for byte; a missing final newline stays missing.
        type: str
      mode:
        description:
          - The permissions, as for M(ansible.builtin.file). Required for V(file) and V(directory), so that nothing
            depends on the umask; quote octal modes (V("0644")).
        type: raw
      owner:
        description: The owning user. Left as it is when not given (root for new files written as root).
        type: str
      group:
        description: The owning group. Left as it is when not given.
        type: str
      validate:
        description:
          - A command that checks the new content before it replaces the file; C(%s) is the temporary file's path.
            The file is not replaced when the command exits non-zero.
          - Runs only when the content changes, and not in check mode.
          - Run without a shell, like the C(validate) of M(ansible.builtin.copy).
        type: str
attributes:
  check_mode:
    support: full
    description: Can run in check mode and return changed status prediction without modifying target.
    details: Reports what would change; writes nothing and runs no validation.
  diff_mode:
    support: full
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    details: One diff per changed path; content of files that are not UTF-8 text or larger than 256 KiB is not shown.
  platform:
    platforms: posix
    support: full
    description: Runs on the host whose files it manages.
notes:
  - Put a task with secrets in any of its files under C(no_log), as it would be for M(ansible.builtin.copy); the
    module cannot hide one file's content and diff only.
  - SELinux contexts are not managed; a replaced file gets the default context of its directory, as with a rename
    by M(ansible.builtin.copy).
seealso:
  - module: ansible.builtin.template
  - module: ansible.builtin.copy
  - module: ansible.builtin.file
"""

EXAMPLES = r"""
- name: Write the sysctl and module-loading drop-ins and the crictl configuration
  baremetal.kubernetes.config_files:
    files:
      - dest: /etc/sysctl.d/90-kubernetes.conf
        content: "{{ lookup('ansible.builtin.template', 'sysctl.conf.j2') }}"
        owner: root
        group: root
        mode: "0644"
      - dest: /etc/containerd/certs.d
        state: directory
        owner: root
        group: root
        mode: "0755"
      - dest: /etc/apt/sources.list.d/kubernetes.list
        state: absent
  register: node_files

- name: Apply the sysctls when the drop-in changed
  ansible.builtin.command:
    argv: [sysctl, --system]
  changed_when: true
  when: "'/etc/sysctl.d/90-kubernetes.conf' in node_files.changed_files"

- name: Write the HAProxy configuration, checked by HAProxy first
  baremetal.kubernetes.config_files:
    files:
      - dest: /etc/haproxy/haproxy.cfg
        content: "{{ lookup('ansible.builtin.template', 'haproxy.cfg.j2') }}"
        owner: root
        group: root
        mode: "0644"
        validate: haproxy -c -f %s
  notify: Reload HAProxy
"""

RETURN = r"""
changed_files:
  description: The O(files[].dest) of every path that changed (or would change in check mode), in the given order.
  returned: always
  type: list
  elements: str
  sample: [/etc/sysctl.d/90-kubernetes.conf]
files:
  description: One entry per O(files) item, in the given order.
  returned: always
  type: list
  elements: dict
  contains:
    dest:
      description: The path.
      type: str
      returned: always
    state:
      description: The requested state.
      type: str
      returned: always
    changed:
      description: Whether anything about this path changed (or would change).
      type: bool
      returned: always
    content_changed:
      description: Whether the content was (or would be) written, or the path created or removed.
      type: bool
      returned: always
  sample:
    - {dest: /etc/containerd/certs.d, state: directory, changed: false, content_changed: false}
"""

import os
import shlex
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text

# Larger files, and files that are not UTF-8, are not shown in a diff.
DIFF_MAX_BYTES = 256 * 1024


class ConfigFilesError(Exception):
    """A path that cannot be made as asked; the message names it and says why."""


def _file_args(module, item, path):
    return module.load_file_common_arguments(
        {"path": path, "mode": item.get("mode"), "owner": item.get("owner"), "group": item.get("group")}
    )


def _check_item(index, item):
    dest = item["dest"]
    where = "files[%d] (%s)" % (index, dest)
    if not os.path.isabs(dest):
        raise ConfigFilesError("%s: dest must be an absolute path" % where)
    state = item["state"]
    if state == "file" and item.get("content") is None:
        raise ConfigFilesError("%s: state=file needs content" % where)
    if state != "file":
        for option in ("content", "validate"):
            if item.get(option) is not None:
                raise ConfigFilesError("%s: %s applies only to state=file" % (where, option))
    if state != "absent" and item.get("mode") is None:
        raise ConfigFilesError('%s: give mode (for example mode: "0644"); it must not depend on the umask' % where)
    if state == "absent" and any(item.get(o) is not None for o in ("mode", "owner", "group")):
        raise ConfigFilesError("%s: mode, owner and group do not apply to state=absent" % where)
    validate = item.get("validate")
    if validate is not None and "%s" not in validate:
        raise ConfigFilesError("%s: validate must contain %%s (the path of the file to check): %r" % (where, validate))
    return where


def _diff_text(b_data):
    if b_data is None:
        return ""
    if len(b_data) > DIFF_MAX_BYTES:
        return "(%d bytes, not shown)\n" % len(b_data)
    try:
        return b_data.decode("utf-8")
    except UnicodeDecodeError:
        return "(%d bytes, not UTF-8, not shown)\n" % len(b_data)


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


class Plan:
    """What one run does, path by path; files are staged before anything is renamed."""

    def __init__(self, module):
        self.module = module
        self.results = []
        self.diffs = []
        self.staged = []  # (temporary path, dest, where)
        self.removals = []  # (dest, where)

    def _attributes(self, item, path, changed, diff):
        return self.module.set_fs_attributes_if_different(_file_args(self.module, item, path), changed, diff)

    def directory(self, item, where):
        dest = item["dest"]
        if os.path.lexists(dest) and not os.path.isdir(dest):
            raise ConfigFilesError("%s: exists and is not a directory; remove or move it first" % where)
        created = []
        path = dest
        while not os.path.lexists(path):
            created.insert(0, path)
            path = os.path.dirname(path)
        if not os.path.isdir(path):
            raise ConfigFilesError("%s: %s exists and is not a directory" % (where, path))
        diff = {"before": {"path": dest}, "after": {"path": dest}}
        if created:
            diff["before"]["state"] = "absent"
            diff["after"]["state"] = "directory"
        if self.module.check_mode and created:
            return True, bool(created), diff
        for path in created:
            try:
                os.mkdir(path)
            except OSError as exc:
                raise ConfigFilesError("%s: cannot create %s: %s" % (where, path, to_native(exc))) from exc
            self._attributes(item, path, True, None)
        changed = self._attributes(item, dest, bool(created), diff)
        return changed, bool(created), diff

    def absent(self, item, where):
        dest = item["dest"]
        diff = {"before": {"path": dest}, "after": {"path": dest, "state": "absent"}}
        if os.path.isdir(dest) and not os.path.islink(dest):
            raise ConfigFilesError("%s: is a directory; this module removes files and symlinks only" % where)
        if not os.path.lexists(dest):
            diff["before"]["state"] = "absent"
            return False, False, diff
        diff["before"]["state"] = "file"
        if not self.module.check_mode:
            self.removals.append((dest, where))
        return True, True, diff

    def file(self, item, where):
        dest = item["dest"]
        b_content = to_bytes(item["content"], errors="surrogate_or_strict")
        b_before = None
        if os.path.lexists(dest):
            if os.path.islink(dest) or not os.path.isfile(dest):
                raise ConfigFilesError("%s: exists and is not a regular file (a directory or symlink?); "
                                       "remove or move it first" % where)
            try:
                b_before = _read(dest)
            except OSError as exc:
                raise ConfigFilesError("%s: cannot read it: %s" % (where, to_native(exc))) from exc
        if b_before == b_content:
            # Owner and mode only: the diff shows them, as M(ansible.builtin.file) does.
            diff = {"before": {"path": dest}, "after": {"path": dest}}
            changed = self._attributes(item, dest, False, diff)
            return changed, False, diff
        diff = {"before_header": dest, "after_header": dest, "before": _diff_text(b_before),
                "after": _diff_text(b_content)}
        parent = os.path.dirname(dest)
        if not os.path.isdir(parent):
            if self.module.check_mode:
                # An earlier item may create it; the real run checks again.
                return True, True, diff
            raise ConfigFilesError("%s: the directory %s does not exist; list it before the file with "
                                   "state: directory" % (where, parent))
        if self.module.check_mode:
            return True, True, diff
        self.stage(item, where, b_content)
        return True, True, diff

    def stage(self, item, where, b_content):
        dest = item["dest"]
        try:
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".%s." % os.path.basename(dest))
        except OSError as exc:
            raise ConfigFilesError("%s: cannot create a temporary file next to it: %s"
                                   % (where, to_native(exc))) from exc
        self.staged.append((tmp, dest, where))
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(b_content)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise ConfigFilesError("%s: cannot write it: %s" % (where, to_native(exc))) from exc
        # Owner and mode before the rename: the file never exists with the wrong ones.
        self._attributes(item, tmp, True, None)
        validate = item.get("validate")
        if validate:
            rc, out, err = self.module.run_command(shlex.split(validate.replace("%s", shlex.quote(tmp))))
            if rc != 0:
                raise ConfigFilesError("%s: the new content failed validation (%s exited %d), nothing was "
                                       "replaced: %s" % (where, validate, rc, to_text(err or out).strip()))

    def discard(self):
        for tmp, _dest, _where in self.staged:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        self.staged = []

    def commit(self):
        for tmp, dest, where in self.staged:
            try:
                os.rename(tmp, dest)
            except OSError as exc:
                raise ConfigFilesError("%s: cannot rename the new content into place: %s"
                                       % (where, to_native(exc))) from exc
        self.staged = []
        for dest, where in self.removals:
            try:
                os.unlink(dest)
            except OSError as exc:
                raise ConfigFilesError("%s: cannot remove it: %s" % (where, to_native(exc))) from exc


def config_files(module, items):
    plan = Plan(module)
    try:
        for index, item in enumerate(items):
            where = _check_item(index, item)
            changed, content_changed, diff = getattr(plan, item["state"])(item, where)
            plan.results.append({"dest": item["dest"], "state": item["state"], "changed": bool(changed),
                                 "content_changed": bool(content_changed)})
            if changed:
                plan.diffs.append(diff)
        plan.commit()
    finally:
        plan.discard()
    return plan.results, plan.diffs


def main():
    module = AnsibleModule(
        argument_spec=dict(
            files=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    dest=dict(type="path", required=True),
                    state=dict(type="str", choices=["file", "directory", "absent"], default="file"),
                    content=dict(type="str"),
                    mode=dict(type="raw"),
                    owner=dict(type="str"),
                    group=dict(type="str"),
                    validate=dict(type="str"),
                ),
            ),
        ),
        supports_check_mode=True,
    )
    try:
        results, diffs = config_files(module, module.params["files"])
    except ConfigFilesError as exc:
        module.fail_json(msg="config_files: %s" % exc)
    changed_files = [r["dest"] for r in results if r["changed"]]
    extra = {"diff": diffs} if module._diff else {}
    module.exit_json(changed=bool(changed_files), changed_files=changed_files, files=results, **extra)


if __name__ == "__main__":
    main()
