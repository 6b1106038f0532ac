# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""SSH keys, Guix and Nix signing keys, Guix ACL s-expressions.

Private to vmhost.virt: other collections must not import this module.

Pure functions (bytes in, bytes/values out) plus one side-effecting helper,
:func:`write_group`, that installs several files as one unit.

Guix signing keys are what ``guix archive --generate-key`` makes with its
default parameters ``(genkey (ecdsa (curve Ed25519) (flags rfc6979)))``:
libgcrypt then creates an *ECDSA* key on the Ed25519 curve, not an EdDSA key.
The secret ``d`` is a clamped 256-bit scalar (printed as a big-endian MPI) and
the public ``q`` is the point ``d*B`` in the 32-byte Ed25519 point encoding.  The
files are libgcrypt's "advanced" s-expression print of the key, for example::

    (public-key \\n (ecc \\n  (curve Ed25519)\\n  (q #HEX#)\\n  )\\n )\\n

Nix keys are ``name:base64(seed || public)`` (64 bytes, libsodium's secret key
layout) and ``name:base64(public)`` (32 bytes), both Ed25519.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import hashlib
import os
import re

from ansible_collections.vmhost.virt.plugins.module_utils import _io

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - depends on the controller
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = _exc

SSH_KEY_TYPES = ("ed25519", "ecdsa", "rsa")
MIN_RSA_BITS = 3072
DEFAULT_RSA_BITS = 3072
TEMP_TAG = "build_vm_secrets"


class KeysError(Exception):
    """A key, ACL or configuration file is unusable; the message says which and why."""


# ---------------------------------------------------------------------------
# S-expressions (libgcrypt's reader and its GCRYSEXP_FMT_ADVANCED printer)
#
# A tree is a Python list (an s-expression list) whose atoms are bytes.

_TOKEN_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-./_:*+=")
_WHITESPACE = frozenset(b" \t\n\r\f\v")
_STRING_ESCAPES = {ord("b"): 8, ord("t"): 9, ord("v"): 11, ord("n"): 10, ord("f"): 12,
                   ord("r"): 13, ord('"'): 34, ord("'"): 39, ord("\\"): 92}
_PRINT_ESCAPES = {8: b"\\b", 9: b"\\t", 11: b"\\v", 10: b"\\n", 12: b"\\f", 13: b"\\r",
                  34: b'\\"', 39: b"\\'", 92: b"\\\\"}


def _binary_byte(c):
    return (c < 0x20 or 0x7f <= c <= 0xa0) and c not in (8, 9, 11, 10, 12, 13, 34, 39, 92)


def _encoding(atom):
    """libgcrypt's choice for printing an atom: 'string', 'token' or 'hex'."""
    if not atom:
        return "string"
    if atom[0] & 0x80 or atom[0] == 0:
        return "hex"
    maybe_token = True
    for c in bytearray(atom):
        if _binary_byte(c):
            return "hex"
        if c not in _TOKEN_CHARS:
            maybe_token = False
    if maybe_token and not (0x30 <= atom[0] <= 0x39):
        return "token"
    return "string"


def _atom_text(atom):
    kind = _encoding(atom)
    if kind == "token":
        return bytes(atom)
    if kind == "hex":
        return b"#" + binascii.hexlify(atom).upper() + b"#"
    out = bytearray(b'"')
    for c in bytearray(atom):
        if c in _PRINT_ESCAPES:
            out += _PRINT_ESCAPES[c]
        elif c < 0x20 or 0x7f <= c <= 0xa0:
            out += ("\\x%02x" % c).encode("ascii")
        else:
            out.append(c)
    out += b'"'
    return bytes(out)


def sexp_dump(tree):
    """Print ``tree`` exactly as libgcrypt's ``gcry_sexp_sprint`` in advanced mode."""
    out = bytearray()
    # Flatten to the event stream libgcrypt walks: OPEN, CLOSE, atoms.
    events = []

    def walk(node):
        events.append("(")
        for item in node:
            if isinstance(item, list):
                walk(item)
            else:
                events.append(bytes(item))
        events.append(")")

    if not isinstance(tree, list):
        raise KeysError("an s-expression must be a list")
    walk(tree)
    indent = 0
    for i, ev in enumerate(events):
        nxt = events[i + 1] if i + 1 < len(events) else None
        if ev == "(":
            if indent:
                out += b"\n" + b" " * indent
            out += b"("
            indent += 1
        elif ev == ")":
            out += b")"
            indent -= 1
            if nxt is not None and nxt != "(":
                out += b"\n" + b" " * indent
        else:
            out += _atom_text(ev)
            if nxt != ")":
                out += b" "
    out += b"\n"
    return bytes(out)


def sexp_dump_canonical(tree):
    """The canonical (length-prefixed) encoding of ``tree``."""
    out = bytearray(b"(")
    for item in tree:
        if isinstance(item, list):
            out += sexp_dump_canonical(item)
        else:
            out += str(len(item)).encode("ascii") + b":" + bytes(item)
    out += b")"
    return bytes(out)


# Guix keys and ACLs nest 5 lists deep; a hostile file must not reach Python's recursion limit.
MAX_SEXP_DEPTH = 32


def sexp_parse(data):
    """Parse one s-expression (canonical or advanced transport) into a tree.

    Raises :class:`KeysError` on anything libgcrypt would not read.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    data = bytes(data)
    pos = [0]
    n = len(data)

    def err(msg):
        raise KeysError("s-expression error at byte %d: %s" % (pos[0], msg))

    def skip_ws():
        while pos[0] < n and data[pos[0]] in _WHITESPACE:
            pos[0] += 1

    def read_hex(expect=None):
        end = data.find(b"#", pos[0] + 1)
        if end < 0:
            err("unterminated #hex# string")
        body = bytes(c for c in bytearray(data[pos[0] + 1:end]) if c not in _WHITESPACE)
        try:
            value = binascii.unhexlify(body)
        except (binascii.Error, TypeError):
            err("bad hex string")
        pos[0] = end + 1
        return value

    def read_string():
        i = pos[0] + 1
        out = bytearray()
        while True:
            if i >= n:
                err("unterminated quoted string")
            c = data[i]
            if c == 0x22:
                pos[0] = i + 1
                return bytes(out)
            if c == 0x5c:
                i += 1
                if i >= n:
                    err("unterminated escape")
                e = data[i]
                if e in _STRING_ESCAPES:
                    out.append(_STRING_ESCAPES[e])
                    i += 1
                elif e == ord("x"):
                    try:
                        out.append(int(data[i + 1:i + 3].decode("ascii"), 16))
                    except ValueError:
                        err("bad \\x escape")
                    i += 3
                elif 0x30 <= e <= 0x37:
                    try:
                        out.append(int(data[i:i + 3].decode("ascii"), 8))
                    except ValueError:
                        err("bad octal escape")
                    i += 3
                elif e in (10, 13):
                    i += 1
                    if i < n and data[i] in (10, 13) and data[i] != e:
                        i += 1
                else:
                    err("bad escape")
            else:
                out.append(c)
                i += 1

    def read_base64():
        end = data.find(b"|", pos[0] + 1)
        if end < 0:
            err("unterminated |base64| string")
        body = bytes(c for c in bytearray(data[pos[0] + 1:end]) if c not in _WHITESPACE)
        try:
            value = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            err("bad base64 string")
        pos[0] = end + 1
        return value

    def read_atom():
        c = data[pos[0]]
        if 0x30 <= c <= 0x39:
            m = re.compile(br"[0-9]+").match(data, pos[0])
            length = int(m.group(0))
            if m.group(0) != b"0" and m.group(0).startswith(b"0"):
                err("length with a leading zero")
            pos[0] = m.end()
            if pos[0] >= n:
                err("length without data")
            c = data[pos[0]]
            if c == ord(":"):
                start = pos[0] + 1
                if start + length > n:
                    err("verbatim string runs past the end")
                pos[0] = start + length
                return data[start:start + length]
            if c == ord("#"):
                value = read_hex()
            elif c == ord('"'):
                value = read_string()
            elif c == ord("|"):
                value = read_base64()
            else:
                err("a token must not start with a digit")
            if len(value) != length:
                err("length prefix %d does not match %d bytes" % (length, len(value)))
            return value
        if c == ord("#"):
            return read_hex()
        if c == ord('"'):
            return read_string()
        if c == ord("|"):
            return read_base64()
        if c in _TOKEN_CHARS:
            start = pos[0]
            while pos[0] < n and data[pos[0]] in _TOKEN_CHARS:
                pos[0] += 1
            return data[start:pos[0]]
        err("unexpected character %r" % chr(c))

    def read_list(depth=1):
        if depth > MAX_SEXP_DEPTH:
            err("nested more than %d lists deep" % MAX_SEXP_DEPTH)
        pos[0] += 1  # '('
        items = []
        while True:
            skip_ws()
            if pos[0] >= n:
                err("unbalanced parentheses")
            c = data[pos[0]]
            if c == ord(")"):
                pos[0] += 1
                return items
            if c == ord("("):
                items.append(read_list(depth + 1))
            elif c == ord("["):
                err("display hints are not supported")
            else:
                items.append(read_atom())

    skip_ws()
    if pos[0] >= n or data[pos[0]] != ord("("):
        err("expected '('")
    tree = read_list()
    skip_ws()
    if pos[0] != n:
        err("trailing data after the s-expression")
    return tree


def sexp_find(tree, name):
    """The first sublist of ``tree`` whose head is ``name`` (bytes), or None."""
    for item in tree[1:]:
        if isinstance(item, list) and item and item[0] == name:
            return item
    return None


# ---------------------------------------------------------------------------
# Ed25519 curve arithmetic (for Guix's ECDSA-on-Ed25519 keys)

_P = 2 ** 255 - 19
_N = 2 ** 252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P


def _recover_x(y, sign):
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if (x * x - x2) % _P:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x


_BY = 4 * pow(5, _P - 2, _P) % _P
_B = (_recover_x(_BY, 0), _BY, 1, _recover_x(_BY, 0) * _BY % _P)


def _ext_add(p, q):
    # Extended twisted Edwards coordinates (a = -1), "add-2008-hwcd-3".
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = 2 * t1 * t2 * _D % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def ed25519_scalar_mult(k, point=None):
    """``k * point`` (default the base point) in extended coordinates."""
    result = (0, 1, 1, 0)
    point = point or _B
    while k > 0:
        if k & 1:
            result = _ext_add(result, point)
        point = _ext_add(point, point)
        k >>= 1
    return result


def ed25519_encode_point(point):
    """The 32-byte Ed25519 encoding (little-endian y, sign of x in the top bit)."""
    x, y, z, _t = point
    zinv = pow(z, _P - 2, _P)
    x, y = x * zinv % _P, y * zinv % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _mpi_bytes(value):
    """libgcrypt's standard MPI format for a positive integer."""
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    if raw[0] & 0x80:
        raw = b"\x00" + raw
    return raw


# ---------------------------------------------------------------------------
# Guix signing keys and ACL

GUIX_CURVE = b"Ed25519"


def _valid_scalar(d):
    return 0 < d < 2 ** 256 and d % _N != 0


def guix_key_from_scalar(d):
    """Return ``(secret_bytes, public_bytes)`` files for secret scalar ``d``."""
    if not _valid_scalar(d):
        raise KeysError("Guix secret scalar out of range")
    q = ed25519_encode_point(ed25519_scalar_mult(d))
    public = [b"public-key", [b"ecc", [b"curve", GUIX_CURVE], [b"q", q]]]
    secret = [b"private-key", [b"ecc", [b"curve", GUIX_CURVE], [b"q", q], [b"d", _mpi_bytes(d)]]]
    return sexp_dump(secret), sexp_dump(public)


def generate_guix_key(randbytes=None):
    """A new Guix signing key pair ``(secret_bytes, public_bytes)``.

    The scalar is drawn as libgcrypt does for Ed25519 ECDSA keys: 32 random
    bytes read big-endian, bit 255 cleared, bit 254 set, bits 2..0 cleared.
    """
    raw = bytearray((randbytes or os.urandom)(32))
    raw[0] = (raw[0] & 0x7f) | 0x40
    raw[31] &= 0xf8
    return guix_key_from_scalar(int.from_bytes(bytes(raw), "big"))


def _ecc_params(tree, head, what):
    if not tree or tree[0] != head:
        raise KeysError("%s: not a (%s ...) s-expression" % (what, head.decode()))
    ecc = sexp_find(tree, b"ecc") or sexp_find(tree, b"ecdsa")
    if ecc is None:
        raise KeysError("%s: not an ECC key (only Ed25519 keys are supported)" % what)
    curve = sexp_find(ecc, b"curve")
    if curve is None or len(curve) != 2 or curve[1] != GUIX_CURVE:
        raise KeysError("%s: curve is not Ed25519" % what)
    flags = sexp_find(ecc, b"flags")
    if flags is not None and b"eddsa" in flags[1:]:
        raise KeysError("%s: EdDSA-flagged keys are not what guix archive generates" % what)
    q = sexp_find(ecc, b"q")
    if q is None or len(q) != 2 or isinstance(q[1], list):
        raise KeysError("%s: no public point q" % what)
    qv = q[1]
    if len(qv) == 33 and qv[:1] == b"\x40":
        qv = qv[1:]
    if len(qv) != 32:
        raise KeysError("%s: q is %d bytes, expected 32" % (what, len(qv)))
    return ecc, qv


def _parse_named(data, what):
    try:
        return sexp_parse(data)
    except KeysError as exc:
        raise KeysError("%s: %s" % (what, exc))


def parse_guix_secret(data, what="Guix secret key"):
    """Return ``(d, q)`` from a Guix secret key file; check q = d*B."""
    tree = _parse_named(data, what)
    ecc, q = _ecc_params(tree, b"private-key", what)
    dnode = sexp_find(ecc, b"d")
    if dnode is None or len(dnode) != 2 or isinstance(dnode[1], list):
        raise KeysError("%s: no secret scalar d" % what)
    d = int.from_bytes(dnode[1], "big")
    if not _valid_scalar(d):
        raise KeysError("%s: secret scalar d out of range" % what)
    if ed25519_encode_point(ed25519_scalar_mult(d)) != q:
        raise KeysError("%s: q does not match d" % what)
    return d, q


def parse_guix_public(data, what="Guix public key"):
    """Return the 32-byte q of a Guix public key file."""
    return _ecc_params(_parse_named(data, what), b"public-key", what)[1]


def guix_public_tree(q):
    return [b"public-key", [b"ecc", [b"curve", GUIX_CURVE], [b"q", q]]]


def _key_identity(tree):
    """Comparable identity of a public-key tree (type, curve, q)."""
    return sexp_dump_canonical(tree)


def parse_acl(data, what="ACL"):
    """Return the list of public-key trees a Guix ACL authorizes.

    Every entry must be ``(entry (public-key ...) (tag (guix import)))``, the only
    shape Guix reads; anything else raises :class:`KeysError`.
    """
    try:
        tree = sexp_parse(data)
    except KeysError as exc:
        raise KeysError("%s is not a Guix ACL: %s" % (what, exc))
    if not tree or tree[0] != b"acl":
        raise KeysError("%s is not a Guix ACL: it does not start with (acl" % what)
    keys = []
    for index, entry in enumerate(tree[1:], 1):
        if (not isinstance(entry, list) or len(entry) != 3 or entry[0] != b"entry"
                or not isinstance(entry[1], list) or not entry[1] or entry[1][0] != b"public-key"
                or entry[2] != [b"tag", [b"guix", b"import"]]):
            raise KeysError("%s: entry %d is not (entry (public-key ...) (tag (guix import)))"
                            % (what, index))
        keys.append(entry[1])
    return keys


def acl_dump(keys):
    """The ACL file for public-key trees ``keys``, as Guix writes it."""
    return sexp_dump([b"acl"] + [[b"entry", k, [b"tag", [b"guix", b"import"]]] for k in keys])


def acl_merge(keys, add=(), remove=()):
    """``add`` in front of ``keys`` (as ``guix archive --authorize`` does), minus
    ``remove``, without duplicates (first occurrence kept)."""
    gone = set(_key_identity(k) for k in remove)
    seen = set()
    out = []
    for k in list(add) + list(keys):
        ident = _key_identity(k)
        if ident in seen or ident in gone:
            continue
        seen.add(ident)
        out.append(k)
    return out


# ---------------------------------------------------------------------------
# Nix signing keys

_NIX_NAME = re.compile(r"^[^:\s]+$")


def nix_key_from_seed(name, seed):
    """``(secret_line, public_line)`` for Ed25519 ``seed`` (32 bytes)."""
    if not _NIX_NAME.match(name or ""):
        raise KeysError("Nix key name %r must be non-empty, without ':' or spaces" % name)
    pub = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    secret = "%s:%s" % (name, base64.b64encode(seed + pub).decode("ascii"))
    public = "%s:%s" % (name, base64.b64encode(pub).decode("ascii"))
    return secret, public


def generate_nix_key(name, randbytes=None):
    return nix_key_from_seed(name, (randbytes or os.urandom)(32))


def parse_nix_secret(text, what="Nix secret key"):
    """Return ``(name, seed, public_line)``; check the stored public half."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise KeysError("%s: not ASCII" % what)
    text = text.strip()
    name, sep, b64 = text.partition(":")
    if not sep or not _NIX_NAME.match(name):
        raise KeysError("%s: expected name:base64" % what)
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise KeysError("%s: bad base64" % what)
    if len(raw) != 64:
        raise KeysError("%s: %d bytes of key data, expected 64" % (what, len(raw)))
    secret, public = nix_key_from_seed(name, raw[:32])
    if secret != "%s:%s" % (name, b64):
        raise KeysError("%s: the public half stored in the secret key does not match" % what)
    return name, raw[:32], public


def parse_nix_public(text, what="Nix public key"):
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    text = text.strip()
    name, sep, b64 = text.partition(":")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not sep or not _NIX_NAME.match(name) or len(raw) != 32:
        raise KeysError("%s: expected name:base64(32 bytes)" % what)
    return text


_TRUSTED = re.compile(r"^(\s*)(extra-)?trusted-public-keys(\s*)=(.*)$")


def nix_conf_trust(text, add, remove=()):
    """Return nix.conf ``text`` with key ``add`` trusted and keys in ``remove`` not.

    Edits the last ``trusted-public-keys`` line if there is one, else the last
    ``extra-trusted-public-keys`` line, else appends ``extra-trusted-public-keys =
    KEY`` (which keeps Nix's built-in default keys trusted).
    """
    lines = text.splitlines(True)
    target = None
    for extra in (None, "extra-"):
        for i, line in enumerate(lines):
            m = _TRUSTED.match(line.rstrip("\r\n"))
            if m and m.group(2) == extra:
                target = i
        if target is not None:
            break
    remove = set(remove)
    if target is None:
        keys = [k for k in [add] if k and k not in remove]
        if not keys:
            return text
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append("extra-trusted-public-keys = %s\n" % " ".join(keys))
        return "".join(lines)
    line = lines[target]
    ending = line[len(line.rstrip("\r\n")):]
    m = _TRUSTED.match(line.rstrip("\r\n"))
    value = m.group(4)
    comment = ""
    if "#" in value:
        value, comment = value.split("#", 1)
        comment = " #" + comment
    keys = [k for k in value.split() if k not in remove]
    if add and add not in keys:
        keys.append(add)
    new = "%s%strusted-public-keys = %s%s%s" % (
        m.group(1), m.group(2) or "", " ".join(keys), comment, ending or "\n")
    if new.rstrip("\r\n") == line.rstrip("\r\n"):
        return text
    lines[target] = new
    return "".join(lines)


# ---------------------------------------------------------------------------
# SSH keys

def generate_ssh_key(kind, bits=DEFAULT_RSA_BITS):
    """Return ``(private_openssh_bytes, public_line)`` for a new key of ``kind``."""
    if kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif kind == "ecdsa":
        key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "rsa":
        if bits < MIN_RSA_BITS:
            raise KeysError("RSA keys must have %d bits or more, not %d" % (MIN_RSA_BITS, bits))
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    else:
        raise KeysError("unknown SSH key type %r (choose from %s)" % (kind, ", ".join(SSH_KEY_TYPES)))
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    return private, ssh_public_line(key)


def ssh_public_line(key):
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode("ascii")


def ssh_key_kind(key):
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519", 256
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ecdsa", key.curve.key_size
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa", key.key_size
    return None, None


def load_ssh_private(data, what="SSH private key"):
    """Load an unencrypted OpenSSH private key; return the key object."""
    try:
        return serialization.load_ssh_private_key(bytes(data), password=None)
    except (ValueError, TypeError) as exc:
        raise KeysError("%s is not a readable unencrypted OpenSSH private key (%s)" % (what, exc))
    except Exception as exc:  # unsupported algorithms raise library-specific errors
        raise KeysError("%s cannot be loaded: %s" % (what, exc))


def ssh_public_blob(line):
    parts = line.split()
    if len(parts) < 2:
        raise KeysError("not an SSH public key line")
    try:
        return parts[0], base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise KeysError("SSH public key is not valid base64")


def ssh_fingerprint(line):
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    blob = ssh_public_blob(line)[1]
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def same_ssh_public(a, b):
    """Whether two public key lines carry the same key (comments ignored)."""
    try:
        return ssh_public_blob(a) == ssh_public_blob(b)
    except KeysError:
        return False


def known_hosts_line(host, port, public_line):
    t, blob = ssh_public_blob(public_line)
    name = host if int(port) == 22 else "[%s]:%d" % (host, int(port))
    return "%s %s %s" % (name, t, base64.b64encode(blob).decode("ascii"))


# ---------------------------------------------------------------------------
# Layout

def secret_layout(root, ssh_types, offloading_user="offloading"):
    """Paths inside the secret root, as the guest expects to receive them."""
    layout = {
        "ssh_dir": os.path.join(root, "etc", "ssh"),
        "authorized_dir": os.path.join(root, "etc", "ssh", "authorized_keys.d"),
        "authorized": os.path.join(root, "etc", "ssh", "authorized_keys.d", offloading_user),
        "guix_dir": os.path.join(root, "etc", "guix"),
        "guix_sec": os.path.join(root, "etc", "guix", "signing-key.sec"),
        "guix_pub": os.path.join(root, "etc", "guix", "signing-key.pub"),
        "guix_acl": os.path.join(root, "etc", "guix", "acl"),
        "nix_dir": os.path.join(root, "etc", "nix"),
        "nix_sec": os.path.join(root, "etc", "nix", "signing-key.sec"),
        "nix_pub": os.path.join(root, "etc", "nix", "signing-key.pub"),
        "host_keys": {},
    }
    for kind in ssh_types:
        priv = os.path.join(root, "etc", "ssh", "ssh_host_%s_key" % kind)
        layout["host_keys"][kind] = (priv, priv + ".pub")
    return layout


def check_name(name):
    if not name or "/" in name or "\0" in name or name in (".", "..") or name.startswith("-"):
        raise KeysError("name %r must be a single path component (no '/', not '.' or '..')" % name)
    if not re.match(r"^[A-Za-z0-9._@+-]+$", name):
        raise KeysError("name %r may only contain letters, digits and . _ @ + -" % name)


# ---------------------------------------------------------------------------
# Grouped atomic writes

def write_group(files, unlink_first=(), hook=None):
    """Install ``files`` (a list of ``(path, bytes, mode)``) as one unit.

    Every file is first written in full to a temporary file next to its target
    (mode set before any content, fsynced).  Then the paths in ``unlink_first``
    (old private halves being replaced) are removed, and the temporary files are
    renamed into place in list order, so callers list public halves before
    private ones: a process killed at any point leaves, for each pair, either the
    old pair, the new pair, or a public half alone, never a private key without
    its public half and never a partly written file.  ``hook(stage)`` is called
    between steps (tests use it).  On an exception the temporary files are
    removed.
    """
    temps = []
    try:
        for path, content, mode in files:
            directory = os.path.dirname(path) or "."
            _io.check_target(path)
            fd, tmp = _io.make_temp(path, TEMP_TAG, mode)
            temps.append(tmp)
            try:
                _io.write_all(fd, content)
                os.fsync(fd)
            finally:
                os.close(fd)
            if hook:
                hook("written:" + path)
        for path in unlink_first:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            if hook:
                hook("unlinked:" + path)
        for (path, _content, mode), tmp in zip(files, temps):
            os.rename(tmp, path)
            if hook:
                hook("renamed:" + path)
        for directory in sorted(set(os.path.dirname(p) or "." for p, _c, _m in files)):
            _io.fsync_dir(directory)
        temps = []
    finally:
        for tmp in temps:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def temp_files(directory):
    """Temporary files of write_group in ``directory`` (of any run, alive or not)."""
    return _io.temps_in(directory, TEMP_TAG, stale_only=False)


def stale_temp_files(directory):
    """Temporary files a killed run left in ``directory`` (never a live run's)."""
    return _io.temps_in(directory, TEMP_TAG, stale_only=True)
