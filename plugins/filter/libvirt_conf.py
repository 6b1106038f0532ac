# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters that render libvirt daemon configuration from the typed field table.

The logic lives in ``plugins/module_utils/libvirt_conf.py``; these are thin wrappers
that turn its errors into ``AnsibleFilterError`` messages naming the role variable.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.vmhost.virt.plugins.module_utils import libvirt_conf as lc


def _plain(value):
    """Turn Ansible's lazy/unsafe containers into plain Python values."""
    if isinstance(value, dict):
        return dict((str(k), _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def libvirt_conf(values, daemon="libvirtd", extra=None, allow_insecure=False, prefix=None):
    """Validate ``values`` (libvirt key -> value) and return the configuration file body."""
    try:
        return lc.render(daemon, _plain(values), _plain(extra), bool(allow_insecure), prefix)
    except lc.LibvirtConfError as exc:
        raise AnsibleFilterError(str(exc))


def libvirt_conf_vars(daemon="libvirtd", prefix=None):
    """Role variable names of the table's fields, in table order."""
    try:
        fields = lc.table(daemon)
    except lc.LibvirtConfError as exc:
        raise AnsibleFilterError(str(exc))
    prefix = lc.PREFIXES[daemon] if prefix is None else prefix
    return [prefix + f.key for f in fields]


def libvirt_socket_plan(values, mode="monolithic", prefix=None):
    """Validate libvirtd ``values`` and return the systemd socket plan for ``mode``."""
    try:
        settings, _extras = lc.normalize("libvirtd", _plain(values), None, prefix)
        return lc.socket_plan(settings, mode)
    except lc.LibvirtConfError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    def filters(self):
        return {
            "libvirt_conf": libvirt_conf,
            "libvirt_conf_vars": libvirt_conf_vars,
            "libvirt_socket_plan": libvirt_socket_plan,
        }
