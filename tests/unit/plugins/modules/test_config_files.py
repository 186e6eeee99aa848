# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for config_files: several files, directories and absent paths in one module run."""

from __future__ import annotations

import grp
import os
import pwd
import stat

import pytest

from ansible_collections.baremetal.kubernetes.plugins.modules import config_files as mod
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.utils import run_module

OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def run(items, check_mode=False, diff=False):
    args = {"files": items}
    if diff:
        args["_ansible_diff"] = True
    return run_module(mod.main, args, check_mode=check_mode)


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def leftovers(directory):
    """Temporary files the module left behind (it names them .<basename>.<random>)."""
    return sorted(name for name in os.listdir(directory) if name.startswith("."))


def a_file(path, content, mode="0644", **extra):
    return dict({"dest": str(path), "content": content, "mode": mode, "owner": OWNER, "group": GROUP}, **extra)


def test_writes_new_files_then_reports_nothing_on_the_second_run(tmp_path):
    items = [
        {"dest": str(tmp_path / "conf.d"), "state": "directory", "mode": "0750"},
        a_file(tmp_path / "conf.d" / "a.conf", "a=1\n"),
        a_file(tmp_path / "secret", "token\n", mode="0600"),
    ]
    outcome, result = run(items)
    assert outcome == "exit"
    assert result["changed"] is True
    assert result["changed_files"] == [item["dest"] for item in items]
    assert [f["content_changed"] for f in result["files"]] == [True, True, True]
    assert (tmp_path / "conf.d" / "a.conf").read_text() == "a=1\n"
    assert mode_of(tmp_path / "conf.d") == 0o750
    assert mode_of(tmp_path / "conf.d" / "a.conf") == 0o644
    assert mode_of(tmp_path / "secret") == 0o600
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "conf.d") == []

    outcome, result = run(items)
    assert (outcome, result["changed"], result["changed_files"]) == ("exit", False, [])
    assert [f["changed"] for f in result["files"]] == [False, False, False]


def test_content_is_written_byte_for_byte(tmp_path):
    content = "no final newline \u00e9"
    run([a_file(tmp_path / "f", content)])
    assert (tmp_path / "f").read_bytes() == content.encode("utf-8")


def test_a_mode_change_alone_is_a_change_without_new_content(tmp_path):
    (tmp_path / "f").write_text("same\n")
    os.chmod(tmp_path / "f", 0o666)
    outcome, result = run([a_file(tmp_path / "f", "same\n")])
    assert outcome == "exit"
    assert result["changed_files"] == [str(tmp_path / "f")]
    assert result["files"][0] == {"dest": str(tmp_path / "f"), "state": "file", "changed": True,
                                  "content_changed": False}
    assert mode_of(tmp_path / "f") == 0o644


def test_check_mode_reports_without_writing(tmp_path):
    (tmp_path / "old").write_text("old\n")
    (tmp_path / "gone").write_text("x\n")
    items = [
        a_file(tmp_path / "old", "new\n"),
        {"dest": str(tmp_path / "new.d"), "state": "directory", "mode": "0755"},
        # Its directory comes from the item above, which check mode does not create.
        a_file(tmp_path / "new.d" / "f", "f\n"),
        {"dest": str(tmp_path / "gone"), "state": "absent"},
    ]
    outcome, result = run(items, check_mode=True)
    assert outcome == "exit"
    assert result["changed_files"] == [item["dest"] for item in items]
    assert (tmp_path / "old").read_text() == "old\n"
    assert not (tmp_path / "new.d").exists()
    assert (tmp_path / "gone").exists()


def test_diff_shows_old_and_new_content(tmp_path):
    (tmp_path / "f").write_text("a=1\n")
    outcome, result = run([a_file(tmp_path / "f", "a=2\n"), a_file(tmp_path / "same", "s\n")], diff=True)
    assert outcome == "exit"
    assert result["diff"][0] == {"before_header": str(tmp_path / "f"), "after_header": str(tmp_path / "f"),
                                 "before": "a=1\n", "after": "a=2\n"}
    # The new file is a change too; an unchanged path gives no diff.
    assert len(result["diff"]) == 2
    outcome, result = run([a_file(tmp_path / "f", "a=2\n")], diff=True)
    assert result["diff"] == []


def test_binary_content_is_not_shown_in_the_diff(tmp_path):
    (tmp_path / "f").write_bytes(b"\xff\xfe")
    _outcome, result = run([a_file(tmp_path / "f", "text\n")], diff=True)
    assert result["diff"][0]["before"] == "(2 bytes, not UTF-8, not shown)\n"


def test_validate_gets_the_new_content_before_it_replaces_the_file(tmp_path):
    seen = tmp_path / "seen"
    item = a_file(tmp_path / "f", "ok\n", validate="/bin/cp %s " + str(seen))
    outcome, result = run([item])
    assert outcome == "exit" and result["changed"] is True
    assert seen.read_text() == "ok\n"
    assert (tmp_path / "f").read_text() == "ok\n"


def test_a_failed_validation_replaces_nothing(tmp_path):
    (tmp_path / "first").write_text("old first\n")
    (tmp_path / "second").write_text("old second\n")
    (tmp_path / "gone").write_text("stays\n")
    items = [
        a_file(tmp_path / "first", "new first\n"),
        {"dest": str(tmp_path / "gone"), "state": "absent"},
        a_file(tmp_path / "second", "broken\n", validate="/bin/grep -q valid %s"),
    ]
    outcome, result = run(items)
    assert outcome == "fail"
    assert "files[2] (%s)" % (tmp_path / "second") in result["msg"]
    assert "failed validation (/bin/grep -q valid %s exited 1), nothing was replaced" in result["msg"]
    assert (tmp_path / "first").read_text() == "old first\n"
    assert (tmp_path / "second").read_text() == "old second\n"
    assert (tmp_path / "gone").exists()
    assert leftovers(tmp_path) == []


def test_validation_does_not_run_when_the_content_is_unchanged(tmp_path):
    (tmp_path / "f").write_text("same\n")
    os.chmod(tmp_path / "f", 0o644)
    outcome, result = run([a_file(tmp_path / "f", "same\n", validate="/bin/false %s")])
    assert (outcome, result["changed"]) == ("exit", False)


def test_directories_are_created_with_their_parents(tmp_path):
    dest = tmp_path / "a" / "b" / "c"
    outcome, result = run([{"dest": str(dest), "state": "directory", "mode": "0700", "owner": OWNER}])
    assert outcome == "exit" and result["changed"] is True
    for path in (tmp_path / "a", tmp_path / "a" / "b", dest):
        assert path.is_dir() and mode_of(path) == 0o700
    outcome, result = run([{"dest": str(dest), "state": "directory", "mode": "0700"}])
    assert result["changed"] is False


def test_absent_removes_a_file_and_accepts_a_missing_one(tmp_path):
    (tmp_path / "f").write_text("x\n")
    outcome, result = run([{"dest": str(tmp_path / "f"), "state": "absent"}])
    assert (outcome, result["changed"]) == ("exit", True)
    assert not (tmp_path / "f").exists()
    outcome, result = run([{"dest": str(tmp_path / "f"), "state": "absent"}])
    assert (outcome, result["changed"]) == ("exit", False)


@pytest.mark.parametrize(
    "item, message",
    [
        ({"dest": "relative/path", "content": "x", "mode": "0644"}, "dest must be an absolute path"),
        ({"dest": "/etc/x", "mode": "0644"}, "state=file needs content"),
        ({"dest": "/etc/x", "content": "x"}, 'give mode (for example mode: "0644")'),
        ({"dest": "/etc/x", "content": "x", "mode": "0644", "validate": "check"}, "validate must contain %s"),
        ({"dest": "/etc/x", "state": "directory", "mode": "0755", "content": "x"},
         "content applies only to state=file"),
        ({"dest": "/etc/x", "state": "absent", "mode": "0644"}, "mode, owner and group do not apply to state=absent"),
    ],
)
def test_bad_input_is_refused_before_anything_changes(tmp_path, item, message):
    first = a_file(tmp_path / "first", "first\n")
    outcome, result = run([first, item])
    assert outcome == "fail"
    assert "config_files: files[1]" in result["msg"] and message in result["msg"]
    assert not (tmp_path / "first").exists()


def test_a_directory_in_the_way_of_a_file_is_an_error(tmp_path):
    (tmp_path / "d").mkdir()
    outcome, result = run([a_file(tmp_path / "d", "x\n")])
    assert outcome == "fail" and "is not a regular file" in result["msg"]


def test_a_symlink_is_not_followed(tmp_path):
    (tmp_path / "target").write_text("t\n")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    outcome, result = run([a_file(tmp_path / "link", "x\n")])
    assert outcome == "fail" and "is not a regular file" in result["msg"]
    assert (tmp_path / "target").read_text() == "t\n"


def test_a_file_in_the_way_of_a_directory_is_an_error(tmp_path):
    (tmp_path / "f").write_text("x\n")
    outcome, result = run([{"dest": str(tmp_path / "f"), "state": "directory", "mode": "0755"}])
    assert outcome == "fail" and "exists and is not a directory" in result["msg"]


def test_absent_never_removes_a_directory(tmp_path):
    (tmp_path / "d").mkdir()
    outcome, result = run([{"dest": str(tmp_path / "d"), "state": "absent"}])
    assert outcome == "fail" and "is a directory" in result["msg"]
    assert (tmp_path / "d").is_dir()


def test_a_missing_parent_directory_names_the_fix(tmp_path):
    outcome, result = run([a_file(tmp_path / "missing" / "f", "x\n")])
    assert outcome == "fail"
    assert "the directory %s does not exist; list it before the file with state: directory" % (
        tmp_path / "missing") in result["msg"]


def test_the_diff_of_a_mode_change_shows_the_modes(tmp_path):
    (tmp_path / "f").write_text("same\n")
    os.chmod(tmp_path / "f", 0o600)
    _outcome, result = run([a_file(tmp_path / "f", "same\n")], diff=True)
    assert result["diff"] == [{"before": {"path": str(tmp_path / "f"), "mode": "0600"},
                               "after": {"path": str(tmp_path / "f"), "mode": "0644"}}]
