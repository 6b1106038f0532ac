# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a build VM's secrets live inside its secret root, and which names are safe.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.vmhost.virt.plugins.module_utils.keys.errors import KeysError


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
