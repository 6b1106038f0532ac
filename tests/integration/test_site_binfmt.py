"""playbooks/site.yml gives build hosts the binfmt platforms of their build VMs' system
types (on top of qemu_binfmt_platforms), skips disabled VMs, keeps 'all', registers
exactly qemu_binfmt_platforms with site_build_vm_binfmt: false or on a VM host that is
no build host. The derivation is evaluated as written: site.yml's role variables for
the qemu_binfmt play and the role's vars/main.yml (the list it hands to the module), on
the controller (connection local)."""
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent

BUILD_HOSTS = {
    # host vars -> the list the qemu_binfmt module then gets
    "mixed": ({"qemu_binfmt_platforms": ["riscv64"],
               "build_vm_machines": [
                   {"name": "a", "image": "/x", "systems": ["x86_64-linux", "aarch64-linux"]},
                   {"name": "b", "image": "/y", "systems": ["armhf-linux"], "enabled": True},
                   {"name": "off", "image": "/z", "systems": ["s390x-linux"], "enabled": False},
                   {"name": "hurd", "image": "/h", "systems": ["i586-gnu"]}]},
              ["riscv64", "x86_64", "aarch64", "arm", "i386"]),
    "default_system": ({"build_vm_machines": [{"name": "a", "image": "/x"}]}, ["x86_64"]),
    "everything": ({"qemu_binfmt_platforms": "all",
                    "build_vm_machines": [{"name": "a", "image": "/x", "systems": ["aarch64-linux"]}]},
                   "all"),
    "knob_off": ({"site_build_vm_binfmt": False, "qemu_binfmt_platforms": ["ppc64le"],
                  "build_vm_machines": [{"name": "a", "image": "/x", "systems": ["aarch64-linux"]}]},
                 ["ppc64le"]),
    "no_vms": ({}, []),
}
# in vm_hosts only: its build_vm_machines (not applied there) add nothing
VM_HOSTS = {"vm_only": ({"qemu_binfmt_platforms": ["s390x"],
                         "build_vm_machines": [{"name": "a", "image": "/x", "systems": ["aarch64-linux"]}]},
                        ["s390x"])}
HOSTS = dict(BUILD_HOSTS, **VM_HOSTS)


def _site_binfmt_play():
    plays = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
    play = next(p for p in plays if any(r["role"] == "vmhost.virt.qemu_binfmt" for r in p["roles"]))
    assert play["hosts"] == "vm_hosts:build_hosts", play["hosts"]
    assert not any(r["role"] == "vmhost.virt.qemu_binfmt" for p in plays if p is not play for r in p["roles"]), \
        "qemu_binfmt is applied in one play only"
    return play, next(r for r in play["roles"] if r["role"] == "vmhost.virt.qemu_binfmt")


@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("site_binfmt")
    play, role = _site_binfmt_play()

    def hosts(table):
        return {name: dict(hv, ansible_connection="local", ansible_python_interpreter=sys.executable)
                for name, (hv, _want) in table.items()}
    inv = tmp / "inventory.yml"
    defaults = yaml.safe_load((ROOT / "roles" / "qemu_binfmt" / "defaults" / "main.yml").read_text())
    inv.write_text(yaml.safe_dump({"all": {
        "vars": {"qemu_binfmt_platforms": defaults["qemu_binfmt_platforms"]},
        "children": {"build_hosts": {"hosts": hosts(BUILD_HOSTS)}, "vm_hosts": {"hosts": hosts(VM_HOSTS)}}}}))
    book = tmp / "derive.yml"
    book.write_text(json.dumps([{
        "hosts": play["hosts"], "gather_facts": False,
        "tasks": [
            {"name": "Load the role's variables", "ansible.builtin.include_vars": {
                "file": str(ROOT / "roles" / "qemu_binfmt" / "vars" / "main.yml")}},
            {"name": "Show the platforms", "vars": role["vars"],
             "ansible.builtin.debug": {"msg": "platforms: {{ __qemu_binfmt_platforms | to_json }}"}},
        ]}]))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
               ANSIBLE_BECOME="false")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inv), str(book)],
                          capture_output=True, text=True, env=env, cwd=tmp, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = {}
    for host, msg in re.findall(r'ok: \[([^\]]+)\] => \{\s*"msg": ("platforms: .*")\s*\}', proc.stdout):
        found[host] = json.loads(json.loads(msg).split(": ", 1)[1])
    assert sorted(found) == sorted(HOSTS), proc.stdout[-3000:]
    return found


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_binfmt_platforms_of_build_hosts(derived, host):
    want = HOSTS[host][1]
    got = derived[host]
    if isinstance(want, list):
        assert len(got) == len(set(got)), got
        got, want = sorted(got), sorted(want)
    assert got == want


def test_unknown_system_is_refused_naming_the_vm(tmp_path):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(BIN / "ansible"), "localhost", "-c", "local", "-m", "ansible.builtin.debug",
                           "-a", "msg={{ [{'name': 'odd', 'systems': ['vax-linux']}]"
                                 " | vmhost.virt.build_vm_binfmt_platforms }}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "build VM odd: system type 'vax-linux'" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
