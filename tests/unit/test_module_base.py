"""The shared module base (plugins/module_utils/_module.py): check mode, diff, failures."""
import os

import pytest

from ansible_collections.vmhost.virt.plugins.module_utils._module import Backend, Change, ModuleFailure


class Files(Backend):
    """Create each file of params["files"] that does not exist yet; fail on "bad"."""

    def plan(self):
        directory = self.params["dir"]
        for name in self.params["files"]:
            if name == "bad":
                raise ModuleFailure("bad name", name=name)
            path = os.path.join(directory, name)
            if os.path.exists(path):
                continue
            yield Change("created %s" % path, "%s: absent" % name, "%s: present" % name,
                         lambda path=path: open(path, "w").close())
        # a staged plan sees what its earlier changes did (not in check mode)
        self.result["seen"] = sorted(os.listdir(directory))


def test_apply_records_and_writes(tmp_path):
    res = Files({"dir": str(tmp_path), "files": ["a", "b"]}).execute(diff=True)
    assert res["changed"] is True
    assert res["actions"] == ["created %s/a" % tmp_path, "created %s/b" % tmp_path]
    assert res["seen"] == ["a", "b"]
    assert res["diff"] == {"before": "a: absent\nb: absent\n", "after": "a: present\nb: present\n"}
    again = Files({"dir": str(tmp_path), "files": ["a", "b"]}).execute()
    assert again["changed"] is False and again["actions"] == [] and "diff" not in again


def test_check_mode_writes_nothing_but_predicts(tmp_path):
    res = Files({"dir": str(tmp_path), "files": ["a"]}, check_mode=True).execute(diff=True)
    assert res["changed"] is True and res["seen"] == []
    assert os.listdir(str(tmp_path)) == []


def test_failure_reports_what_was_applied(tmp_path):
    with pytest.raises(ModuleFailure) as err:
        Files({"dir": str(tmp_path), "files": ["a", "bad"]}).execute()
    assert err.value.msg == "bad name"
    assert err.value.result == {"changed": True, "actions": ["created %s/a" % tmp_path], "name": "bad"}
    with pytest.raises(ModuleFailure) as err:
        Files({"dir": str(tmp_path), "files": ["bad"]}).execute()
    assert err.value.result["changed"] is False


def test_os_error_of_a_step_becomes_a_failure(tmp_path):
    with pytest.raises(ModuleFailure) as err:
        Files({"dir": str(tmp_path / "missing"), "files": ["a"]}).execute()
    assert err.value.msg.startswith("created %s/missing/a failed: " % tmp_path)
    assert "No such file" in err.value.msg and err.value.result["changed"] is False


def test_report_actions_off():
    class Quiet(Backend):
        report_actions = False

        def plan(self):
            self.result["x"] = 1
            return []
    assert Quiet({}).execute() == {"x": 1, "changed": False}


def test_a_backend_without_its_hook_is_refused_at_construction():
    class NoPlan(Backend):
        pass
    with pytest.raises(TypeError, match="plan"):
        NoPlan({})  # pylint: disable=abstract-class-instantiated
