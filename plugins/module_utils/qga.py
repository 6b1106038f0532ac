# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A client for the QEMU guest agent (QGA) protocol over the host-side unix socket.

Private to vmhost.virt: other collections must not import this module.

The host starts a guest with a virtio-serial port named ``org.qemu.guest_agent.0``
whose other end is a unix socket on the host (QEMU ``-chardev socket,server=on``).
``qemu-ga`` in the guest speaks line-delimited JSON on that port:

* request: ``{"execute": "guest-ping", "arguments": {...}}``
* reply:   ``{"return": ...}`` or ``{"error": {"class": "...", "desc": "..."}}``, one line.

The channel keeps whatever a previous client left behind (a reply nobody read, half a
request), so every connection starts with the synchronisation handshake: the client
sends a raw ``0xFF`` byte (the agent resets its JSON parser on it), then
``guest-sync-delimited`` with a random id; the agent answers with a ``0xFF`` byte
followed by ``{"return": <id>}``.  Everything before that delimiter, and delimited
replies carrying another id, are stale and discarded.  ``0xFF`` never occurs in UTF-8
JSON, so scanning for it is safe.

Some commands (``guest-shutdown``, ``guest-suspend-*``) send no reply when they succeed.
For those the client follows up with another ``guest-sync-delimited``: an error reply
before the sync answer means the command failed; the sync answer, the agent closing
the connection (the VM powered off) or silence until the deadline mean it was accepted.

Every operation runs against one deadline, so a silent agent, a path that is not a
socket or a socket nobody listens on gives :class:`QGAError` within the timeout, never
a hang.  The socket factory, the clock, the sleep function and the id generator are
injectable for tests.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import random
import re
import socket
import stat
import time

DEFAULT_DEVICE = "/dev/virtio-ports/org.qemu.guest_agent.0"
DELIMITER = b"\xff"
MAX_REPLY = 16 * 1024 * 1024
# A reply nested deeper than this is refused before json.loads (which would raise
# RecursionError near Python's limit, and Ansible could not serialise the result).
MAX_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text):
    """How deeply ``text`` (JSON) nests arrays and objects (strings are skipped)."""
    depth = deepest = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        if match.group(0) in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads_bounded(text):
    """``json.loads`` that raises ValueError for input nested more than :data:`MAX_DEPTH` deep."""
    if json_depth(text) > MAX_DEPTH:
        raise ValueError("nested more than %d levels deep" % MAX_DEPTH)
    return json.loads(text)


# Commands that only read guest state: the module reports changed=false for them and
# runs them in check mode.  Anything else is treated as changing the guest.
READ_ONLY_COMMANDS = frozenset((
    "guest-sync",
    "guest-sync-delimited",
    "guest-ping",
    "guest-info",
    "guest-get-time",
    "guest-get-timezone",
    "guest-get-osinfo",
    "guest-get-host-name",
    "guest-get-users",
    "guest-get-vcpus",
    "guest-get-disks",
    "guest-get-fsinfo",
    "guest-get-devices",
    "guest-get-diskstats",
    "guest-get-cpustats",
    "guest-get-load",
    "guest-get-memory-blocks",
    "guest-get-memory-block-info",
    "guest-network-get-interfaces",
    "guest-network-get-route",
    "guest-fsfreeze-status",
    "guest-exec-status",
    "guest-ssh-get-authorized-keys",
))

# Commands the agent does not answer when they succeed.
NO_REPLY_COMMANDS = frozenset((
    "guest-shutdown",
    "guest-suspend-disk",
    "guest-suspend-ram",
    "guest-suspend-hybrid",
))

# Failure reasons carried by QGAError.reason.
MISSING = "missing"
NOT_SOCKET = "not_socket"
REFUSED = "refused"
PERMISSION = "permission"
TIMEOUT = "timeout"
CLOSED = "closed"
PROTOCOL = "protocol"
AGENT = "agent"

# Reasons that a waiting caller retries: the VM or its agent may simply not be up yet.
TRANSIENT = frozenset((MISSING, REFUSED, TIMEOUT, CLOSED))


class QGAError(Exception):
    """Talking to the guest agent failed; ``reason`` is one of the module constants."""

    def __init__(self, message, reason, path=None):
        super(QGAError, self).__init__(message)
        self.reason = reason
        self.path = path
        self.attempts = 1


class AgentError(QGAError):
    """The agent answered with an error reply (``error_class``, ``desc``)."""

    def __init__(self, command, error_class, desc, path=None):
        message = "guest agent refused %s: %s: %s" % (command, error_class, desc)
        super(AgentError, self).__init__(message, AGENT, path)
        self.command = command
        self.error_class = error_class
        self.desc = desc


def changes_state(command):
    """True when ``command`` changes the guest (everything not known read-only)."""
    return command not in READ_ONLY_COMMANDS


def sends_reply(command):
    """False for the commands the agent does not answer on success."""
    return command not in NO_REPLY_COMMANDS


def check_socket_path(path, stat_fn=os.stat):
    """Raise QGAError unless ``path`` exists and is a unix socket."""
    try:
        st = stat_fn(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise QGAError("guest agent socket %s does not exist: is the VM running with a "
                           "guest agent channel (virtserialport org.qemu.guest_agent.0)?" % path,
                           MISSING, path)
        if exc.errno == errno.EACCES:
            raise QGAError("permission denied looking up guest agent socket %s: run as a user "
                           "that may enter its (0700) directory" % path, PERMISSION, path)
        raise QGAError("cannot look up guest agent socket %s: %s" % (path, exc.strerror), PROTOCOL, path)
    if not stat.S_ISSOCK(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else (
            "a regular file" if stat.S_ISREG(st.st_mode) else "not a socket")
        raise QGAError("%s is not a unix socket (it is %s): give the path of the QEMU "
                       "chardev socket bound to the guest agent port" % (path, kind), NOT_SOCKET, path)


def _default_id():
    return random.SystemRandom().randint(1, 2 ** 31 - 1)


class Client(object):
    """One connection to a guest agent socket.

    ``timeout`` bounds each public operation (connect + handshake, or one command).
    """

    def __init__(self, path, timeout=10.0, clock=time.monotonic, socket_factory=None,
                 id_factory=_default_id, stat_fn=os.stat):
        if timeout is None or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.path = path
        self.timeout = float(timeout)
        self._clock = clock
        self._socket_factory = socket_factory or (lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        self._id_factory = id_factory
        self._stat = stat_fn
        self._sock = None
        self._buf = b""

    # -- connection -------------------------------------------------------------------
    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._buf = b""

    def connect(self):
        """Open the socket and synchronise with the agent, within ``timeout``."""
        deadline = self._clock() + self.timeout
        check_socket_path(self.path, self._stat)
        sock = self._socket_factory()
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except socket.timeout:
            sock.close()
            raise QGAError("connecting to guest agent socket %s timed out after %g s" % (self.path, self.timeout),
                           TIMEOUT, self.path)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.ECONNREFUSED:
                raise QGAError("nobody is listening on guest agent socket %s (connection refused): "
                               "the VM is not running, or its QEMU has exited" % self.path, REFUSED, self.path)
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise QGAError("permission denied connecting to guest agent socket %s" % self.path,
                               PERMISSION, self.path)
            if exc.errno == errno.ENOENT:
                raise QGAError("guest agent socket %s disappeared while connecting" % self.path, MISSING, self.path)
            raise QGAError("cannot connect to guest agent socket %s: %s" % (self.path, exc.strerror or exc),
                           PROTOCOL, self.path)
        self._sock = sock
        self._buf = b""
        try:
            self.sync(deadline)
        except Exception:
            self.close()
            raise
        return self

    # -- low level I/O ----------------------------------------------------------------
    def _remaining(self, deadline, what):
        left = deadline - self._clock()
        if left <= 0:
            raise QGAError("guest agent on %s did not answer %s within %g s: is qemu-ga running "
                           "in the guest?" % (self.path, what, self.timeout), TIMEOUT, self.path)
        return left

    def _send(self, data, deadline, what):
        self._sock.settimeout(self._remaining(deadline, what))
        try:
            self._sock.sendall(data)
        except socket.timeout:
            raise QGAError("guest agent on %s did not accept %s within %g s" % (self.path, what, self.timeout),
                           TIMEOUT, self.path)
        except OSError as exc:
            raise QGAError("guest agent socket %s closed the connection while sending %s (%s)"
                           % (self.path, what, exc.strerror or exc), CLOSED, self.path)

    def _fill(self, deadline, what):
        """Read more bytes into the buffer; raise on timeout or end of stream."""
        self._sock.settimeout(self._remaining(deadline, what))
        try:
            data = self._sock.recv(65536)
        except socket.timeout:
            raise QGAError("guest agent on %s did not answer %s within %g s: is qemu-ga running "
                           "in the guest?" % (self.path, what, self.timeout), TIMEOUT, self.path)
        except OSError as exc:
            raise QGAError("guest agent socket %s closed the connection while waiting for %s (%s)"
                           % (self.path, what, exc.strerror or exc), CLOSED, self.path)
        if not data:
            raise QGAError("guest agent socket %s closed the connection while waiting for %s"
                           % (self.path, what), CLOSED, self.path)
        self._buf += data
        if len(self._buf) > MAX_REPLY:
            raise QGAError("guest agent on %s sent more than %d bytes without a complete reply"
                           % (self.path, MAX_REPLY), PROTOCOL, self.path)

    def _read_line(self, deadline, what):
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line, self._buf = self._buf[:nl], self._buf[nl + 1:]
                return line
            self._fill(deadline, what)

    def _skip_to_delimiter(self, deadline, what):
        while True:
            pos = self._buf.find(DELIMITER)
            if pos >= 0:
                self._buf = self._buf[pos + 1:]
                return
            self._buf = b""
            self._fill(deadline, what)

    def _parse(self, line, what):
        try:
            obj = loads_bounded(line.decode("utf-8", "replace"))
        except ValueError as exc:
            raise QGAError("guest agent on %s sent something that is not JSON we accept in reply to "
                           "%s (%s): %r" % (self.path, what, exc, line[:200]), PROTOCOL, self.path)
        if not isinstance(obj, dict) or ("return" not in obj and "error" not in obj):
            raise QGAError("guest agent on %s sent an unexpected reply to %s: %r"
                           % (self.path, what, line[:200]), PROTOCOL, self.path)
        return obj

    def _next_message(self, deadline, what):
        """Return ``(delimited, reply)`` for the next non-empty line."""
        while True:
            stripped = self._buf.lstrip(b" \t\r\n")
            if not stripped:
                self._buf = b""
                self._fill(deadline, what)
                continue
            self._buf = stripped
            delimited = False
            if self._buf.startswith(DELIMITER):
                delimited = True
                self._buf = self._buf[1:]
            line = self._read_line(deadline, what).strip()
            if not line:
                continue
            return delimited, self._parse(line, what)

    @staticmethod
    def _request(command, arguments=None):
        req = {"execute": command}
        if arguments:
            req["arguments"] = arguments
        return (json.dumps(req, sort_keys=True) + "\n").encode("utf-8")

    def _raise_if_error(self, command, reply):
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {"desc": str(reply["error"])}
            raise AgentError(command, err.get("class", "GenericError"), err.get("desc", ""), self.path)

    # -- protocol ---------------------------------------------------------------------
    def sync(self, deadline=None):
        """Run the ``guest-sync-delimited`` handshake, discarding stale data."""
        if deadline is None:
            deadline = self._clock() + self.timeout
        sync_id = self._id_factory()
        what = "guest-sync-delimited"
        self._send(DELIMITER + self._request(what, {"id": sync_id}), deadline, what)
        while True:
            self._skip_to_delimiter(deadline, what)
            line = self._read_line(deadline, what).strip()
            try:
                reply = loads_bounded(line.decode("utf-8", "replace"))
            except ValueError:
                continue  # a stale fragment after an old delimiter
            if isinstance(reply, dict) and "error" in reply:
                self._raise_if_error(what, reply)
            if isinstance(reply, dict) and reply.get("return") == sync_id:
                return sync_id
            # a delimited reply to some earlier client's sync: stale, keep looking

    def execute(self, command, arguments=None):
        """Send one command and return the agent's ``return`` value.

        Raises :class:`AgentError` with the agent's class and description on an error
        reply.  For commands that send no reply on success, returns ``None`` once the
        agent has accepted them (see the module docstring).
        """
        if not isinstance(command, str) or not command:
            raise ValueError("command must be a non-empty string")
        if arguments is not None and not isinstance(arguments, dict):
            raise ValueError("arguments must be a dict")
        if self._sock is None:
            raise QGAError("not connected to %s" % self.path, PROTOCOL, self.path)
        deadline = self._clock() + self.timeout
        if sends_reply(command):
            self._send(self._request(command, arguments), deadline, command)
            while True:
                delimited, reply = self._next_message(deadline, command)
                if delimited:
                    continue  # a late delimited sync answer: not ours
                self._raise_if_error(command, reply)
                return reply.get("return")
        sync_id = self._id_factory()
        self._send(self._request(command, arguments)
                   + self._request("guest-sync-delimited", {"id": sync_id}), deadline, command)
        try:
            while True:
                delimited, reply = self._next_message(deadline, command)
                if delimited and reply.get("return") == sync_id:
                    return None
                if delimited:
                    continue
                self._raise_if_error(command, reply)
                return reply.get("return")
        except QGAError as exc:
            if exc.reason in (TIMEOUT, CLOSED):
                return None  # no error reply: the agent accepted it (the VM may be gone)
            raise

    # -- conveniences -----------------------------------------------------------------
    def ping(self):
        return self.execute("guest-ping")

    def info(self):
        return self.execute("guest-info")

    def osinfo(self):
        return self.execute("guest-get-osinfo")

    def network_interfaces(self):
        return self.execute("guest-network-get-interfaces")

    def shutdown(self, mode=None):
        return self.execute("guest-shutdown", {"mode": mode} if mode else None)


def call(path, command, arguments=None, timeout=10.0, **client_kwargs):
    """Connect, synchronise, run one command and close: the agent's return value."""
    with Client(path, timeout=timeout, **client_kwargs) as client:
        return client.execute(command, arguments)


def call_when_ready(path, command, arguments=None, timeout=10.0, wait_timeout=300.0, interval=1.0,
                    clock=time.monotonic, sleep=time.sleep, **client_kwargs):
    """Retry :func:`call` until the agent answers or ``wait_timeout`` seconds pass.

    Transient failures (socket missing, refused, closed, no answer) are retried; an
    agent error reply or a path that is not a socket is not.  Returns
    ``(result, attempts)``; raises the last :class:`QGAError` with the number of
    attempts when the deadline passes.
    """
    deadline = clock() + wait_timeout
    attempts = 0
    while True:
        attempts += 1
        left = deadline - clock()
        try:
            return call(path, command, arguments, timeout=max(min(timeout, left), 0.05),
                        clock=clock, **client_kwargs), attempts
        except QGAError as exc:
            exc.attempts = attempts
            if exc.reason not in TRANSIENT:
                raise
            left = deadline - clock()
            if left <= 0:
                final = QGAError("guest agent on %s did not answer %s within %g s (%d attempts); last error: %s"
                                 % (path, command, wait_timeout, attempts, exc), exc.reason, path)
                final.attempts = attempts
                raise final
            sleep(min(interval, left))
