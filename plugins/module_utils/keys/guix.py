# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Guix signing keys: what ``guix archive --generate-key`` makes and reads.

With its default parameters ``(genkey (ecdsa (curve Ed25519) (flags rfc6979)))``
libgcrypt creates an *ECDSA* key on the Ed25519 curve, not an EdDSA key.  The secret
``d`` is a clamped 256-bit scalar (printed as a big-endian MPI) and the public ``q`` is
the point ``d*B`` in the 32-byte Ed25519 point encoding.  The files are libgcrypt's
"advanced" s-expression print of the key, for example::

    (public-key \\n (ecc \\n  (curve Ed25519)\\n  (q #HEX#)\\n  )\\n )\\n

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.vmhost.virt.plugins.module_utils.keys.ed25519_curve import GROUP_ORDER, ed25519_encode_point, ed25519_scalar_mult
from ansible_collections.vmhost.virt.plugins.module_utils.keys.errors import KeysError
from ansible_collections.vmhost.virt.plugins.module_utils.keys.sexp import sexp_dump, sexp_find, sexp_parse


def _mpi_bytes(value):
    """libgcrypt's standard MPI format for a positive integer."""
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    if raw[0] & 0x80:
        raw = b"\x00" + raw
    return raw


GUIX_CURVE = b"Ed25519"


def _valid_scalar(d):
    return 0 < d < 2 ** 256 and d % GROUP_ORDER != 0


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
