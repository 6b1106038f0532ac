"""The secret service (plugins/module_utils/secret_service.py): wire format and both ends."""
import os
import pty
import re
import select
import socket
import stat
import subprocess
import sys
import threading
import time
import tty

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.vmhost.virt.plugins.module_utils import secret_service as ss

PROGRAM = ss.__file__

FILES = {
    "etc/ssh/ssh_host_ed25519_key": (b"-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n", 0o600),
    "etc/ssh/ssh_host_ed25519_key.pub": (b"ssh-ed25519 AAAA host\n", 0o644),
    "etc/ssh/authorized_keys.d/offloading": (b"ssh-ed25519 BBBB offload\n", 0o644),
    "etc/nix/signing-key.sec": (os.urandom(3000), 0o400),
    "etc/guix/acl": (b"", 0o644),
}


def make_secret_root(base):
    root = base / "secrets"
    for rel, (data, mode) in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, mode)
    return root


def check_installed(guest):
    for rel, (data, mode) in FILES.items():
        path = guest / rel
        assert path.read_bytes() == data, rel
        assert stat.S_IMODE(path.stat().st_mode) == mode, rel
    leftovers = [n for _d, _s, names in os.walk(guest) for n in names if ".secret-" in n]
    assert not leftovers


# ------------------------------------------------------------------ format

def test_header_is_guix_write_format():
    header = ss.encode_header([("/etc/ssh/ssh_host_ed25519_key", 411, 384), ("/etc/guix/acl", 0, 420)])
    assert header == (b'(secrets (version 0) (files (("/etc/ssh/ssh_host_ed25519_key" 411 384)'
                      b' ("/etc/guix/acl" 0 420))))')
    assert ss.encode_header([]) == b"(secrets (version 0) (files ()))"


def test_string_escapes_guile_style():
    assert ss.encode_string('a"b\\c\nd\te\x01') == '"a\\"b\\\\c\\nd\\te\\x01"'
    value, rest = ss.parse_sexp(b'("a\\x41;\\x42\\u00e9\\U01F600\\"\\\\\\n" sym 12)tail')
    assert value == ["aA;B\u00e9\U0001F600\"\\\n", "sym", 12]
    assert isinstance(value[1], ss.Symbol) and not isinstance(value[0], ss.Symbol)
    assert rest == b"tail"


def test_guix_full_st_mode_accepted_and_masked():
    value, dummy = ss.parse_sexp(b'(secrets (version 0) (files (("/etc/x" 3 33152))))')
    assert ss.parse_header(value) == [("/etc/x", 3, 0o600)]


def test_greeting_and_replies():
    value, dummy = ss.parse_sexp(ss.GREETING)
    assert ss.check_greeting(value) == [0]
    assert ss.parse_reply(ss.parse_sexp(ss.encode_reply(count=3))[0]) == ("received", 3)
    assert ss.parse_reply(ss.parse_sexp(ss.encode_reply(error='bad "x"\nline'))[0]) == ("error", 'bad "x" line')
    with pytest.raises(ss.ProtocolError):
        ss.check_greeting(ss.parse_sexp(b"(hello (version 0))")[0])


@pytest.mark.parametrize("header, message", [
    (b'(secrets (version 0) (files (("/etc/x" -5 384))))', "bad size"),
    (b'(secrets (version 0) (files (("/etc/x" 99999999999 384))))', "at most"),
    (b'(secrets (version 0) (files (("/../etc/x" 1 384))))', "escapes"),
    (b'(secrets (version 0) (files (("/etc/../../x" 1 384))))', "escapes"),
    (b'(secrets (version 0) (files (("etc/x" 1 384))))', "not absolute"),
    (b'(secrets (version 0) (files (("//etc/x" 1 384))))', "escapes"),
    (b'(secrets (version 0) (files (("/etc/./x" 1 384))))', "escapes"),
    (b'(secrets (version 0) (files (("/etc/x\\0y" 1 384))))', "NUL"),
    (b'(secrets (version 0) (files ((etc 1 384))))', "not a string"),
    (b'(secrets (version 0) (files (("/etc/x" 1 8576))))', "regular file"),
    (b'(secrets (version 0) (files (("/etc/x" 1 384) ("/etc/x" 1 384))))', "twice"),
    (b'(secrets (version 1) (files ()))', "version"),
    (b'(secret (version 0) (files ()))', "not a (secrets"),
    (b'(secrets (version 0) (files (("/etc/x" 1))))', "PATH SIZE MODE"),
    (b'(secrets (version 0) (files (("/' + b"a/" * 40 + b'x" 1 384))))', "deeper"),
    (b'(secrets (version 0) (files (("/' + b"a" * 300 + b'" 1 384))))', "component"),
])
def test_hostile_headers_refused(header, message):
    with pytest.raises(ss.ProtocolError, match=re.escape(message)):
        ss.parse_header(ss.parse_sexp(header)[0])


def test_too_many_files_and_total():
    entries = " ".join('("/f%d" 1 384)' % i for i in range(300))
    with pytest.raises(ss.ProtocolError, match="300 files announced"):
        ss.parse_header(ss.parse_sexp(("(secrets (version 0) (files (%s)))" % entries).encode())[0])
    two = b'(secrets (version 0) (files (("/a" 600 384) ("/b" 600 384))))'
    with pytest.raises(ss.ProtocolError, match="total"):
        ss.parse_header(ss.parse_sexp(two)[0], max_bytes=1000)


@pytest.mark.parametrize("data, message", [
    (b"(" * 50, "nested deeper"),
    (b'(secrets "' + b"a" * 5000, "string longer"),
    (b"(secrets " + b"x" * 100, "atom too long"),
    (b"secrets", "expected '('"),
    (b")", "unbalanced"),
    (b"(a #t)", "unsupported syntax"),
    (b'("\\q")', "unknown escape"),
    (b'("\xff")', "UTF-8"),
])
def test_malformed_sexp_refused(data, message):
    with pytest.raises(ss.ProtocolError, match=re.escape(message)):
        ss.SexpReader().feed(data)


def test_overlong_header_without_closing_paren():
    reader = ss.SexpReader(max_bytes=1000)
    assert reader.feed(b"(secrets (version 0) (files (") is None
    with pytest.raises(ss.ProtocolError, match="without its closing paren"):
        for dummy in range(100):
            reader.feed(b'("/a" 1 384) ')


def test_truncated_sexp():
    with pytest.raises(ss.ProtocolError, match="truncated"):
        ss.parse_sexp(b'(secrets (version 0) (files (("/a" 1')


def test_timeout_from_cmdline():
    assert ss.timeout_from_cmdline("root=/dev/vda1 console=ttyS0", 120) == 120
    assert ss.timeout_from_cmdline("quiet vmhost.secrets_timeout=30 ro", 120) == 30
    assert ss.timeout_from_cmdline("vmhost.secrets_timeout=abc", 120) == 120
    assert ss.timeout_from_cmdline("vmhost.secrets_timeout=0", 120) == 120


path_part = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
                    min_size=1, max_size=20).filter(lambda p: p not in (".", ".."))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(path_part, min_size=1, max_size=5),
                          st.integers(0, 10 ** 6), st.integers(0, 0o7777)),
                max_size=20, unique_by=lambda e: tuple(e[0])),
       st.binary(max_size=50))
def test_hypothesis_round_trip(entries, tail):
    files = [("/" + "/".join(parts), size, mode) for parts, size, mode in entries]
    header = ss.encode_header(files)
    # Split the stream at every kind of boundary: the incremental reader must agree.
    reader = ss.SexpReader()
    stream = header + tail
    result = None
    for i in range(0, len(stream), 7):
        result = reader.feed(stream[i:i + 7])
        if result is not None:
            break
    value, rest = result
    assert ss.parse_header(value, max_bytes=10 ** 9) == files
    full_value, full_rest = ss.parse_sexp(stream)
    assert full_value == value and full_rest == tail
    # What the chunked reader left over is exactly the start of the tail.
    assert tail.startswith(rest)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_hypothesis_string_round_trip(text):
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return
    value, rest = ss.parse_sexp(("(%s)" % ss.encode_string(text)).encode("utf-8"))
    assert value == [text] and rest == b""


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_hypothesis_garbage_never_crashes(data):
    try:
        result = ss.SexpReader(max_bytes=150).feed(data)
        if result is not None:
            ss.parse_header(result[0])
    except ss.ProtocolError:
        pass


# ------------------------------------------------------------- transfers

def run_receiver(stream, guest, results, **kwargs):
    try:
        results["written"] = ss.serve(stream, str(guest), time.monotonic() + 10, **kwargs)
    except Exception as exc:  # pylint: disable=broad-except
        results["error"] = exc


def test_round_trip_socketpair(tmp_path):
    root = make_secret_root(tmp_path)
    guest = tmp_path / "guest"
    guest.mkdir()
    (guest / "etc").mkdir()
    (guest / "etc" / "ssh").mkdir()
    (guest / "etc" / "ssh" / "ssh_host_ed25519_key").write_text("old")
    host_end, guest_end = socket.socketpair()
    results = {}
    thread = threading.Thread(target=run_receiver, args=(ss.Stream(guest_end.fileno(), guest_end), guest, results))
    thread.start()
    sockdir = tmp_path / "s"
    sockdir.mkdir()
    # send_secrets connects by itself: give it a listener handing over host_end's peer.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sockdir / "sec.sock"))
    listener.listen(1)

    def relay():
        conn, dummy = listener.accept()
        fds = {conn: host_end, host_end: conn}
        while True:
            ready, _w, _x = select.select(list(fds), [], [], 5)
            if not ready:
                return
            for src in ready:
                data = src.recv(65536)
                if not data:
                    return
                fds[src].sendall(data)
    relay_thread = threading.Thread(target=relay, daemon=True)
    relay_thread.start()
    count = ss.send_secrets(("unix", str(sockdir / "sec.sock")), str(root), timeout=10)
    thread.join(10)
    assert "error" not in results, results
    assert count == len(FILES)
    assert sorted(results["written"]) == sorted("/" + rel for rel in FILES)
    check_installed(guest)
    host_end.close()
    guest_end.close()
    listener.close()


class FakeVirtioPort:
    """A pty pair standing in for a virtio-serial port: a character device the
    guest opens read-write (raw mode, so bytes pass untouched), whose other end
    a host process reaches through a unix socket relayed to the pty master.
    POLLHUP-until-connected is exercised with a pipe in the test below."""

    def __init__(self, sockpath):
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        # Kept open: with no slave open, reading the master fails with EIO.
        self.slave_name = os.ttyname(self.slave)
        self.sockpath = sockpath
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(sockpath)
        self.listener.listen(1)
        self.thread = threading.Thread(target=self.relay, daemon=True)
        self.thread.start()

    def relay(self):
        conn, dummy = self.listener.accept()
        while True:
            ready, _w, _x = select.select([conn, self.master], [], [], 10)
            if not ready:
                return
            for src in ready:
                try:
                    data = src.recv(65536) if src is conn else os.read(self.master, 65536)
                except OSError:
                    return
                if not data:
                    return
                if src is conn:
                    view = memoryview(data)
                    while view:  # the pty takes about 4 KiB at a time
                        view = view[os.write(self.master, view):]
                else:
                    conn.sendall(data)


def test_wait_for_host_polls_until_hup_clears(tmp_path):
    # A pipe whose write end is closed reports POLLHUP, like an unconnected port.
    rfd, wfd = os.pipe()
    os.close(wfd)
    with pytest.raises(ss.TransferTimeout, match="no host connected"):
        ss.wait_for_host(rfd, time.monotonic() + 0.5, interval=0.05)
    os.close(rfd)
    # Once the peer exists, no POLLHUP: it returns at once.
    rfd, wfd = os.pipe()
    start = time.monotonic()
    ss.wait_for_host(wfd, time.monotonic() + 5)
    assert time.monotonic() - start < 1
    os.close(rfd)
    os.close(wfd)


def test_round_trip_over_pty_cli(tmp_path):
    """receive --device on a pty (raw mode) while send --unix talks to the relay."""
    root = make_secret_root(tmp_path)
    guest = tmp_path / "guest"
    guest.mkdir()
    port = FakeVirtioPort(str(tmp_path / "sec.sock"))
    receiver = subprocess.Popen(
        [sys.executable, PROGRAM, "receive", "--device", port.slave_name, "--root", str(guest),
         "--timeout", "20", "--on-timeout", "fail", "--cmdline", "/dev/null"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sender = subprocess.run(
        [sys.executable, PROGRAM, "send", "--unix", port.sockpath, "--secret-root", str(root),
         "--timeout", "20"], capture_output=True, timeout=60, check=False)
    out, err = receiver.communicate(timeout=30)
    assert sender.returncode == 0, sender.stderr
    assert receiver.returncode == 0, err
    assert b"installed 5 files" in out
    check_installed(guest)


def test_receive_tcp_and_send_tcp_cli(tmp_path):
    root = make_secret_root(tmp_path)
    guest = tmp_path / "guest"
    guest.mkdir()
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    # Start the sender first: it must retry until the guest listens.
    sender = subprocess.Popen(
        [sys.executable, PROGRAM, "send", "--tcp", "127.0.0.1:%d" % port, "--secret-root", str(root),
         "--timeout", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1)
    receiver = subprocess.run(
        [sys.executable, PROGRAM, "receive", "--tcp-listen", "127.0.0.1:%d" % port, "--root", str(guest),
         "--timeout", "20", "--on-timeout", "fail", "--cmdline", "/dev/null"],
        capture_output=True, timeout=60, check=False)
    out, err = sender.communicate(timeout=30)
    assert receiver.returncode == 0, receiver.stderr
    assert sender.returncode == 0, err
    assert b"delivered 5 files" in out
    check_installed(guest)


def hostile_exchange(tmp_path, payload, guest, close=True):
    """Feed PAYLOAD to a receiver after its greeting; return (error, reply bytes)."""
    host_end, guest_end = socket.socketpair()
    results = {}
    thread = threading.Thread(target=run_receiver, args=(ss.Stream(guest_end.fileno(), guest_end), guest, results),
                              kwargs={"io_timeout": 3})
    thread.start()
    greeting = host_end.recv(100)
    assert greeting == ss.GREETING
    host_end.sendall(payload)
    if close:
        host_end.shutdown(socket.SHUT_WR)
    thread.join(10)
    host_end.settimeout(2)
    try:
        reply = host_end.recv(4096)
    except socket.timeout:
        reply = b""
    host_end.close()
    guest_end.close()
    return results.get("error"), reply


def test_symlinked_parent_refused(tmp_path):
    guest = tmp_path / "guest"
    guest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (guest / "etc").symlink_to(outside)
    payload = ss.encode_header([("/etc/ssh/key", 3, 0o600)]) + b"abc"
    error, reply = hostile_exchange(tmp_path, payload, guest)
    assert isinstance(error, ss.ProtocolError) and "symlink" in str(error)
    assert b"(error " in reply and b"symlink" in reply
    assert os.listdir(outside) == []


def test_symlinked_deeper_parent_refused(tmp_path):
    guest = tmp_path / "guest"
    (guest / "etc").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (guest / "etc" / "ssh").symlink_to(outside)
    payload = ss.encode_header([("/etc/ok", 1, 0o644), ("/etc/ssh/key", 3, 0o600)]) + b"x" + b"abc"
    error, _reply = hostile_exchange(tmp_path, payload, guest)
    assert "symlink" in str(error)
    assert os.listdir(outside) == []
    assert not (guest / "etc" / "ok").exists()


def test_symlink_target_is_replaced_not_followed(tmp_path):
    guest = tmp_path / "guest"
    (guest / "etc").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (guest / "etc" / "key").symlink_to(victim)
    error, reply = hostile_exchange(tmp_path, ss.encode_header([("/etc/key", 3, 0o600)]) + b"new", guest)
    assert error is None and b"(received 1)" in reply
    assert victim.read_text() == "keep"
    assert not (guest / "etc" / "key").is_symlink()
    assert (guest / "etc" / "key").read_text() == "new"


def test_truncated_stream_installs_nothing(tmp_path):
    guest = tmp_path / "guest"
    guest.mkdir()
    payload = ss.encode_header([("/etc/a", 3, 0o600), ("/etc/b", 100, 0o600)]) + b"abc" + b"x" * 50
    error, reply = hostile_exchange(tmp_path, payload, guest)
    assert "50 bytes short in /etc/b" in str(error)
    assert b"short" in reply
    assert os.listdir(guest / "etc") == []


def test_stalled_stream_times_out(tmp_path):
    guest = tmp_path / "guest"
    guest.mkdir()
    payload = ss.encode_header([("/etc/a", 10, 0o600)]) + b"abc"
    error, _reply = hostile_exchange(tmp_path, payload, guest, close=False)
    assert isinstance(error, ss.TransferTimeout)
    assert os.listdir(guest / "etc") == []


def test_header_without_closing_paren_over_socket(tmp_path):
    guest = tmp_path / "guest"
    guest.mkdir()
    payload = b"(secrets (version 0) (files (" + b'("/a" 1 384) ' * 30000
    error, _reply = hostile_exchange(tmp_path, payload, guest)
    assert "without its closing paren" in str(error)


def test_existing_directory_target_refused(tmp_path):
    guest = tmp_path / "guest"
    (guest / "etc" / "key").mkdir(parents=True)
    error, _reply = hostile_exchange(tmp_path, ss.encode_header([("/etc/key", 1, 0o600)]) + b"k", guest)
    assert "is a directory" in str(error)


def test_sender_refuses_symlinks_and_special_files(tmp_path):
    root = make_secret_root(tmp_path)
    (root / "etc" / "link").symlink_to("/etc/passwd")
    with pytest.raises(ss.ProtocolError, match="refusing symlink"):
        ss.collect_secrets(str(root))
    (root / "etc" / "link").unlink()
    os.mkfifo(str(root / "etc" / "fifo"))
    with pytest.raises(ss.ProtocolError, match="special file"):
        ss.collect_secrets(str(root))


def test_collect_secrets_paths_and_modes(tmp_path):
    root = make_secret_root(tmp_path)
    found = ss.collect_secrets(str(root))
    assert [g for g, _h, _s, _m in found] == sorted("/" + rel for rel in FILES)
    assert {g: (s, m) for g, _h, s, m in found} == {"/" + r: (len(d), m) for r, (d, m) in FILES.items()}


def test_send_cli_times_out_with_one_line(tmp_path):
    root = make_secret_root(tmp_path)
    proc = subprocess.run(
        [sys.executable, PROGRAM, "send", "--unix", str(tmp_path / "none.sock"), "--secret-root", str(root),
         "--timeout", "1"], capture_output=True, timeout=30, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "could not connect" in lines[0]


def test_receive_cli_timeout_fail_and_cmdline_override(tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 vmhost.secrets_timeout=1\n")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, PROGRAM, "receive", "--device", str(tmp_path / "no-such-port"), "--root", str(tmp_path),
         "--timeout", "60", "--on-timeout", "fail", "--cmdline", str(cmdline)],
        capture_output=True, timeout=30, check=False)
    assert proc.returncode == 1
    assert time.monotonic() - start < 15
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "did not appear in time" in lines[0]
    assert b"waiting up to 1s" in proc.stdout
