"""vmhost.virt.guest_agent_exec through Ansible, against the real qemu-ga.

qemu-ga (Debian's qemu-guest-agent, from bindep.txt) runs here in ``unix-listen`` mode
on a socket in a 0700 temp directory, with every RPC blocked except the read-only ones
(computed from ``qemu-ga --block-rpcs=help``), so nothing a test sends can change this
machine: ``guest-shutdown`` and ``guest-exec`` are refused by the agent itself.
"""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
QEMU_GA = shutil.which("qemu-ga") or "/usr/sbin/qemu-ga"
# The only RPCs the host's agent may serve: none of them changes anything.
SAFE = {"guest-sync-delimited", "guest-sync", "guest-ping", "guest-info", "guest-get-osinfo",
        "guest-get-host-name", "guest-network-get-interfaces", "guest-get-timezone", "guest-get-time"}


def run_module(run, args, check=False):
    """Run the module once through the ``ansible_module`` fixture ``run``; return its registered result."""
    return run("guest_agent_exec", args, check=check)


def _blocked_rpcs():
    out = subprocess.run([QEMU_GA, "--block-rpcs=help"], capture_output=True, text=True, check=True).stdout
    every = set(out.split())
    assert {"guest-ping", "guest-shutdown", "guest-exec"} <= every, out
    return sorted(every - SAFE)


class RealAgent(object):
    def __init__(self, directory, name="qga.sock"):
        self.dir = directory
        self.path = os.path.join(directory, name)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [QEMU_GA, "--method=unix-listen", "--path=" + self.path, "--statedir=" + self.dir,
             "--pidfile=" + os.path.join(self.dir, "qemu-ga.pid"),
             "--logfile=" + os.path.join(self.dir, "qemu-ga.log"),
             "--block-rpcs=" + ",".join(_blocked_rpcs())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.path):
            assert self.proc.poll() is None, "qemu-ga exited: " + self.log()
            assert time.monotonic() < deadline, "qemu-ga did not create its socket: " + self.log()
            time.sleep(0.05)
        return self

    def log(self):
        try:
            return pathlib.Path(self.dir, "qemu-ga.log").read_text()
        except OSError:
            return "(no log)"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="qgait", dir="/tmp")
    os.chmod(d, 0o700)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def agent(workdir):
    if not os.access(QEMU_GA, os.X_OK):
        pytest.fail("qemu-ga is missing: `make deps` installs qemu-guest-agent (bindep.txt)")
    a = RealAgent(workdir).start()
    yield a
    a.stop()


def _os_release():
    values = {}
    for line in pathlib.Path("/etc/os-release").read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            values[k] = v.strip('"')
    return values


def test_ping_check_then_real(agent, ansible_module):
    for check in (True, False, True, False):
        res = run_module(ansible_module, {"socket": agent.path, "command": "guest-ping"}, check=check)
        assert not res.get("failed"), res
        assert res["changed"] is False
        assert res["sent"] is True
        assert res["result"] == {}
        assert res["attempts"] == 1


def test_osinfo_and_interfaces(agent, ansible_module):
    res = run_module(ansible_module, {"socket": agent.path, "command": "guest-get-osinfo"})
    assert not res.get("failed"), res
    assert res["result"]["id"] == _os_release()["ID"]
    assert res["result"]["version-id"] == _os_release()["VERSION_ID"]
    res = run_module(ansible_module, {"socket": agent.path, "command": "guest-network-get-interfaces"})
    assert not res.get("failed"), res
    assert "lo" in [i["name"] for i in res["result"]]
    res = run_module(ansible_module, {"socket": agent.path, "command": "guest-info"})
    enabled = {c["name"]: c["enabled"] for c in res["result"]["supported_commands"]}
    assert enabled["guest-ping"] is True
    assert enabled["guest-exec"] is False
    assert enabled["guest-shutdown"] is False


def test_blocked_guest_exec_is_refused_by_the_agent(agent, ansible_module):
    res = run_module(ansible_module, {"socket": agent.path, "command": "guest-exec",
                                      "arguments": {"path": "/bin/true", "capture-output": True}})
    assert res["failed"] is True
    assert res["reason"] == "agent"
    assert res["error_class"] == "CommandNotFound"
    assert "disabled" in res["error_desc"]
    assert "guest-exec" in res["msg"]
    assert res["changed"] is False


def test_state_changing_command_in_check_mode_is_not_sent(agent, ansible_module):
    res = run_module(ansible_module, {"socket": agent.path, "command": "guest-shutdown"}, check=True)
    assert not res.get("failed"), res
    assert res["changed"] is True
    assert res["sent"] is False
    assert res["result"] is None
    # a real run reaches the agent, which refuses it here (blocked), with its own words
    res = run_module(ansible_module, {"socket": agent.path, "command": "guest-shutdown"})
    assert res["failed"] is True
    assert res["error_class"] == "CommandNotFound"


def test_unknown_arguments_error_reply(agent, ansible_module):
    res = run_module(ansible_module, {"socket": agent.path, "command": "guest-ping", "arguments": {"bogus": 1}})
    assert res["failed"] is True
    assert res["error_class"] == "GenericError"
    assert "bogus" in res["error_desc"]


def test_missing_socket_fails_fast(workdir, ansible_module):
    path = os.path.join(workdir, "absent.sock")
    for check in (True, False):
        res = run_module(ansible_module, {"socket": path, "command": "guest-ping", "timeout": 3}, check=check)
        assert res["failed"] is True
        assert res["reason"] == "missing"
        assert "does not exist" in res["msg"]


def test_not_a_socket_fails_fast(workdir, ansible_module):
    path = os.path.join(workdir, "plain-file")
    pathlib.Path(path).write_text("not a socket\n")
    res = run_module(ansible_module, {"socket": path, "command": "guest-ping", "timeout": 3, "wait_for": True,
                                      "wait_timeout": 60})
    assert res["failed"] is True
    assert res["reason"] == "not_socket"
    assert "is not a unix socket" in res["msg"]
    assert res["attempts"] == 1
    fifo = os.path.join(workdir, "fifo")
    os.mkfifo(fifo)
    res = run_module(ansible_module, {"socket": fifo, "command": "guest-ping", "timeout": 3})
    assert res["reason"] == "not_socket"


def test_dead_socket_and_silent_listener_time_out(workdir, ansible_module):
    dead = os.path.join(workdir, "dead.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(dead)
    s.close()
    res = run_module(ansible_module, {"socket": dead, "command": "guest-ping", "timeout": 3})
    assert res["failed"] is True
    assert res["reason"] == "refused"
    # a listener that accepts and never answers (QEMU's chardev with no agent behind it)
    silent = os.path.join(workdir, "silent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(silent)
    listener.listen(4)
    try:
        res = run_module(ansible_module, {"socket": silent, "command": "guest-ping", "timeout": 2})
        assert res["failed"] is True
        assert res["reason"] == "timeout"
        assert 1.9 <= res["elapsed"] < 10, res
        assert "did not answer" in res["msg"]
    finally:
        listener.close()


def test_wait_for_an_agent_that_starts_later(workdir, ansible_module):
    """A channel whose agent is not up yet (QEMU accepts, nobody answers), then the agent.

    A placeholder listener accepts and hangs up (what a booting VM's chardev looks like to
    a client once the guest side is closed); only after it has turned the module away once
    is it replaced by the real qemu-ga, so the module must have retried.
    """
    late = RealAgent(workdir, name="late.sock")
    placeholder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    placeholder.bind(late.path)
    placeholder.listen(4)
    placeholder.settimeout(120)
    errors = []

    def swap():
        try:
            conn = placeholder.accept()[0]
            conn.close()
            placeholder.close()
            os.unlink(late.path)
            late.start()
        except Exception as exc:  # reported by the test below
            errors.append(exc)

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    try:
        res = run_module(ansible_module, {"socket": late.path, "command": "guest-ping", "wait_for": True,
                                          "wait_timeout": 120, "timeout": 5})
        swapper.join(30)
        assert not errors, errors
        assert not res.get("failed"), res
        assert res["result"] == {}
        assert res["attempts"] > 1
    finally:
        placeholder.close()
        late.stop()


def test_bad_parameters(workdir, ansible_module):
    res = run_module(ansible_module, {"socket": os.path.join(workdir, "x.sock"), "command": "guest-ping", "timeout": 0})
    assert res["failed"] is True
    assert "timeout must be a positive number" in res["msg"]
    res = run_module(ansible_module, {"socket": os.path.join(workdir, "x.sock"), "command": "  "})
    assert res["failed"] is True
    assert "command must not be empty" in res["msg"]


def test_the_safety_list_really_blocks_everything_else():
    blocked = set(_blocked_rpcs())
    assert "guest-shutdown" in blocked and "guest-exec" in blocked and "guest-set-time" in blocked
    assert not (blocked & SAFE)
