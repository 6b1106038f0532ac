# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Nix signing keys: ``name:base64(seed || public)`` (64 bytes, libsodium's secret
key layout) and ``name:base64(public)`` (32 bytes), both Ed25519.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import os
import re

from ansible_collections.vmhost.virt.plugins.module_utils.keys.crypto import ed25519, serialization
from ansible_collections.vmhost.virt.plugins.module_utils.keys.errors import KeysError

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
