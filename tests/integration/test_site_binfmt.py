"""playbooks/site.yml gives build hosts the binfmt platforms of their build VMs' system
types (on top of qemu_binfmt_platforms), skips disabled VMs, keeps 'all', and registers
exactly qemu_binfmt_platforms with site_build_vm_binfmt: false. Runs only the tagged
derivation tasks of the real playbook, on the controller (connection local)."""
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

HOSTS = {
    # host vars -> the list the qemu_binfmt role then gets
    "mixed": ({"qemu_binfmt_platforms": ["riscv64"],
               "build_vm_machines": [
                   {"name": "a", "image": "/x", "systems": ["x86_64-linux", "aarch64-linux"]},
                   {"name": "b", "image": "/y", "systems": ["armhf-linux"], "enabled": True},
                   {"name": "off", "image": "/z", "systems": ["s390x-linux"], "enabled": False},
                   {"name": "hurd", "image": "/h", "systems": "i586-gnu"}]},
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


@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("site_binfmt")
    hosts = {name: dict(hv, ansible_connection="local", ansible_python_interpreter=sys.executable)
             for name, (hv, _want) in HOSTS.items()}
    inv = tmp / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {"build_hosts": {"hosts": hosts}}}}))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
               ANSIBLE_BECOME="false")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inv), "--tags", "site_binfmt",
                           str(ROOT / "playbooks" / "site.yml")],
                          capture_output=True, text=True, env=env, cwd=tmp, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = {}
    for host, msg in re.findall(r'ok: \[([^\]]+)\] => \{\s*"msg": ("qemu_binfmt_platforms: .*")\s*\}',
                                proc.stdout):
        found[host] = json.loads(json.loads(msg).split(": ", 1)[1])
    assert sorted(found) == sorted(HOSTS), proc.stdout[-3000:]
    return found


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_build_host_binfmt_platforms(derived, host):
    want = HOSTS[host][1]
    got = derived[host]
    if isinstance(want, list):
        assert len(got) == len(set(got)), got
        got, want = sorted(got), sorted(want)
    assert got == want
