# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Secret service: deliver a build VM's keys from the host at boot.

Private to vmhost.virt: other collections must not import this module.  It is
also a program (Python standard library only, python3.9+): the roles copy it
to ``/usr/local/libexec/vmhost-virt/secret-service`` and run it as
``/usr/bin/python3 /usr/local/libexec/vmhost-virt/secret-service send|receive``.

Wire format (the one Guix's secret service speaks, version 0):

1. The guest (receiver) greets: ``(secret-service-server (version 0))``.
2. The host (sender) answers with one s-expression,
   ``(secrets (version 0) (files (("/etc/ssh/ssh_host_ed25519_key" 411 384) ...)))``
   -- guest path, size in bytes, mode (decimal) -- immediately followed by the
   raw bytes of each file, in header order, with nothing in between.
3. Extension (a Guix sender never reads it, so it is harmless to it): once
   everything is on disk the guest replies
   ``(secret-service-server (version 0) (received N))``, or
   ``(secret-service-server (version 0) (error "why"))`` when it refuses.  Over
   virtio-serial the host never sees end-of-file, so this is how ``send``
   knows the guest has everything before it closes the socket (QEMU drops
   unread data when its socket peer hangs up).

Strings are written the way Guile's ``write`` does: ``\\"`` and ``\\\\``
escaped, control characters as ``\\n``/``\\t``/... or ``\\xHH``; the parser
also reads Guile's ``\\0``, ``\\uHHHH`` and ``\\UHHHHHH`` forms.  A Guix
sender writes the whole ``st_mode`` (e.g. 33152 for a 0600 regular file):
the file-type bits are accepted when they say "regular file" and ignored.

Everything the receiver reads is bounded: header bytes, s-expression nesting,
string length, file count, per-file and total size, path length and depth.
Paths are confined to the root: no ``..``, no empty or ``.`` components, no
symlink on the way (each parent is opened with ``O_NOFOLLOW`` relative to its
parent's directory descriptor).  Files are first written to temporary files
next to their targets (mode set before content, fsync) and only renamed into
place once every file arrived, so a truncated stream changes nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import binascii
import errno
import os
import select
import socket
import stat
import subprocess
import sys
import time

PROGRAM = "secret-service"
GREETING_HEAD = "secret-service-server"
PROTOCOL_VERSION = 0
GREETING = b"(secret-service-server (version 0))"

DEFAULT_SEND_TIMEOUT = 600
DEFAULT_RECEIVE_TIMEOUT = 120
DEFAULT_MAX_FILES = 256
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
MAX_HEADER_BYTES = 256 * 1024
MAX_DEPTH = 8
MAX_STRING = 4096
MAX_PATH = 4096
MAX_COMPONENT = 255
MAX_PATH_DEPTH = 32
MAX_ATOM = 64
IO_TIMEOUT = 60
CMDLINE_KEY = "vmhost.secrets_timeout"
VIRTIO_DEVICE = "/dev/virtio-ports/org.vmhost.secrets.0"
TCP_PORT = 1004
CHUNK = 65536


class ProtocolError(Exception):
    """Malformed, oversized or refused input; str() is the one-line reason."""


class TransferTimeout(Exception):
    """The peer did not connect, greet or send in time."""


class Symbol(str):
    """A bare s-expression atom (as opposed to a string)."""

    __slots__ = ()

    def __repr__(self):
        return "Symbol(%s)" % str.__repr__(self)


# ---------------------------------------------------------------- encoding

_NAMED_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\n": "\\n",
    "\t": "\\t",
    "\r": "\\r",
    "\a": "\\a",
    "\f": "\\f",
    "\v": "\\v",
    "\b": "\\b",
}


def encode_string(text):
    """Return TEXT as a Guile ``write``-style string literal (str)."""
    out = ['"']
    for char in text:
        if char in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append("\\x%02x" % ord(char))
        elif 0xD800 <= ord(char) <= 0xDFFF:
            raise ProtocolError("path is not valid UTF-8: %r" % text)
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def encode_header(files):
    """FILES: iterable of (guest_path, size, mode).  Return the header bytes."""
    items = []
    for path, size, mode in files:
        items.append("(%s %d %d)" % (encode_string(path), size, mode))
    text = "(secrets (version %d) (files (%s)))" % (PROTOCOL_VERSION, " ".join(items))
    return text.encode("utf-8")


def encode_reply(count=None, error=None):
    """The guest's final reply (this collection's extension)."""
    if error is not None:
        body = "(error %s)" % encode_string(error.replace("\n", " "))
    else:
        body = "(received %d)" % count
    return ("(%s (version %d) %s)" % (GREETING_HEAD, PROTOCOL_VERSION, body)).encode("utf-8")


# ----------------------------------------------------------------- parsing

_DELIMS = b" \t\r\n\f\v()\";"
_SIMPLE_UNESCAPE = {
    "\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r", "a": "\a",
    "f": "\f", "v": "\v", "b": "\b", "0": "\0",
}


def _unescape(raw):
    """Decode the bytes between the quotes of a string literal."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("string is not valid UTF-8")
    out = []
    i = 0
    length = len(text)
    while i < length:
        char = text[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        i += 1
        if i >= length:
            raise ProtocolError("dangling backslash in string")
        esc = text[i]
        if esc in _SIMPLE_UNESCAPE:
            out.append(_SIMPLE_UNESCAPE[esc])
            i += 1
        elif esc in "xuU":
            i += 1
            if esc == "x":
                # Guile's default (non-R6RS) reader: exactly two hex digits.
                digits, i = text[i:i + 2], i + 2
                if len(digits) != 2:
                    raise ProtocolError("bad \\x escape in string")
            else:
                width = 4 if esc == "u" else 6
                digits, i = text[i:i + width], i + width
                if len(digits) != width:
                    raise ProtocolError("bad \\%s escape in string" % esc)
            try:
                code = int(digits, 16)
            except ValueError:
                raise ProtocolError("bad \\%s escape in string" % esc)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise ProtocolError("escape out of range in string")
            out.append(chr(code))
        elif esc == "\n":
            # Guile's line continuation: skip the newline and leading blanks.
            i += 1
            while i < length and text[i] in " \t":
                i += 1
        else:
            raise ProtocolError("unknown escape \\%s in string" % esc)
    return "".join(out)


def _atom(raw):
    if len(raw) > MAX_ATOM:
        raise ProtocolError("atom too long")
    text = raw.decode("ascii", "replace")
    body = text[1:] if text[:1] in "+-" else text
    if body.isdigit() and body.isascii():
        return int(text)
    return Symbol(text)


class SexpReader:
    """Incremental, bounded reader of ONE s-expression (a list) from bytes.

    ``feed(data)`` returns None while the datum is incomplete, else
    ``(value, rest)`` where ``rest`` are the bytes after the closing paren.
    """

    def __init__(self, max_bytes=MAX_HEADER_BYTES, max_depth=MAX_DEPTH):
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.buf = bytearray()
        self.pos = 0
        self.stack = []
        self.started = False
        self.token = None  # bytearray of the atom or string being read
        self.in_string = False
        self.escape = False

    def _finish_atom(self):
        if self.token is not None:
            if not self.stack:
                raise ProtocolError("expected '(' at the start of the message")
            self.stack[-1].append(_atom(bytes(self.token)))
            self.token = None

    def feed(self, data):
        # The buffer grows by at most one read beyond max_bytes: scanning stops
        # at max_bytes, and bytes after the closing paren belong to the files.
        self.buf.extend(data)
        buf = self.buf
        while self.pos < len(buf):
            if self.pos >= self.max_bytes:
                raise ProtocolError("header longer than %d bytes without its closing paren" % self.max_bytes)
            byte = buf[self.pos:self.pos + 1]
            self.pos += 1
            if self.in_string:
                if self.escape:
                    self.escape = False
                    self.token.extend(byte)
                elif byte == b"\\":
                    self.escape = True
                    self.token.extend(byte)
                elif byte == b'"':
                    self.in_string = False
                    self.stack[-1].append(_unescape(bytes(self.token)))
                    self.token = None
                else:
                    self.token.extend(byte)
                if self.token is not None and len(self.token) > MAX_STRING:
                    raise ProtocolError("string longer than %d bytes" % MAX_STRING)
                continue
            if byte in (b" ", b"\t", b"\r", b"\n", b"\f", b"\v"):
                self._finish_atom()
            elif byte == b"(":
                self._finish_atom()
                if len(self.stack) >= self.max_depth:
                    raise ProtocolError("s-expression nested deeper than %d" % self.max_depth)
                self.stack.append([])
                self.started = True
            elif byte == b")":
                self._finish_atom()
                if not self.stack:
                    raise ProtocolError("unbalanced ')'")
                done = self.stack.pop()
                if not self.stack:
                    return done, bytes(buf[self.pos:])
                self.stack[-1].append(done)
            elif byte == b'"':
                self._finish_atom()
                if not self.stack:
                    raise ProtocolError("expected '(' at the start of the message")
                self.in_string = True
                self.token = bytearray()
            elif byte in (b";", b"#", b"'", b"`", b",", b"[", b"]", b"{", b"}", b"|"):
                raise ProtocolError("unsupported syntax %r in header" % byte.decode("latin-1"))
            else:
                if not self.stack:
                    raise ProtocolError("expected '(' at the start of the message")
                if self.token is None:
                    self.token = bytearray()
                self.token.extend(byte)
                if len(self.token) > MAX_ATOM:
                    raise ProtocolError("atom too long")
        return None


def parse_sexp(data, max_bytes=MAX_HEADER_BYTES):
    """Parse one complete s-expression from DATA; return (value, rest)."""
    reader = SexpReader(max_bytes=max_bytes)
    result = reader.feed(data)
    if result is None:
        raise ProtocolError("truncated s-expression")
    return result


def validate_guest_path(path):
    """Return the components of PATH (absolute, normalised) or raise."""
    if not isinstance(path, str) or isinstance(path, Symbol):
        raise ProtocolError("file name is not a string: %r" % (path,))
    if len(path.encode("utf-8")) > MAX_PATH:
        raise ProtocolError("path longer than %d bytes" % MAX_PATH)
    if not path.startswith("/"):
        raise ProtocolError("path is not absolute: %r" % path)
    if "\0" in path:
        raise ProtocolError("path contains a NUL byte: %r" % path)
    parts = path.split("/")[1:]
    if len(parts) > MAX_PATH_DEPTH:
        raise ProtocolError("path deeper than %d components: %r" % (MAX_PATH_DEPTH, path))
    for part in parts:
        if part in ("", ".", ".."):
            raise ProtocolError("path escapes or is not normalised: %r" % path)
        if len(part.encode("utf-8")) > MAX_COMPONENT:
            raise ProtocolError("path component longer than %d bytes: %r" % (MAX_COMPONENT, path))
    return parts


def _normalise_mode(mode, path):
    if isinstance(mode, bool) or not isinstance(mode, int) or mode < 0:
        raise ProtocolError("bad mode %r for %s" % (mode, path))
    kind = stat.S_IFMT(mode)
    if kind not in (0, stat.S_IFREG) or mode > 0o177777:
        raise ProtocolError("mode %r for %s is not a regular file's" % (mode, path))
    return mode & 0o7777


def parse_header(value, max_files=DEFAULT_MAX_FILES, max_bytes=DEFAULT_MAX_BYTES):
    """Check a parsed ``(secrets ...)`` datum; return [(path, size, mode)]."""
    if not isinstance(value, list) or len(value) != 3 or value[0] != Symbol("secrets") \
            or not isinstance(value[0], Symbol):
        raise ProtocolError("not a (secrets (version 0) (files ...)) message")
    version, files = value[1], value[2]
    if not (isinstance(version, list) and len(version) == 2 and version[0] == "version"
            and isinstance(version[0], Symbol)):
        raise ProtocolError("missing (version N) in secrets message")
    if version[1] != PROTOCOL_VERSION or isinstance(version[1], bool):
        raise ProtocolError("unsupported secrets version %r" % (version[1],))
    if not (isinstance(files, list) and len(files) == 2 and files[0] == "files"
            and isinstance(files[0], Symbol) and isinstance(files[1], list)):
        raise ProtocolError("missing (files (...)) in secrets message")
    entries = files[1]
    if len(entries) > max_files:
        raise ProtocolError("%d files announced, at most %d allowed" % (len(entries), max_files))
    result = []
    seen = set()
    total = 0
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 3):
            raise ProtocolError("file entry is not (PATH SIZE MODE): %r" % (entry,))
        path, size, mode = entry
        validate_guest_path(path)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ProtocolError("bad size %r for %s" % (size, path))
        if size > max_bytes:
            raise ProtocolError("%s is %d bytes, at most %d allowed" % (path, size, max_bytes))
        total += size
        if total > max_bytes:
            raise ProtocolError("secrets total more than %d bytes" % max_bytes)
        if path in seen:
            raise ProtocolError("%s announced twice" % path)
        seen.add(path)
        result.append((str(path), size, _normalise_mode(mode, path)))
    return result


def check_greeting(value):
    """Accept ``(secret-service-server (version N ...))`` as Guix does."""
    if (isinstance(value, list) and len(value) >= 2 and isinstance(value[0], Symbol)
            and value[0] == GREETING_HEAD and isinstance(value[1], list)
            and value[1][:1] == ["version"]):
        return value[1][1:]
    raise ProtocolError("invalid greeting from the guest: %r" % (value,))


def parse_reply(value):
    """Return ('received', N) or ('error', why) for the guest's final reply."""
    if isinstance(value, list) and len(value) == 3 and value[0] == GREETING_HEAD \
            and isinstance(value[2], list) and len(value[2]) == 2:
        kind, arg = value[2]
        if kind == "received" and isinstance(arg, int):
            return ("received", arg)
        if kind == "error" and isinstance(arg, str):
            return ("error", str(arg))
    raise ProtocolError("invalid reply from the guest: %r" % (value,))


# ------------------------------------------------------------------ streams

class Stream:
    """Blocking reads/writes on a socket or a device fd, with deadlines."""

    def __init__(self, fd, owner=None):
        self.fd = fd
        self.owner = owner  # keeps a socket object alive
        self.pending = b""

    def _wait(self, events, deadline, what):
        poller = select.poll()
        poller.register(self.fd, events)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransferTimeout("timed out %s" % what)
            ready = poller.poll(min(left, 1.0) * 1000)
            if ready:
                return ready[0][1]

    def read(self, size, deadline, what="reading"):
        if self.pending:
            data, self.pending = self.pending[:size], self.pending[size:]
            return data
        self._wait(select.POLLIN, deadline, what)
        try:
            return os.read(self.fd, size)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EINTR):
                return self.read(size, deadline, what)
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                return b""
            raise

    def unread(self, data):
        self.pending = data + self.pending

    def write(self, data, deadline, what="writing"):
        view = memoryview(data)
        while view:
            self._wait(select.POLLOUT, deadline, what)
            try:
                written = os.write(self.fd, view)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    continue
                raise
            view = view[written:]

    def read_sexp(self, deadline, what, max_bytes=MAX_HEADER_BYTES):
        reader = SexpReader(max_bytes=max_bytes)
        while True:
            data = self.read(CHUNK, deadline, what)
            if not data:
                raise ProtocolError("connection closed while %s" % what)
            result = reader.feed(data)
            if result is not None:
                value, rest = result
                self.unread(rest)
                return value


# ------------------------------------------------------------- the sender

def collect_secrets(secret_root):
    """Return [(guest_path, host_path, size, mode)] sorted by guest path."""
    root = os.path.abspath(secret_root)
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode):
        raise ProtocolError("secret root %s is not a directory" % root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in list(dirnames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                raise ProtocolError("refusing symlink %s in the secret root" % full)
        for name in filenames:
            full = os.path.join(dirpath, name)
            fst = os.lstat(full)
            if stat.S_ISLNK(fst.st_mode):
                raise ProtocolError("refusing symlink %s in the secret root" % full)
            if not stat.S_ISREG(fst.st_mode):
                raise ProtocolError("refusing special file %s in the secret root" % full)
            guest = "/" + os.path.relpath(full, root)
            try:
                guest.encode("utf-8")
            except UnicodeEncodeError:
                raise ProtocolError("file name %r is not valid UTF-8" % full)
            validate_guest_path(guest)
            found.append((guest, full, fst.st_size, stat.S_IMODE(fst.st_mode)))
    found.sort()
    return found


def _connect(target, deadline):
    """Connect to ('unix', path) or ('tcp', host, port), retrying."""
    last = None
    while time.monotonic() < deadline:
        try:
            if target[0] == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(max(0.1, min(5.0, deadline - time.monotonic())))
                sock.connect(target[1])
            else:
                sock = socket.create_connection(
                    (target[1], target[2]), timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            sock.setblocking(True)
            sock.settimeout(None)
            return sock
        except OSError as exc:
            last = exc
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    raise TransferTimeout("could not connect to %s: %s" % (_describe(target), last))


def _describe(target):
    return target[1] if target[0] == "unix" else "%s:%d" % (target[1], target[2])


def send_secrets(target, secret_root, timeout=DEFAULT_SEND_TIMEOUT, log=None):
    """Deliver SECRET_ROOT to the guest at TARGET; return the file count.

    Retries connecting (and re-connecting when the connection closes before
    the greeting, as QEMU's TCP forwarding does while the guest is not
    listening yet) until TIMEOUT seconds have passed.
    """
    log = log or (lambda msg: None)
    files = collect_secrets(secret_root)
    deadline = time.monotonic() + timeout
    while True:
        sock = _connect(target, deadline)
        stream = Stream(sock.fileno(), sock)
        try:
            greeting = stream.read_sexp(deadline, "waiting for the guest's greeting", 4096)
        except ProtocolError as exc:
            sock.close()
            if "connection closed" in str(exc) and time.monotonic() < deadline:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                continue
            raise
        except TransferTimeout:
            sock.close()
            raise TransferTimeout("timed out waiting for the guest's greeting on %s" % _describe(target))
        break
    try:
        check_greeting(greeting)
        log("guest greeted; sending %d files" % len(files))
        stream.write(encode_header([(g, s, m) for g, _h, s, m in files]), deadline, "sending the header")
        for guest, host, size, _mode in files:
            with open(host, "rb") as handle:
                left = size
                while left:
                    data = handle.read(min(CHUNK, left))
                    if not data:
                        raise ProtocolError("%s shrank while it was being sent" % host)
                    stream.write(data, deadline, "sending %s" % guest)
                    left -= len(data)
        # No shutdown(SHUT_WR): QEMU's socket chardev treats end-of-file as a
        # hang-up and the guest's reply would be lost.
        try:
            reply = stream.read_sexp(deadline, "waiting for the guest's acknowledgement", 4096)
        except ProtocolError as exc:
            if "connection closed" in str(exc):
                # A Guix guest closes without replying once it has read everything.
                log("guest closed the connection without a reply (Guix guest)")
                return len(files)
            raise
        kind, arg = parse_reply(reply)
        if kind == "error":
            raise ProtocolError("guest refused the secrets: %s" % arg)
        if arg != len(files):
            raise ProtocolError("guest stored %d files, %d were sent" % (arg, len(files)))
        return len(files)
    finally:
        sock.close()


# ----------------------------------------------------------- the receiver

def _open_dir(parent_fd, name, create):
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
        try:
            os.mkdir(name, 0o755, dir_fd=parent_fd)
        except FileExistsError:
            pass
        return os.open(name, flags, dir_fd=parent_fd)


def _open_parent(root_fd, parts, path):
    """Open the directory that will hold PATH, refusing symlinks on the way."""
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            try:
                new = _open_dir(fd, part, True)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise ProtocolError("refusing %s: %s is a symlink or not a directory" % (path, part))
                raise
            os.close(fd)
            fd = new
        return fd
    except BaseException:
        os.close(fd)
        raise


class _Pending:
    def __init__(self, path, dir_fd, name, temp):
        self.path = path
        self.dir_fd = dir_fd
        self.name = name
        self.temp = temp


def receive_into(stream, root, deadline, max_files=DEFAULT_MAX_FILES, max_bytes=DEFAULT_MAX_BYTES, log=None):
    """Read a secrets message from STREAM and install it under ROOT.

    Return the list of guest paths written.  Nothing is renamed into place
    unless every file arrived whole.
    """
    log = log or (lambda msg: None)
    value = stream.read_sexp(deadline, "reading the secrets header")
    files = parse_header(value, max_files=max_files, max_bytes=max_bytes)
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    pending = []
    try:
        # Refuse symlinked parents before reading any content.
        for path, _size, _mode in files:
            os.close(_open_parent(root_fd, validate_guest_path(path), path))
        for path, size, mode in files:
            parts = validate_guest_path(path)
            dir_fd = _open_parent(root_fd, parts, path)
            name = parts[-1]
            temp = ".%s.secret-%s" % (name[:200], binascii.hexlify(os.urandom(6)).decode())
            item = _Pending(path, dir_fd, name, temp)
            pending.append(item)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dir_fd)
            try:
                os.fchmod(fd, mode)
                left = size
                while left:
                    data = stream.read(min(CHUNK, left), deadline, "reading %s" % path)
                    if not data:
                        raise ProtocolError("stream ended %d bytes short in %s" % (left, path))
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    left -= len(data)
                os.fsync(fd)
            finally:
                os.close(fd)
        for item in pending:
            try:
                st = os.lstat(item.name, dir_fd=item.dir_fd)
                if stat.S_ISDIR(st.st_mode):
                    raise ProtocolError("refusing %s: it is a directory in the guest" % item.path)
            except FileNotFoundError:
                pass
        for item in pending:
            os.rename(item.temp, item.name, src_dir_fd=item.dir_fd, dst_dir_fd=item.dir_fd)
            item.temp = None
            os.fsync(item.dir_fd)
            log("installed %s" % item.path)
        return [item.path for item in pending]
    finally:
        for item in pending:
            if item.temp is not None:
                try:
                    os.unlink(item.temp, dir_fd=item.dir_fd)
                except OSError:
                    pass
            os.close(item.dir_fd)
        os.close(root_fd)


def serve(stream, root, deadline, io_timeout=IO_TIMEOUT, **limits):
    """Greet, receive, reply.  Return the paths written; raise on failure."""
    stream.write(GREETING, deadline, "greeting the host")
    io_deadline = time.monotonic() + io_timeout
    try:
        written = receive_into(stream, root, io_deadline, **limits)
    except (ProtocolError, TransferTimeout, OSError) as exc:
        try:
            stream.write(encode_reply(error=str(exc)), time.monotonic() + 5, "replying")
        except (OSError, TransferTimeout, ProtocolError):
            pass
        raise
    try:
        stream.write(encode_reply(count=len(written)), time.monotonic() + 5, "replying")
    except (OSError, TransferTimeout):
        pass  # A Guix host has already closed the connection.
    return written


def wait_for_host(fd, deadline, interval=0.2):
    """Virtio-serial: poll reports POLLHUP until a host process connects."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLOUT)
    while True:
        events = 0
        for _fd, ev in poller.poll(0):
            events |= ev
        if events and not events & select.POLLHUP:
            return
        if time.monotonic() >= deadline:
            raise TransferTimeout("no host connected to the secrets port in time")
        time.sleep(interval)


def receive_device(device, root, deadline, **limits):
    while not os.path.exists(device):
        if time.monotonic() >= deadline:
            raise TransferTimeout("%s did not appear in time" % device)
        time.sleep(0.2)
    fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        wait_for_host(fd, deadline)
        return serve(Stream(fd), root, deadline, **limits)
    finally:
        os.close(fd)


def receive_tcp(address, root, deadline, **limits):
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(1)
        left = deadline - time.monotonic()
        ready, _w, _x = select.select([listener], [], [], max(0.0, left))
        if not ready:
            raise TransferTimeout("no host connected to port %d in time" % port)
        conn, _peer = listener.accept()
    finally:
        listener.close()
    with conn:
        conn.setblocking(True)
        return serve(Stream(conn.fileno(), conn), root, deadline, **limits)


def timeout_from_cmdline(text, default):
    """``vmhost.secrets_timeout=N`` on the kernel command line wins."""
    value = default
    for word in text.split():
        if word.startswith(CMDLINE_KEY + "="):
            raw = word.split("=", 1)[1]
            if raw.isdigit() and 0 < int(raw) <= 86400:
                value = int(raw)
    return value


# -------------------------------------------------------------------- CLI

def _parse_hostport(text, default_host):
    if text.isdigit():
        host, port = default_host, text
    else:
        host, _sep, port = text.rpartition(":")
        host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("bad port in %r" % text)
    return host, int(port)


def build_parser():
    parser = argparse.ArgumentParser(prog=PROGRAM, description="Deliver build-VM secrets (Guix secret-service wire format).")
    sub = parser.add_subparsers(dest="command")
    sub.required = True
    snd = sub.add_parser("send", help="host side: send every file under --secret-root")
    where = snd.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix", metavar="PATH")
    where.add_argument("--tcp", metavar="HOST:PORT", type=lambda t: _parse_hostport(t, "127.0.0.1"))
    snd.add_argument("--secret-root", required=True, metavar="DIR")
    snd.add_argument("--timeout", type=float, default=DEFAULT_SEND_TIMEOUT)
    rcv = sub.add_parser("receive", help="guest side: wait for the host's secrets")
    src = rcv.add_mutually_exclusive_group(required=True)
    src.add_argument("--device", metavar="PATH")
    src.add_argument("--tcp-listen", metavar="[ADDR:]PORT", type=lambda t: _parse_hostport(t, "0.0.0.0"))
    rcv.add_argument("--root", default="/", metavar="DIR")
    rcv.add_argument("--timeout", type=float, default=DEFAULT_RECEIVE_TIMEOUT)
    rcv.add_argument("--on-timeout", choices=("reboot", "fail"), default="reboot")
    rcv.add_argument("--max-files", type=int, default=DEFAULT_MAX_FILES)
    rcv.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    rcv.add_argument("--cmdline", default="/proc/cmdline", help=argparse.SUPPRESS)
    return parser


def _out(msg):
    sys.stdout.write("%s: %s\n" % (PROGRAM, msg))
    sys.stdout.flush()


def _say(msg):
    sys.stderr.write("%s: %s\n" % (PROGRAM, msg))
    sys.stderr.flush()


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "send":
        target = ("unix", args.unix) if args.unix else ("tcp",) + args.tcp
        try:
            count = send_secrets(target, args.secret_root, args.timeout)
        except (ProtocolError, TransferTimeout, OSError) as exc:
            _say("sending secrets to %s failed: %s" % (_describe(target), exc))
            return 1
        _out("delivered %d files to %s" % (count, _describe(target)))
        return 0
    timeout = args.timeout
    try:
        with open(args.cmdline) as handle:
            timeout = timeout_from_cmdline(handle.read(), timeout)
    except OSError:
        pass
    deadline = time.monotonic() + timeout
    limits = {"max_files": args.max_files, "max_bytes": args.max_bytes}
    _out("waiting up to %ds for secrets on %s" % (timeout, args.device or "%s:%d" % args.tcp_listen))
    try:
        if args.device:
            written = receive_device(args.device, args.root, deadline, **limits)
        else:
            written = receive_tcp(args.tcp_listen, args.root, deadline, **limits)
    except (ProtocolError, TransferTimeout, OSError) as exc:
        _say("no secrets installed: %s" % exc)
        if args.on_timeout == "reboot":
            _say("rebooting")
            # This file is a standalone program installed into guests (no AnsibleModule there):
            # asking systemd for the reboot is its job, not an Ansible module's.
            subprocess.call(["systemctl", "reboot"])  # pylint: disable=ansible-bad-function
        return 1
    _out("installed %d files under %s" % (len(written), args.root))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
