"""The README's two lines as a user runs them: the collection tarball (`make build`) is
installed into an empty collections path and `ansible-playbook vmhost.virt.site` runs by
its collection name, nothing of the checkout importable, against a real host (a harness
systemd-nspawn container in vm_hosts and build_hosts): every play runs, nothing fails,
libvirtd answers afterwards, and a second run changes nothing."""
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from tests.harness import api

pytestmark = [pytest.mark.root, pytest.mark.slow]

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
NAME = "it-site-coll-%d" % os.getpid()
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def _run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False, **kw)
    assert proc.returncode == 0, "%s failed:\n%s\n%s" % (" ".join(map(str, cmd)), proc.stdout[-4000:],
                                                         proc.stderr[-4000:])
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(env, workdir): the tarball installed alone into a fresh collections path."""
    tmp = tmp_path_factory.mktemp("site_collection")
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    _run([BIN / "ansible-galaxy", "collection", "build", "--output-path", tmp / "dist", ROOT])
    tarball = tmp / "dist" / ("%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"]))
    dest = tmp / "collections"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANSIBLE_", "MOLECULE_")) and k != "PYTHONPATH"}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(dest), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="false", ANSIBLE_PIPELINING="true",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    _run([BIN / "ansible-galaxy", "collection", "install", "-p", dest, tarball], env=env, cwd=tmp)
    site = dest / "ansible_collections" / "vmhost" / "virt" / "playbooks" / "site.yml"
    assert site.is_file()
    return env, tmp


@pytest.fixture(scope="module")
def target():
    if os.geteuid() != 0:
        pytest.skip("the nspawn kind needs root")
    info = api.up(name=NAME, kind="nspawn", recipe="build-host", timeout=180)
    try:
        yield info
    finally:
        api.down(NAME)


def _inventory(tmp, info):
    host = {"ansible_host": info["address"], "ansible_port": info["port"], "ansible_user": info["user"],
            "ansible_ssh_private_key_file": info["identity_file"],
            "ansible_python_interpreter": "/usr/bin/python3"}
    inv = {"all": {"hosts": {NAME: host},
                   "children": {"vm_hosts": {"hosts": {NAME: None}},
                                "build_hosts": {"hosts": {NAME: None}}}}}
    path = tmp / "inventory.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


def test_site_runs_by_collection_name_from_the_tarball(installed, target):
    env, tmp = installed
    # The playbook resolves from the installed copy only: the checkout is not on any path.
    listing = _run([BIN / "ansible-playbook", "-i", "localhost,", "--list-tasks", "vmhost.virt.site"],
                   env=env, cwd=tmp)
    for play in ("Configure VM hosts", "Configure build hosts", "Configure guests"):
        assert "play #" in listing and play in listing, listing
    for role in ("libvirt", "virtlogd", "qemu_binfmt", "build_vm", "guest_agent"):
        assert "vmhost.virt.%s :" % role in listing, role

    inv = _inventory(tmp, target)
    first = _run([BIN / "ansible-playbook", "-i", inv, "vmhost.virt.site"], env=env, cwd=tmp)
    recap = {m[0]: [int(x) for x in m[1:]] for m in RECAP.findall(first)}
    assert recap[NAME][0] > 20 and recap[NAME][1] > 0 and recap[NAME][2:] == [0, 0], recap
    assert "PLAY [Configure VM hosts]" in first and "PLAY [Configure build hosts]" in first
    # vmhost.virt resolves to the installed copy, and only to it
    found = _run([BIN / "ansible-galaxy", "collection", "list", "vmhost.virt", "--format", "yaml"],
                 env=env, cwd=tmp)
    assert list(yaml.safe_load(found)) == [str(tmp / "collections" / "ansible_collections")], found

    out = api.ssh(target, "virsh -c qemu:///system version && systemctl is-active virtlogd.socket")
    assert "Running hypervisor" in out.stdout and "active" in out.stdout

    second = _run([BIN / "ansible-playbook", "-i", inv, "vmhost.virt.site"], env=env, cwd=tmp)
    recap = {m[0]: [int(x) for x in m[1:]] for m in RECAP.findall(second)}
    assert recap[NAME][1:] == [0, 0, 0], recap
