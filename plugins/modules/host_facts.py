#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: host_facts
short_description: Gather, in one run, the host facts every vmhost.virt role needs
version_added: "0.1.0"
description:
  - Returns the distribution, its version and release, the OS family and the package
    manager (read by the same fact collectors as C(ansible.builtin.setup), so the values
    are the same), and whether systemd runs as the init system.
  - The collection's roles run it first, only when one of these facts is missing, so a play
    needs no C(gather_facts) and the second role on a host skips it. One module run replaces
    C(ansible.builtin.setup), C(ansible.builtin.stat) and C(ansible.builtin.set_fact).
  - Whether systemd runs is C(ansible_facts.vmhost_systemd), true when C(/run/systemd/system)
    is a directory (false in a chroot and while an image is built). The roles let the
    inventory variable C(vmhost_systemd_running) decide instead when it is set.
author:
  - vmhost.virt contributors (@vmhost)
extends_documentation_fragment:
  - vmhost.virt.attributes
  - vmhost.virt.attributes.facts
attributes:
  check_mode:
    support: full
    details: The module only reads the host; it gathers the same facts in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: The module never reports a change.
  facts:
    support: full
options: {}
notes:
  - C(ansible_facts.module_setup) is not set, so a later play with C(gather_facts) still
    gathers its full set.
"""

EXAMPLES = r"""
- name: Gather what the vmhost.virt roles need, only when something is missing
  vmhost.virt.host_facts:
  when: >-
    ['distribution', 'distribution_major_version', 'os_family', 'pkg_mgr', 'vmhost_systemd']
    | reject('in', ansible_facts) | list | length > 0

- name: Restart a unit only where systemd runs
  ansible.builtin.systemd_service:
    name: libvirtd.service
    state: restarted
  when: vmhost_systemd_running | default(ansible_facts['vmhost_systemd']) | bool
"""

RETURN = r"""
ansible_facts:
  description: The facts gathered.
  returned: success
  type: dict
  contains:
    distribution:
      description: As C(ansible.builtin.setup) reports it.
      type: str
      sample: Debian
    distribution_version:
      description: As C(ansible.builtin.setup) reports it.
      type: str
      sample: "13.1"
    distribution_major_version:
      description: As C(ansible.builtin.setup) reports it.
      type: str
      sample: "13"
    distribution_release:
      description: As C(ansible.builtin.setup) reports it.
      type: str
      sample: trixie
    os_family:
      description: As C(ansible.builtin.setup) reports it.
      type: str
      sample: Debian
    pkg_mgr:
      description: As C(ansible.builtin.setup) reports it.
      type: str
      sample: apt
    vmhost_systemd:
      description: Whether systemd runs as the init system (C(/run/systemd/system) is a directory).
      type: bool
      sample: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmhost.virt.plugins.module_utils._host_facts import HostFactsBackend, collect_os_facts
from ansible_collections.vmhost.virt.plugins.module_utils._module import ModuleTools, run


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    run(module, HostFactsBackend(module.params, module.check_mode, tools=ModuleTools(module),
                                 collect=lambda: collect_os_facts(module)))


if __name__ == "__main__":
    main()
