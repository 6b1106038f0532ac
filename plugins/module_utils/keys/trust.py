# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which keys a host trusts: editing the Guix ACL (``/etc/guix/acl``) and the
``trusted-public-keys`` of ``nix.conf``.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.vmhost.virt.plugins.module_utils.keys.errors import KeysError
from ansible_collections.vmhost.virt.plugins.module_utils.keys.sexp import sexp_dump, sexp_dump_canonical, sexp_parse


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
