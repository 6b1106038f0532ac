"""Every role gathers the facts it needs itself, once per host, with `gather_facts: false`.

One play on this machine (connection local, check mode: nothing is written) runs each
role's fact step (the first task of its tasks/main.yml, as written there: the
vmhost.virt.host_facts module) in turn: the first gathers the OS and package manager
facts and finds whether systemd runs, the others find everything there and skip. Each
role's OS variables (read lazily from vars/<first found>.yml) then resolve to this
machine's file.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from ansible_local import ansible_env

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
# role -> one OS variable of its vars/<os>.yml
ROLES = {"libvirt": "__libvirt_packages_default", "virtlogd": "__virtlogd_packages_default",
         "qemu_binfmt": "__qemu_binfmt_packages_all", "guest_agent": "__guest_agent_binary",
         "build_vm": "__build_vm_base_packages", "build_vm_guest": None}


def _os_file(role, facts):
    for name in ("%s_%s.yml" % (facts["distribution"], facts["distribution_major_version"]),
                 "%s-%s.yml" % (facts["distribution"], facts["distribution_major_version"]),
                 "%s.yml" % facts["distribution"], "%s.yml" % facts["os_family"], "default.yml"):
        path = ROOT / "roles" / role / "vars" / name
        if path.is_file():
            return yaml.safe_load(path.read_text())
    raise AssertionError("no OS vars file for %s" % role)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("facts")
    result = tmp / "result.json"
    tasks = []
    for role in ROLES:
        first = yaml.safe_load((ROOT / "roles" / role / "tasks" / "main.yml").read_text())[0]
        first["name"] = "Facts of " + role
        if role == "build_vm_guest":
            first["vars"] = {"__build_vm_guest_live": True}
        tasks.append(first)
    # outside the role the lazily read OS variables need the role_path the role gives them
    for role, var in ROLES.items():
        if var:
            tasks.append({"name": "Load the variables of " + role, "ansible.builtin.include_vars": {
                "file": str(ROOT / "roles" / role / "vars" / "main.yml")}})
            tasks.append({"name": "Read the OS variables of " + role, "ansible.builtin.set_fact": {
                "os_" + role: "{{ %s }}" % var}, "vars": {"role_path": str(ROOT / "roles" / role)}})
    os_vars = ", ".join("'%s': os_%s" % (r, r) for r, v in ROLES.items() if v)
    record = ("{'facts': ansible_facts | dict2items | selectattr('key', 'in', ['distribution', "
              "'distribution_major_version', 'os_family', 'pkg_mgr', 'service_mgr', 'vmhost_systemd']) "
              "| items2dict, 'systemd': ansible_facts['vmhost_systemd'], 'os_vars': {%s}}" % os_vars)
    tasks.append({"name": "Save", "check_mode": False, "ansible.builtin.copy": {
        "content": "{{ %s | to_json }}" % record,
        "dest": str(result), "mode": "0600"}})
    play = [{"hosts": "localhost", "gather_facts": False,
             "vars": {"ansible_python_interpreter": sys.executable}, "tasks": tasks}]
    book = tmp / "play.yml"
    book.write_text(json.dumps(play))
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "--check", str(book)],
                          capture_output=True, text=True, env=ansible_env(), timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(result.read_text()), proc.stdout


def _statuses(out, task):
    """The result word under every banner of ``task``, in order."""
    lines, found = out.splitlines(), []
    for i, line in enumerate(lines):
        if line.startswith("TASK [") and (("[%s]" % task) in line or (": %s]" % task) in line):
            following = next((ln for ln in lines[i + 1:] if ln.strip()), "")
            found.append(following.split(":")[0])
    return found


def test_facts_gathered_once_without_gather_facts(run):
    saved, out = run
    assert {"distribution", "distribution_major_version", "os_family", "pkg_mgr"} <= set(saved["facts"])
    assert "service_mgr" not in saved["facts"], "the fact step gathered more than it needs"
    assert saved["systemd"] is os.path.isdir("/run/systemd/system")
    assert saved["facts"]["vmhost_systemd"] is saved["systemd"]
    statuses = [_statuses(out, "Facts of " + role) for role in ROLES]
    assert statuses == [["ok"]] + [["skipping"]] * (len(ROLES) - 1), (statuses, out[-4000:])


def test_os_vars_resolve_to_this_machines_file(run):
    saved, _out = run
    for role, var in ROLES.items():
        if var:
            assert saved["os_vars"][role] == _os_file(role, saved["facts"])[var], role
