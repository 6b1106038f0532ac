"""A fake QEMU guest agent on a temporary unix socket, for the qga client tests.

It speaks the wire protocol the way qemu-ga 7.2 does (measured against the real
binary in unix-listen mode): line-delimited JSON requests and replies, a raw 0xFF
byte resets the parser and is answered with a ``JSON parse error`` reply,
``guest-sync-delimited`` answers ``0xFF`` + ``{"return": id}``, blocked commands
answer ``CommandNotFound``/``Command X has been disabled``, ``guest-shutdown`` sends
no reply on success.
"""
import json
import os
import socket
import threading

OSINFO = {
    "id": "debian", "name": "Debian GNU/Linux", "pretty-name": "Debian GNU/Linux 12 (bookworm)",
    "version": "12 (bookworm)", "version-id": "12", "kernel-release": "6.1.0-28-amd64",
    "kernel-version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1", "machine": "x86_64",
}
INTERFACES = [
    {"name": "lo", "hardware-address": "00:00:00:00:00:00",
     "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8}]},
    {"name": "eth0", "hardware-address": "52:54:00:12:34:56",
     "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "10.0.2.15", "prefix": 24}]},
]


class FakeAgent(object):
    """Serve connections one at a time on ``path`` in a daemon thread.

    behaviour:
      ``normal``  answer like qemu-ga;
      ``silent``  accept connections and never write a byte;
      ``close``   accept and close at once;
      ``stale``   like normal, but greet each connection with stale data first
                  (half a reply, an old delimited sync answer with another id);
      ``shutdown-closes``  like normal, but close the connection after guest-shutdown.
    """

    def __init__(self, path, behaviour="normal", blocked=(), shutdown_fails=False):
        self.path = path
        self.behaviour = behaviour
        self.blocked = set(blocked)
        self.shutdown_fails = shutdown_fails
        self.received = []          # every parsed request, in order
        self.connections = 0
        self.shutdowns = 0
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self):
        self._stop.set()
        try:
            # wake accept()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(0.5)
            try:
                s.connect(self.path)
            except OSError:
                pass
            s.close()
        finally:
            self._listener.close()
            self._thread.join(5)
            if os.path.exists(self.path):
                os.unlink(self.path)

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn = self._listener.accept()[0]
            except OSError:
                return
            if self._stop.is_set():
                conn.close()
                return
            self.connections += 1
            try:
                self._handle(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def _handle(self, conn):
        if self.behaviour == "close":
            return
        if self.behaviour == "silent":
            conn.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    if not conn.recv(4096):
                        return
                except socket.timeout:
                    continue
            return
        if self.behaviour == "stale":
            conn.sendall(b'ne", "version-id": "12"}}\n\xff{"return": 7}\n{"return": {}}\n')
        buf = b""
        conn.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data = conn.recv(4096)
            except socket.timeout:
                continue
            if not data:
                return
            buf += data
            while True:
                ff = buf.find(b"\xff")
                nl = buf.find(b"\n")
                if ff >= 0 and (nl < 0 or ff < nl):
                    buf = buf[ff + 1:]
                    conn.sendall(b'{"error": {"class": "GenericError", "desc": '
                                 b'"JSON parse error, stray \'\\uFFFD\'"}}\n')
                    continue
                if nl < 0:
                    break
                line, buf = buf[:nl], buf[nl + 1:]
                if not line.strip():
                    continue
                if self._dispatch(conn, line) == "hangup":
                    return

    def _reply(self, conn, obj, delimited=False):
        conn.sendall((b"\xff" if delimited else b"") + json.dumps(obj).encode() + b"\n")

    def _dispatch(self, conn, line):
        try:
            req = json.loads(line)
        except ValueError:
            self._reply(conn, {"error": {"class": "GenericError", "desc": "JSON parse error"}})
            return None
        self.received.append(req)
        cmd = req.get("execute")
        args = req.get("arguments") or {}
        if cmd in self.blocked:
            self._reply(conn, {"error": {"class": "CommandNotFound", "desc": "Command %s has been disabled" % cmd}})
        elif cmd == "guest-sync-delimited":
            self._reply(conn, {"return": args["id"]}, delimited=True)
        elif cmd == "guest-sync":
            self._reply(conn, {"return": args["id"]})
        elif cmd == "guest-ping":
            self._reply(conn, {"return": {}})
        elif cmd == "guest-info":
            self._reply(conn, {"return": {"version": "7.2.22", "supported_commands": [
                {"name": "guest-ping", "enabled": True, "success-response": True},
                {"name": "guest-shutdown", "enabled": True, "success-response": False}]}})
        elif cmd == "guest-get-osinfo":
            self._reply(conn, {"return": OSINFO})
        elif cmd == "guest-network-get-interfaces":
            self._reply(conn, {"return": INTERFACES})
        elif cmd == "guest-get-host-name":
            self._reply(conn, {"return": {"host-name": args.get("unexpected", "guest")}}
                        if not args else {"error": {"class": "GenericError",
                                                    "desc": "Parameter '%s' is unexpected" % sorted(args)[0]}})
        elif cmd == "guest-shutdown":
            if args.get("mode", "powerdown") not in ("powerdown", "halt", "reboot"):
                self._reply(conn, {"error": {"class": "GenericError",
                                             "desc": "Parameter 'mode' does not accept value '%s'" % args["mode"]}})
            elif self.shutdown_fails:
                self._reply(conn, {"error": {"class": "GenericError",
                                             "desc": "child process has failed to shutdown"}})
            else:
                self.shutdowns += 1
                if self.behaviour == "shutdown-closes":
                    return "hangup"
                # success: no reply at all
        else:
            self._reply(conn, {"error": {"class": "CommandNotFound",
                                         "desc": "The command %s has not been found" % cmd}})
        return None
