# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""OpenSSH keys: generate, load, public lines, fingerprints, known_hosts lines.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import hashlib

from ansible_collections.vmhost.virt.plugins.module_utils.keys.crypto import ec, ed25519, rsa, serialization
from ansible_collections.vmhost.virt.plugins.module_utils.keys.errors import KeysError

SSH_KEY_TYPES = ("ed25519", "ecdsa", "rsa")
MIN_RSA_BITS = 3072
DEFAULT_RSA_BITS = 3072


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
