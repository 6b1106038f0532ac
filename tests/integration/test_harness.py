"""Integration test of the harness: a real VM boots, answers over SSH with the
per-instance key, exposes its guest-agent socket, and is destroyed by PID."""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.harness import api
from tests.harness.errors import HarnessError

pytestmark = [pytest.mark.root, pytest.mark.slow]

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAME = "it-harness-%d" % os.getpid()


@pytest.fixture(scope="module")
def instance():
    if os.geteuid() != 0:
        pytest.skip("the harness needs root (mmdebstrap --mode=root)")
    try:
        info = api.up(name=NAME, memory=768, cpus=2, guest_agent=True)
    except BaseException:
        api.down(NAME)
        raise
    try:
        yield info
    finally:
        api.down(NAME)


def test_instance_description(instance):
    assert instance["address"] == "127.0.0.1" and instance["user"] == "root"
    assert instance["accel"] in ("kvm", "tcg")
    assert instance["systemd"] in ("running", "degraded")
    with open(os.path.join(instance["instance_dir"], "instance.json")) as f:
        on_disk = json.load(f)
    assert on_disk == api.instance_info(NAME)
    assert on_disk["port"] == instance["port"] and on_disk["pid"] == instance["pid"]
    assert os.stat(instance["instance_dir"]).st_mode & 0o777 == 0o700
    assert os.stat(instance["identity_file"]).st_mode & 0o777 == 0o600


def test_command_over_ssh(instance):
    out = api.ssh(instance, "hostname; . /etc/os-release; echo $VERSION_ID; "
                            "cat /proc/1/comm; test -s /etc/machine-id && echo id").stdout.split()
    assert out == [NAME, "12", "systemd", "id"]


def test_ssh_only_on_loopback(instance):
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    listening = [r[1] for r in rows if r[3] == "0A" and int(r[1].split(":")[1], 16) == instance["port"]]
    assert listening == ["0100007F:%04X" % instance["port"]]


def test_guest_agent_socket_answers(instance):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(instance["qga_socket"])
    try:
        sock.sendall(b'{"execute": "guest-sync", "arguments": {"id": 4242}}\n')
        data = b""
        while b"\n" not in data:
            data += sock.recv(4096)
    finally:
        sock.close()
    assert json.loads(data.splitlines()[-1]) == {"return": 4242}


def test_second_up_of_a_running_instance_is_refused(instance):
    with pytest.raises(HarnessError, match="already running"):
        api.up(name=NAME)


def test_cached_build_is_reused(instance):
    again = api.build("default")
    assert again["cached"] is True
    assert again["image"] == instance["image"]


def test_cli_refuses_a_taken_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        port = s.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "tests.harness", "up", "--name", "port-taken",
                               "--port", str(port)], cwd=TOP, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, check=False)
    finally:
        s.close()
    assert proc.returncode == 2
    assert "port %d on 127.0.0.1 is already taken" % port in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_refuses_an_unknown_distribution():
    proc = subprocess.run([sys.executable, "-m", "tests.harness", "up", "--name", "bad-dist",
                           "--options-json", '{"recipe": {"base": "default", "distribution": "arch"}}'],
                          cwd=TOP, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          check=False)
    assert proc.returncode == 2
    assert "unknown distribution 'arch'" in proc.stderr


def test_too_small_image_is_refused(instance):
    with pytest.raises(HarnessError, match="too small for the tree"):
        api.build("default", size="512M")


def test_down_stops_qemu_and_removes_files(instance):
    # last test of the module: takes the shared instance down itself
    assert api.pid_alive(instance["pid"])
    assert api.down(NAME) is True
    assert not api.pid_alive(instance["pid"])
    assert not os.path.exists(instance["instance_dir"])
    assert api.down(NAME) is False
