"""testinfra checks of the guest_agent role (molecule/guest_agent).

Guest side through SSH (testinfra), host side through the VM's agent socket with
the collection's own client and module, as a playbook on the VM host would.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest
import testinfra.utils.ansible_runner

ROOT = pathlib.Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ansible_collections.vmhost.virt.plugins.module_utils import qga  # noqa: E402
from tests.harness import api  # noqa: E402

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

DROPIN = "/etc/systemd/system/qemu-guest-agent.service.d/vmhost-virt.conf"
DEFAULT_BLOCKED = ["guest-exec", "guest-exec-status", "guest-file-open", "guest-file-close",
                   "guest-file-read", "guest-file-write", "guest-file-seek", "guest-file-flush"]


@pytest.fixture(scope="module")
def qga_socket():
    name = testinfra_hosts[0]
    info = api.instance_info(name)
    path = info["qga_socket"]
    assert path, "the harness VM %s was started without a guest agent channel" % name
    parent = os.stat(os.path.dirname(path))
    assert parent.st_mode & 0o777 == 0o700, "the socket's directory must be 0700"
    return path


def test_package_installed(host):
    assert host.package("qemu-guest-agent").is_installed


def test_dropin_configures_the_agent(host):
    f = host.file(DROPIN)
    assert f.is_file
    assert f.user == "root" and f.mode == 0o644
    text = f.content_string
    assert "ExecStart=\n" in text
    assert "--path=/dev/virtio-ports/org.qemu.guest_agent.0" in text
    assert "--statedir=/run/qemu-ga" in text
    assert "--logfile=/var/log/qemu-ga.log" in text
    assert "--block-rpcs=" + ",".join(DEFAULT_BLOCKED) in text
    assert "RuntimeDirectory=qemu-ga" in text


def test_agent_runs_with_those_options(host):
    svc = host.service("qemu-guest-agent")
    assert svc.is_running
    pid = host.run("systemctl show -P MainPID qemu-guest-agent.service").stdout.strip()
    assert pid not in ("", "0")
    argv = host.file("/proc/%s/cmdline" % pid).content.split(b"\0")
    assert b"--block-rpcs=" + ",".join(DEFAULT_BLOCKED).encode() in argv
    assert b"--statedir=/run/qemu-ga" in argv
    state = host.file("/run/qemu-ga")
    assert state.is_directory and state.mode == 0o700
    assert host.file("/var/log/qemu-ga.log").is_file


def test_ping_and_osinfo_from_the_host(qga_socket):
    with qga.Client(qga_socket, timeout=30) as client:
        assert client.ping() == {}
        osinfo = client.osinfo()
    assert osinfo["id"] == "debian"
    assert osinfo["version-id"] == "12"
    assert "bookworm" in osinfo["pretty-name"]


def test_guest_info_lists_the_blocked_rpcs_as_disabled(qga_socket):
    info = qga.call(qga_socket, "guest-info", timeout=30)
    enabled = {c["name"]: c["enabled"] for c in info["supported_commands"]}
    for name in DEFAULT_BLOCKED:
        assert enabled[name] is False, name
    assert enabled["guest-get-osinfo"] is True
    assert enabled["guest-shutdown"] is True


def test_guest_exec_is_refused_by_the_agent(qga_socket, host):
    marker = "/root/guest-exec-ran"
    with pytest.raises(qga.AgentError) as info:
        qga.call(qga_socket, "guest-exec",
                 {"path": "/usr/bin/touch", "arg": [marker], "capture-output": True}, timeout=30)
    assert info.value.error_class == "CommandNotFound"
    assert "disabled" in info.value.desc
    assert not host.file(marker).exists


def test_interfaces_from_the_host(qga_socket):
    ifaces = qga.call(qga_socket, "guest-network-get-interfaces", timeout=30)
    names = [i["name"] for i in ifaces]
    assert "eth0" in names
    eth0 = [i for i in ifaces if i["name"] == "eth0"][0]
    addrs = [a["ip-address"] for a in eth0.get("ip-addresses", [])]
    assert any(a.startswith("10.0.2.") for a in addrs), addrs


def test_module_on_the_host(qga_socket):
    """vmhost.virt.guest_agent_exec on the controller, as a VM host playbook runs it."""
    fd, out = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    play = [{"hosts": "localhost", "gather_facts": False,
             "vars": {"ansible_python_interpreter": sys.executable},
             "tasks": [
                 {"name": "Wait for the agent", "register": "ping",
                  "vmhost.virt.guest_agent_exec": {"socket": qga_socket, "command": "guest-ping",
                                                   "wait_for": True, "wait_timeout": 120}},
                 {"name": "Ask the OS", "register": "osinfo",
                  "vmhost.virt.guest_agent_exec": {"socket": qga_socket, "command": "guest-get-osinfo"}},
                 {"name": "Save", "ansible.builtin.copy": {
                     "content": "{{ {'ping': ping, 'osinfo': osinfo} | to_json }}", "dest": out, "mode": "0600"}},
             ]}]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(play, f)
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".tmp" / "collections"))
    try:
        proc = subprocess.run([str(pathlib.Path(sys.executable).with_name("ansible-playbook")),
                               "-i", "localhost,", "-c", "local", f.name],
                              capture_output=True, text=True, env=env, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(pathlib.Path(out).read_text())
    finally:
        os.unlink(f.name)
        os.unlink(out)
    assert result["ping"]["result"] == {} and result["ping"]["changed"] is False
    assert result["osinfo"]["result"]["version-id"] == "12"


def test_shutdown_from_the_host_runs_last(qga_socket):
    """guest-shutdown: check mode sends nothing, a real run powers the guest off.

    Last in this file on purpose: the VM is gone afterwards (destroy copes with that).
    """
    import time

    name = testinfra_hosts[0]
    pid = api.instance_info(name)["pid"]
    assert api.pid_alive(pid)
    play = [{"hosts": "localhost", "gather_facts": False,
             "vars": {"ansible_python_interpreter": sys.executable},
             "tasks": [{"name": "Shut the guest down", "register": "down",
                        "vmhost.virt.guest_agent_exec": {"socket": qga_socket, "command": "guest-shutdown",
                                                         "timeout": 60}},
                       {"name": "Show", "ansible.builtin.debug": {"var": "down"}}]}]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(play, f)
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".tmp" / "collections"))
    argv = [str(pathlib.Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local", f.name]
    try:
        check = subprocess.run(argv + ["--check"], capture_output=True, text=True, env=env, timeout=300, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        assert '"sent": false' in check.stdout and "changed: [localhost]" in check.stdout
        assert qga.call(qga_socket, "guest-ping", timeout=30) == {}, "check mode must not shut down"
        real = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
        assert real.returncode == 0, real.stdout + real.stderr
        assert '"sent": true' in real.stdout and "changed: [localhost]" in real.stdout
    finally:
        os.unlink(f.name)
    deadline = time.monotonic() + 300
    while api.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(1)
    assert not api.pid_alive(pid), "QEMU (pid %d) still runs 300 s after guest-shutdown" % pid
