# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""S-expressions as libgcrypt reads them and prints them (GCRYSEXP_FMT_ADVANCED).

A tree is a Python list (an s-expression list) whose atoms are bytes.  Guix keys and
ACLs are such trees.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import re

from ansible_collections.vmhost.virt.plugins.module_utils.keys.errors import KeysError

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
