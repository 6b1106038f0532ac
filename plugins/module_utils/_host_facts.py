# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backend of the host_facts module: what every vmhost.virt role needs to know of a host.

One module run instead of ``setup`` plus a ``stat`` plus a ``set_fact``: the OS facts
(distribution, version, OS family) and the package manager, read by Ansible's own fact
collectors (the same code ``setup`` runs, so the values are the same), and whether systemd
runs as the init system (``/run/systemd/system`` is a directory: false in a chroot or while
an image is built).  The backend only reads; it plans no change.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.vmhost.virt.plugins.module_utils._module import Backend, ModuleFailure
from ansible_collections.vmhost.virt.plugins.module_utils._tools import SYSTEMD_DIR

# The facts the roles read (without the ``ansible_`` prefix), and the subsets that give them.
OS_FACTS = ("distribution", "distribution_version", "distribution_major_version",
            "distribution_release", "os_family", "pkg_mgr")
SUBSETS = ["!all", "!min", "distribution", "pkg_mgr"]


def collect_os_facts(module, timeout=10):
    """Ansible's collectors for ``SUBSETS``; returns ``{name: value}`` for ``OS_FACTS``."""
    from ansible.module_utils.facts import ansible_collector, default_collectors
    from ansible.module_utils.facts.namespace import PrefixFactNamespace

    collector = ansible_collector.get_ansible_collector(
        all_collector_classes=default_collectors.collectors,
        namespace=PrefixFactNamespace(namespace_name="ansible", prefix="ansible_"),
        gather_subset=SUBSETS, gather_timeout=timeout, filter_spec=[],
        minimal_gather_subset=frozenset())
    found = collector.collect(module=module)
    return dict((name, found["ansible_" + name]) for name in OS_FACTS if "ansible_" + name in found)


class HostFactsBackend(Backend):
    """``collect()`` returns the OS facts (``collect_os_facts`` bound to the module);
    ``root`` is prefixed to ``/run/systemd/system`` (tests)."""

    report_actions = False

    def __init__(self, params, check_mode=False, tools=None, collect=None, root="/"):
        Backend.__init__(self, params, check_mode, tools)
        self.collect = collect
        self.root = root

    def plan(self):
        facts = self.collect()
        missing = [name for name in ("distribution", "os_family", "pkg_mgr") if not facts.get(name)]
        if missing:
            raise ModuleFailure("could not work out %s of this host from /etc/os-release and the package "
                                "managers installed; vmhost.virt roles need them to pick packages"
                                % ", ".join(missing), ansible_facts={})
        facts["vmhost_systemd"] = os.path.isdir(os.path.join(self.root, SYSTEMD_DIR.lstrip("/")))
        self.result["ansible_facts"] = facts
        return []

    def diff(self):
        return None
