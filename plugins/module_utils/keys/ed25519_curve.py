# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ed25519 curve arithmetic in pure Python: scalar multiplication and point encoding.

Guix's default signing keys are ECDSA keys on the Ed25519 curve (not EdDSA keys), which
the cryptography library cannot make; this is the arithmetic they need.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

_P = 2 ** 255 - 19
GROUP_ORDER = 2 ** 252 + 27742317777372353535851937790883648493
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
