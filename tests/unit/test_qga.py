"""The QEMU guest agent client (plugins/module_utils/qga.py) against a fake agent."""
import os
import shutil
import socket
import tempfile
import time

import pytest

from ansible_collections.vmhost.virt.plugins.module_utils import qga
from qga_fake import INTERFACES, OSINFO, FakeAgent


@pytest.fixture
def sockdir():
    # unix socket paths are limited to 108 bytes: keep them short, not under tmp_path
    d = tempfile.mkdtemp(prefix="qga", dir="/tmp")
    os.chmod(d, 0o700)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def agent_factory(sockdir):
    agents = []

    def make(**kwargs):
        agent = FakeAgent(os.path.join(sockdir, "qga%d.sock" % len(agents)), **kwargs)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


def test_ping_info_osinfo_interfaces(agent_factory):
    agent = agent_factory()
    with qga.Client(agent.path, timeout=5) as client:
        assert client.ping() == {}
        assert client.info()["version"] == "7.2.22"
        assert client.osinfo() == OSINFO
        assert client.network_interfaces() == INTERFACES
    cmds = [r["execute"] for r in agent.received]
    assert cmds == ["guest-sync-delimited", "guest-ping", "guest-info", "guest-get-osinfo",
                    "guest-network-get-interfaces"]


def test_handshake_uses_random_id_and_resets_parser(agent_factory):
    agent = agent_factory()
    ids = iter([1234567, 7654321])
    with qga.Client(agent.path, timeout=5, id_factory=lambda: next(ids)) as client:
        assert client.sync() == 7654321
    syncs = [r for r in agent.received if r["execute"] == "guest-sync-delimited"]
    assert [s["arguments"]["id"] for s in syncs] == [1234567, 7654321]


def test_default_ids_differ():
    assert len({qga._default_id() for i in range(20)}) > 1


def test_stale_replies_are_discarded(agent_factory):
    # The fake greets every connection with half an old reply, an old delimited sync
    # answer (id 7) and an old undelimited reply before our own answers.
    agent = agent_factory(behaviour="stale")
    with qga.Client(agent.path, timeout=5, id_factory=lambda: 99) as client:
        assert client.osinfo()["version-id"] == "12"


def test_stale_sync_with_same_looking_content_is_not_taken(agent_factory):
    agent = agent_factory(behaviour="stale")
    # id 7 is what the stale delimited reply carries: the client must not stop there
    # if its own id differs; with id 7 it would be fooled, which is why ids are random.
    with qga.Client(agent.path, timeout=5, id_factory=lambda: 8) as client:
        assert client.ping() == {}
    assert agent.received[0]["arguments"]["id"] == 8


def test_call_with_arguments_and_agent_error(agent_factory):
    agent = agent_factory()
    with pytest.raises(qga.AgentError) as info:
        qga.call(agent.path, "guest-get-host-name", {"bogus": 1}, timeout=5)
    err = info.value
    assert err.reason == qga.AGENT
    assert err.error_class == "GenericError"
    assert err.desc == "Parameter 'bogus' is unexpected"
    assert "guest-get-host-name" in str(err) and "GenericError" in str(err)
    assert agent.received[-1] == {"execute": "guest-get-host-name", "arguments": {"bogus": 1}}


def test_blocked_command_is_reported_with_class_and_desc(agent_factory):
    agent = agent_factory(blocked={"guest-exec"})
    with pytest.raises(qga.AgentError) as info:
        qga.call(agent.path, "guest-exec", {"path": "/bin/true"}, timeout=5)
    assert info.value.error_class == "CommandNotFound"
    assert "disabled" in info.value.desc


def test_shutdown_sends_no_reply_and_succeeds(agent_factory):
    agent = agent_factory()
    start = time.monotonic()
    with qga.Client(agent.path, timeout=30) as client:
        assert client.shutdown() is None
        # the connection stays usable: the follow-up sync was consumed
        assert client.ping() == {}
    assert agent.shutdowns == 1
    assert time.monotonic() - start < 20, "success must be seen from the follow-up sync, not a timeout"


def test_shutdown_mode_is_passed(agent_factory):
    agent = agent_factory()
    qga.call(agent.path, "guest-shutdown", {"mode": "reboot"}, timeout=5)
    assert {"execute": "guest-shutdown", "arguments": {"mode": "reboot"}} in agent.received


def test_shutdown_error_reply_is_raised(agent_factory):
    agent = agent_factory(shutdown_fails=True)
    with pytest.raises(qga.AgentError) as info:
        qga.call(agent.path, "guest-shutdown", timeout=5)
    assert "failed to shutdown" in info.value.desc
    agent2 = agent_factory()
    with pytest.raises(qga.AgentError) as info:
        qga.call(agent2.path, "guest-shutdown", {"mode": "explode"}, timeout=5)
    assert "mode" in info.value.desc


def test_shutdown_when_vm_goes_away_is_success(agent_factory):
    agent = agent_factory(behaviour="shutdown-closes")
    assert qga.call(agent.path, "guest-shutdown", timeout=5) is None
    assert agent.shutdowns == 1


def test_missing_path(sockdir):
    path = os.path.join(sockdir, "nope.sock")
    start = time.monotonic()
    with pytest.raises(qga.QGAError) as info:
        qga.call(path, "guest-ping", timeout=2)
    assert info.value.reason == qga.MISSING
    assert "does not exist" in str(info.value) and path in str(info.value)
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("kind", ["file", "dir", "fifo"])
def test_not_a_socket(sockdir, kind):
    path = os.path.join(sockdir, "thing")
    if kind == "file":
        with open(path, "w") as f:
            f.write("x")
    elif kind == "dir":
        os.mkdir(path)
    else:
        os.mkfifo(path)  # opening a fifo would block: we must never open it
    start = time.monotonic()
    with pytest.raises(qga.QGAError) as info:
        qga.call(path, "guest-ping", timeout=2)
    assert info.value.reason == qga.NOT_SOCKET
    assert "is not a unix socket" in str(info.value)
    assert time.monotonic() - start < 2


def test_nobody_listening(sockdir):
    path = os.path.join(sockdir, "dead.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # the socket file stays, nobody listens
    with pytest.raises(qga.QGAError) as info:
        qga.call(path, "guest-ping", timeout=2)
    assert info.value.reason == qga.REFUSED
    assert "nobody is listening" in str(info.value)


def test_silent_agent_times_out_within_deadline(agent_factory):
    agent = agent_factory(behaviour="silent")
    start = time.monotonic()
    with pytest.raises(qga.QGAError) as info:
        qga.call(agent.path, "guest-ping", timeout=1.0)
    elapsed = time.monotonic() - start
    assert info.value.reason == qga.TIMEOUT
    assert "did not answer guest-sync-delimited within 1 s" in str(info.value)
    assert 0.9 <= elapsed < 6.0  # fires at the deadline, not before, and never hangs


def test_command_timeout_after_sync(sockdir):
    """An agent that syncs but never answers the command: timeout, not a hang."""
    path = os.path.join(sockdir, "half.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    import json
    import threading

    def serve():
        conn = listener.accept()[0]
        data = b""
        while b"\n" not in data:
            data += conn.recv(4096)
        req = json.loads(data.split(b"\xff")[-1].split(b"\n")[0])
        conn.sendall(b"\xff" + json.dumps({"return": req["arguments"]["id"]}).encode() + b"\n")
        conn.recv(4096)  # the command: never answered
        time.sleep(3)
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    start = time.monotonic()
    try:
        with pytest.raises(qga.QGAError) as info:
            qga.call(path, "guest-info", timeout=1.0)
        assert info.value.reason == qga.TIMEOUT
        assert "guest-info" in str(info.value)
        assert time.monotonic() - start < 6.0
    finally:
        listener.close()
        t.join(5)


def test_closed_connection(agent_factory):
    agent = agent_factory(behaviour="close")
    with pytest.raises(qga.QGAError) as info:
        qga.call(agent.path, "guest-ping", timeout=2)
    assert info.value.reason == qga.CLOSED
    assert "closed the connection" in str(info.value)


def test_not_json_reply(sockdir):
    path = os.path.join(sockdir, "junk.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    import json
    import threading

    def serve():
        conn = listener.accept()[0]
        data = b""
        while b"\n" not in data:
            data += conn.recv(4096)
        req = json.loads(data.split(b"\xff")[-1].split(b"\n")[0])
        conn.sendall(b"\xff" + json.dumps({"return": req["arguments"]["id"]}).encode() + b"\n")
        conn.recv(4096)
        conn.sendall(b"this is not json\n")
        conn.recv(4096)
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with pytest.raises(qga.QGAError) as info:
            qga.call(path, "guest-ping", timeout=2)
        assert info.value.reason == qga.PROTOCOL
        assert "not JSON" in str(info.value)
    finally:
        listener.close()
        t.join(5)


def test_changes_state_table():
    assert not qga.changes_state("guest-ping")
    assert not qga.changes_state("guest-get-osinfo")
    assert not qga.changes_state("guest-network-get-interfaces")
    assert qga.changes_state("guest-shutdown")
    assert qga.changes_state("guest-exec")
    assert qga.changes_state("guest-file-write")
    assert qga.changes_state("guest-something-new")
    assert not qga.sends_reply("guest-shutdown")
    assert qga.sends_reply("guest-ping")


def test_bad_arguments_rejected(agent_factory):
    agent = agent_factory()
    with qga.Client(agent.path, timeout=2) as client:
        with pytest.raises(ValueError):
            client.execute("")
        with pytest.raises(ValueError):
            client.execute("guest-ping", ["not", "a", "dict"])
    with pytest.raises(ValueError):
        qga.Client(agent.path, timeout=0)


class FakeClock(object):
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_call_when_ready_retries_until_socket_appears(sockdir):
    path = os.path.join(sockdir, "late.sock")
    clock = FakeClock()
    agents = []

    def sleep(seconds):
        clock.sleep(seconds)
        if clock.now >= 3 and not agents:
            agents.append(FakeAgent(path))

    try:
        result, attempts = qga.call_when_ready(path, "guest-ping", timeout=5, wait_timeout=60,
                                               interval=1, clock=clock, sleep=sleep)
        assert result == {}
        assert attempts == 4
    finally:
        for a in agents:
            a.close()


def test_call_when_ready_gives_up_at_deadline(sockdir):
    path = os.path.join(sockdir, "never.sock")
    clock = FakeClock()
    with pytest.raises(qga.QGAError) as info:
        qga.call_when_ready(path, "guest-ping", timeout=5, wait_timeout=10, interval=2,
                            clock=clock, sleep=clock.sleep)
    assert info.value.reason == qga.MISSING
    assert "within 10 s (6 attempts)" in str(info.value)
    assert clock.now == 10


def test_call_when_ready_does_not_retry_agent_errors_or_wrong_types(agent_factory, sockdir):
    agent = agent_factory(blocked={"guest-exec"})
    clock = FakeClock()
    with pytest.raises(qga.AgentError):
        qga.call_when_ready(agent.path, "guest-exec", {"path": "/bin/true"}, timeout=5, wait_timeout=60,
                            clock=clock, sleep=clock.sleep)
    assert clock.now == 0
    path = os.path.join(sockdir, "plain")
    open(path, "w").close()
    with pytest.raises(qga.QGAError) as info:
        qga.call_when_ready(path, "guest-ping", timeout=5, wait_timeout=60, clock=clock, sleep=clock.sleep)
    assert info.value.reason == qga.NOT_SOCKET
    assert clock.now == 0


def test_call_when_ready_silent_agent_real_clock(agent_factory):
    agent = agent_factory(behaviour="silent")
    start = time.monotonic()
    with pytest.raises(qga.QGAError) as info:
        qga.call_when_ready(agent.path, "guest-ping", timeout=0.5, wait_timeout=1.5, interval=0.2)
    assert info.value.reason == qga.TIMEOUT
    assert time.monotonic() - start < 8.0


# -- finding 8: a hostile agent's deeply nested reply is a clear QGAError, fast
def _hostile_agent(path, reply):
    import json as _json
    import socket as _socket
    import threading as _threading
    server = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def serve():
        conn, _addr = server.accept()
        buf = b""
        while b"\n" not in buf:
            buf += conn.recv(4096)
        sync = _json.loads(buf.split(b"\n")[0].lstrip(b"\xff"))
        conn.sendall(b"\xff" + _json.dumps({"return": sync["arguments"]["id"]}).encode() + b"\n")
        conn.recv(4096)
        conn.sendall(reply + b"\n")
        conn.close()
        server.close()

    thread = _threading.Thread(target=serve)
    thread.daemon = True
    thread.start()
    return thread


def test_deeply_nested_reply_is_refused(tmp_path):
    import time as _time
    path = str(tmp_path / "qga.sock")
    _hostile_agent(path, b'{"return": ' + b"[" * 100000 + b"]" * 100000 + b"}")
    started = _time.process_time()
    with pytest.raises(qga.QGAError, match="nested more than 64"):
        qga.call(path, "guest-info", timeout=10)
    assert _time.process_time() - started < 2


def test_json_depth_skips_strings():
    assert qga.json_depth('{"a": "[[[{{{", "b": [[1]]}') == 3
    assert qga.loads_bounded('{"return": ["\\"[[", {"x": []}]}') == {"return": ['"[[', {"x": []}]}
