# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared helpers for the build_vm_secrets integration tests.

- ``play(runner, steps)`` runs the module through the ``ansible_module`` fixture.
- ``Gcrypt`` is a ctypes binding to the libgcrypt that Guix itself signs and
  verifies with (through guile-gcrypt), used as the reference implementation.
- ``CanonicalSexp`` is a small s-expression reader written independently of
  plugins/module_utils/keys/, so the tests do not grade the module with its
  own code.
"""
import base64
import ctypes
import ctypes.util
import pathlib


ROOT = pathlib.Path(__file__).resolve().parents[2]
MODULE = "build_vm_secrets"


def play(runner, steps, diff=True, verbosity=0):
    """Run one playbook on localhost through the ``ansible_module`` fixture ``runner``;
    return (results, stdout+stderr).

    Each step is ``(module_args, check_mode)`` (a module task whose registered
    result is returned, in order) or a dict (a plain task run in between, e.g. to
    corrupt a file).
    """
    output = []
    results = runner.steps(MODULE, steps, diff=diff, verbosity=verbosity, output=output)
    return results, "".join(output)


def write_task(path, content):
    """A plain task overwriting ``path`` with ``content``."""
    return {"ansible.builtin.copy": {"content": content, "dest": path, "mode": "0600"}, "diff": False}


def remove_task(path):
    return {"ansible.builtin.file": {"path": path, "state": "absent"}}


def run(runner, args, check=False, diff=True):
    return runner(MODULE, args, check=check, diff=diff)


def base_args(tmp, name="vm1", **extra):
    args = {"name": name, "secret_root": str(tmp / "secrets" / name),
            "offloading_key": str(tmp / "offload" / name), "host_guix_dir": str(tmp / "host-guix")}
    args.update(extra)
    return args


# --- an independent s-expression reader ----------------------------------------

class CanonicalSexp(object):
    """Reads libgcrypt's canonical (``3:abc``) and advanced (tokens, ``#hex#``,
    ``"strings"``) forms into nested Python lists of bytes."""

    TOKEN = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-./_:*+=")

    def __init__(self, data):
        self.data = data
        self.i = 0

    @classmethod
    def parse(cls, data):
        reader = cls(data)
        reader.space()
        value = reader.value()
        reader.space()
        if reader.i != len(data):
            raise ValueError("trailing bytes at %d" % reader.i)
        if not isinstance(value, list):
            raise ValueError("not a list")
        return value

    def space(self):
        while self.i < len(self.data) and self.data[self.i] in b" \t\r\n":
            self.i += 1

    def value(self):
        c = self.data[self.i:self.i + 1]
        if c == b"(":
            self.i += 1
            items = []
            while True:
                self.space()
                if self.data[self.i:self.i + 1] == b")":
                    self.i += 1
                    return items
                if self.i >= len(self.data):
                    raise ValueError("unterminated list")
                items.append(self.value())
        if c.isdigit():
            j = self.data.index(b":", self.i)
            n = int(self.data[self.i:j])
            self.i = j + 1 + n
            return self.data[j + 1:j + 1 + n]
        if c == b"#":
            j = self.data.index(b"#", self.i + 1)
            out = bytes.fromhex(self.data[self.i + 1:j].decode())
            self.i = j + 1
            return out
        if c == b'"':
            j = self.data.index(b'"', self.i + 1)
            out = self.data[self.i + 1:j]
            if b"\\" in out:
                raise ValueError("escapes not expected in these files")
            self.i = j + 1
            return out
        j = self.i
        while j < len(self.data) and self.data[j] in self.TOKEN:
            j += 1
        if j == self.i:
            raise ValueError("unexpected byte %r at %d" % (c, self.i))
        out, self.i = self.data[self.i:j], j
        return out


def find(tree, name):
    for item in tree[1:]:
        if isinstance(item, list) and item and item[0] == name:
            return item
    raise KeyError(name)


# --- Ed25519 group arithmetic, textbook affine form ------------------------------

P = 2 ** 255 - 19
D = -121665 * pow(121666, -1, P) % P


def _x(y, sign):
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if (v * x * x - u) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    return P - x if (x & 1) != sign else x


BASE = (_x(4 * pow(5, -1, P) % P, 0), 4 * pow(5, -1, P) % P)


def _add(a, b):
    (x1, y1), (x2, y2) = a, b
    k = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + y1 * x2) * pow(1 + k, -1, P) % P, (y1 * y2 + x1 * x2) * pow(1 - k, -1, P) % P)


def ed25519_point(k):
    """Encoded k*B."""
    acc, pt = (0, 1), BASE
    while k:
        if k & 1:
            acc = _add(acc, pt)
        pt, k = _add(pt, pt), k >> 1
    return (acc[1] | (acc[0] & 1) << 255).to_bytes(32, "little")


# --- libgcrypt ------------------------------------------------------------------

class Gcrypt(object):
    """The few libgcrypt calls Guix's (gcrypt pk-crypto) uses for keys and signatures."""

    def __init__(self):
        name = ctypes.util.find_library("gcrypt") or "libgcrypt.so.20"
        self.lib = ctypes.CDLL(name)
        self.lib.gcry_check_version.restype = ctypes.c_char_p
        self.version = self.lib.gcry_check_version(None).decode()
        self.lib.gcry_control(38, 0)  # GCRYCTL_INITIALIZATION_FINISHED
        self.lib.gcry_sexp_find_token.restype = ctypes.c_void_p
        self.lib.gcry_sexp_release.argtypes = [ctypes.c_void_p]

    def sexp(self, data):
        handle = ctypes.c_void_p()
        rc = self.lib.gcry_sexp_new(ctypes.byref(handle), data, len(data), 1)
        if rc:
            raise ValueError("libgcrypt cannot read the s-expression (error %d)" % rc)
        return handle

    def sprint(self, handle, mode=3):
        n = self.lib.gcry_sexp_sprint(handle, mode, None, 0)
        buf = ctypes.create_string_buffer(n)
        n = self.lib.gcry_sexp_sprint(handle, mode, buf, n)
        return buf.raw[:n]

    def testkey(self, secret):
        return self.lib.gcry_pk_testkey(self.sexp(secret))

    def sign(self, data, secret):
        sig = ctypes.c_void_p()
        rc = self.lib.gcry_pk_sign(ctypes.byref(sig), self.sexp(data), self.sexp(secret))
        if rc:
            raise ValueError("gcry_pk_sign failed (%d)" % rc)
        return self.sprint(sig)

    def verify(self, signature, data, public):
        return self.lib.gcry_pk_verify(self.sexp(signature), self.sexp(data), self.sexp(public))


def b64_body(pem):
    """The base64 lines of a PEM-like private key file."""
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


def b64(data):
    return base64.b64encode(data).decode()
