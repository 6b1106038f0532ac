"""guest_agent from the VM host's side: the collection's client and module talk to the
agent through the VM's socket (<instance_dir>/qga.sock), as a playbook on a VM host
would. Debian 13: only the allow-list (and the handshake) answers, everything else is
refused by qemu-ga 10.0 itself. Debian 12: the block-list is refused, the rest answers.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest
import testinfra.utils.ansible_runner

from conftest import ROOT, expected_release, inventory

from ansible_collections.vmhost.virt.plugins.module_utils import qga  # noqa: E402
from tests.harness import api  # noqa: E402

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(inventory()).get_hosts("vms")

from test_guest_agent import ALLOWED, DEFAULT_BLOCKED, HANDSHAKE  # noqa: E402

# Served by qemu-ga unless filtered: on Debian 13 they are outside the allow-list.
NOT_ALLOWED = ["guest-get-time", "guest-get-hostname", "guest-get-users", "guest-exec"]


@pytest.fixture()
def vm(host):
    info = api.instance_info(host.backend.get_hostname())
    path = info["qga_socket"]
    assert path, "the harness VM %s was started without a guest agent channel" % info["name"]
    parent = os.stat(os.path.dirname(path))
    assert parent.st_mode & 0o777 == 0o700, "the socket's directory must be 0700"
    suite, version = expected_release(info)
    return {"socket": path, "suite": suite, "version": version, "info": info}


def _refused(socket, command, args=None, words=("disabled",)):
    """The agent answers ``command`` with CommandNotFound. qemu-ga 10.0 says "has been
    disabled" for some RPCs off its allow-list and "has not been found" for others
    (guest-get-hostname), although guest-info lists them."""
    with pytest.raises(qga.AgentError) as err:
        qga.call(socket, command, args, timeout=30)
    assert err.value.error_class == "CommandNotFound", (command, err.value.error_class)
    assert any(w in err.value.desc for w in words), (command, err.value.desc)


def test_ping_and_osinfo_from_the_host(vm):
    with qga.Client(vm["socket"], timeout=30) as client:
        assert client.ping() == {}
        osinfo = client.osinfo()
    assert osinfo["id"] == "debian"
    assert osinfo["version-id"] == vm["version"]
    assert vm["suite"] in osinfo["pretty-name"]


def test_guest_info_lists_what_the_filter_lets_through(vm):
    info = qga.call(vm["socket"], "guest-info", timeout=30)
    enabled = {c["name"]: c["enabled"] for c in info["supported_commands"]}
    if int(vm["version"]) >= 13:
        assert info["version"].startswith("10."), info["version"]
        on = sorted(name for name, is_on in enabled.items() if is_on)
        assert on == sorted(HANDSHAKE + ALLOWED), on
    else:
        for name in DEFAULT_BLOCKED:
            assert enabled[name] is False, name
        assert enabled["guest-get-osinfo"] is True
        assert enabled["guest-get-time"] is True
        assert enabled["guest-shutdown"] is True


def test_allowed_rpc_answers_and_others_are_refused(vm, host):
    """Debian 13: an RPC on the allow-list answers; RPCs this agent has (guest-info lists
    them) but that are off the list are refused as disabled. Debian 12: a blocked RPC is
    refused, an unblocked one answers."""
    assert qga.call(vm["socket"], "guest-network-get-interfaces", timeout=30)
    if int(vm["version"]) >= 13:
        known = {c["name"] for c in qga.call(vm["socket"], "guest-info", timeout=30)
                 ["supported_commands"]}
        off_list = [name for name in NOT_ALLOWED if name in known]
        assert "guest-get-time" in off_list, sorted(known)
        _refused(vm["socket"], "guest-get-time")
        for name in off_list:
            _refused(vm["socket"], name, words=("disabled", "not been found"))
    else:
        assert isinstance(qga.call(vm["socket"], "guest-get-time", timeout=30), int)
    marker = "/root/guest-exec-ran"
    _refused(vm["socket"], "guest-exec",
             {"path": "/usr/bin/touch", "arg": [marker], "capture-output": True},
             words=("disabled", "not been found"))
    assert not host.file(marker).exists


def test_interfaces_from_the_host(vm):
    ifaces = qga.call(vm["socket"], "guest-network-get-interfaces", timeout=30)
    names = [i["name"] for i in ifaces]
    assert "eth0" in names
    eth0 = [i for i in ifaces if i["name"] == "eth0"][0]
    addrs = [a["ip-address"] for a in eth0.get("ip-addresses", [])]
    assert any(a.startswith("10.0.2.") for a in addrs), addrs


def _playbook(tasks, extra=()):
    play = [{"hosts": "localhost", "gather_facts": False,
             "vars": {"ansible_python_interpreter": sys.executable}, "tasks": tasks}]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(play, f)
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".tmp" / "collections"))
    argv = [str(pathlib.Path(sys.executable).with_name("ansible-playbook")),
            "-i", "localhost,", "-c", "local", f.name] + list(extra)
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300,
                              check=False)
    finally:
        os.unlink(f.name)


def test_module_on_the_host(vm):
    """vmhost.virt.guest_agent_exec on the controller, as a VM host playbook runs it;
    on Debian 13 an RPC off the allow-list fails the task with the agent's answer."""
    fd, out = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    sock = vm["socket"]
    tasks = [
        {"name": "Wait for the agent", "register": "ping",
         "vmhost.virt.guest_agent_exec": {"socket": sock, "command": "guest-ping",
                                          "wait_for": True, "wait_timeout": 120}},
        {"name": "Ask the OS", "register": "osinfo",
         "vmhost.virt.guest_agent_exec": {"socket": sock, "command": "guest-get-osinfo"}},
        {"name": "Ask the time", "register": "clock", "ignore_errors": True,
         "vmhost.virt.guest_agent_exec": {"socket": sock, "command": "guest-get-time"}},
        {"name": "Save", "ansible.builtin.copy": {
            "content": "{{ {'ping': ping, 'osinfo': osinfo, 'clock': clock} | to_json }}",
            "dest": out, "mode": "0600"}},
    ]
    try:
        proc = _playbook(tasks)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(pathlib.Path(out).read_text())
    finally:
        os.unlink(out)
    assert result["ping"]["result"] == {} and result["ping"]["changed"] is False
    assert result["osinfo"]["result"]["version-id"] == vm["version"]
    if int(vm["version"]) >= 13:
        assert result["clock"].get("failed") is True, result["clock"]
        assert "disabled" in json.dumps(result["clock"]), result["clock"]
    else:
        assert not result["clock"].get("failed"), result["clock"]
        assert isinstance(result["clock"]["result"], int)
