"""Static checks of the roles' shared fact step, their OS variables and their handlers.

* every role runs the same vmhost.virt.host_facts task first, only when something it
  provides is missing (so the second role on a host skips it);
* roles read no fact beyond what that module gathers (they work with gather_facts: false);
* every handler is guarded by the role's "systemd runs" variable, which is false unless
  the fact step found a running systemd;
* OS variables come from vars/ by first_found, with no include_vars task per run.
"""
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").is_file())
# what vmhost.virt.host_facts gathers, plus what a role gathers itself (none today)
FACTS = {"distribution", "distribution_major_version", "distribution_version", "distribution_release",
         "os_family", "pkg_mgr", "vmhost_systemd"}
OWN_FACTS = {}
FACT_REF = re.compile(r"ansible_facts(?:\[['\"](\w+)['\"]\]|\.(\w+))|ansible_(distribution\w*|os_family|pkg_mgr|service_mgr)")


def _yaml(path):
    return yaml.safe_load(path.read_text()) or []


def _role_files(role, ext=(".yml", ".j2")):
    return [p for p in (ROOT / "roles" / role).rglob("*") if p.is_file() and p.suffix in ext and p.name != "README.md"]


def _first_task(role):
    return _yaml(ROOT / "roles" / role / "tasks" / "main.yml")[0]


def test_every_role_has_the_same_fact_step():
    # build_vm_guest adds its own conditions (a root tree being built has no facts to gather)
    firsts = {role: _first_task(role) for role in ROLES if role != "build_vm_guest"}
    assert len(set(yaml.safe_dump(t) for t in firsts.values())) == 1, firsts
    task = next(iter(firsts.values()))
    assert "vmhost.virt.host_facts" in task, task
    for name in ("distribution", "distribution_major_version", "os_family", "pkg_mgr", "vmhost_systemd"):
        assert "'%s'" % name in task["when"], (name, task["when"])
    assert not list((ROOT / "roles").glob("*/tasks/facts.yml")), "the fact step is one module task now"


@pytest.mark.parametrize("role", ROLES)
def test_fact_step_runs_first_and_only_when_missing(role):
    first = _first_task(role)
    assert "vmhost.virt.host_facts" in first, first
    when = first["when"] if isinstance(first["when"], list) else [first["when"]]
    assert any("vmhost_systemd" in w for w in when), when


@pytest.mark.parametrize("role", ROLES)
def test_roles_read_only_the_facts_they_gather(role):
    allowed = FACTS | OWN_FACTS.get(role, set())
    for path in _role_files(role):
        for groups in FACT_REF.findall(path.read_text()):
            name = next(g for g in groups if g)
            assert name in allowed, "%s reads fact %s, which vmhost.virt.host_facts does not gather" % (path, name)


@pytest.mark.parametrize("role", ROLES)
def test_handlers_are_guarded_for_hosts_without_systemd(role):
    path = ROOT / "roles" / role / "handlers" / "main.yml"
    if not path.is_file():
        pytest.skip("%s has no handlers" % role)
    private = _yaml(ROOT / "roles" / role / "vars" / "main.yml")
    guard = "__%s_init_running" % role
    if guard in private:
        assert private[guard] == ("{{ vmhost_systemd_running | default(ansible_facts['vmhost_systemd']"
                                  " | default(false)) | bool }}"), private[guard]
    for handler in _yaml(path):
        when = handler.get("when")
        conditions = when if isinstance(when, list) else [when or ""]
        assert any(guard in c or "vmhost_systemd_running" in c for c in conditions), (
            "handler %r of %s runs without checking that systemd runs" % (handler["name"], role))


@pytest.mark.parametrize("role", ROLES)
def test_os_vars_by_first_found_without_include_vars(role):
    os_files = [p.name for p in (ROOT / "roles" / role / "vars").glob("*.yml") if p.name != "main.yml"]
    text = "\n".join(p.read_text() for p in (ROOT / "roles" / role / "tasks").glob("*.yml"))
    assert "include_vars" not in text, "%s loads variables with a task on every run" % role
    if os_files:
        main = (ROOT / "roles" / role / "vars" / "main.yml").read_text()
        assert "ansible.builtin.first_found" in main and "default.yml" in main, role
        assert "default.yml" in os_files, role
