#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: qemu_accel_probe
short_description: Find out whether KVM really works for a QEMU guest on this host
version_added: "0.1.0"
description:
  - Decides between KVM and TCG for one QEMU guest. A readable C(/dev/kvm) is not proof
    that KVM works (a stock kernel can hang under KVM, C(-cpu host) can abort on an MSR),
    so with O(kernel) the module boots that kernel under KVM with no root file system and
    waits for its root-mount panic, first with C(-cpu host), then with QEMU's default CPU.
  - Without O(kernel) it only checks that QEMU initialises KVM and quits, and says so in
    RV(reason).
  - A boot verdict is cached in O(cache_dir), keyed by the kernel, QEMU's version and the
    host's kernel release, so later runs do not boot again.
  - The same probe code runs the collection's test harness.
author:
  - vmhost.virt contributors (@vmhost)
extends_documentation_fragment:
  - vmhost.virt.attributes
attributes:
  check_mode:
    support: full
    details: The probe runs in check mode too (it changes nothing on the host); only the
      verdict cache is not written. A QEMU binary that is not installed yet gives TCG and
      C(/usr/bin/<qemu>) in check mode, where a real run fails.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: The module never reports a change.
options:
  qemu:
    description:
      - The QEMU system emulator, a name looked up in C(PATH) or an absolute path.
    type: str
    required: true
  policy:
    description:
      - V(auto) uses KVM when the probe says it works, else TCG.
      - V(kvm) fails unless KVM works. V(tcg) returns TCG without probing.
    type: str
    choices: [auto, kvm, tcg]
    default: auto
  kernel:
    description:
      - A guest kernel to boot-test KVM with (the one the guest will run is the best choice).
    type: path
  system:
    description:
      - The guest's system type (as in C(x86_64-linux)); KVM is only tried when the host's
        architecture can run it, and it selects the machine type and console of the probe.
    type: str
    default: x86_64-linux
  timeout:
    description:
      - Seconds each boot attempt may take before KVM is declared hanging.
    type: int
    default: 20
  cache_dir:
    description:
      - Directory for cached verdicts (C(accel/<key>.json) below it). Empty disables the cache.
    type: path
    default: /var/cache/vmhost-virt
"""

EXAMPLES = r"""
- name: Pick the accelerator for a build VM
  vmhost.virt.qemu_accel_probe:
    qemu: qemu-system-x86_64
    kernel: /srv/build-vms/debian.vmlinuz
  register: accel

- name: Show the verdict
  ansible.builtin.debug:
    msg: "{{ accel.accel }} ({{ accel.reason }})"

- name: Insist on KVM for an aarch64 guest
  vmhost.virt.qemu_accel_probe:
    qemu: qemu-system-aarch64
    system: aarch64-linux
    policy: kvm
"""

RETURN = r"""
accel:
  description: The accelerator to use.
  returned: success
  type: str
  sample: tcg
cpu:
  description: The CPU model the probe booted with under KVM (V(host) or V(null) for QEMU's
    default), V(max) for TCG.
  returned: success
  type: str
  sample: max
reason:
  description: Why, in one line (what each probe attempt saw).
  returned: success
  type: str
  sample: /dev/kvm is missing or not accessible
qemu:
  description: Absolute path of the QEMU binary.
  returned: success
  type: str
  sample: /usr/bin/qemu-system-x86_64
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmhost.virt.plugins.module_utils._qemu_accel_probe import AccelProbeBackend
from ansible_collections.vmhost.virt.plugins.module_utils._module import ModuleTools, run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            qemu=dict(type="str", required=True),
            policy=dict(type="str", default="auto", choices=["auto", "kvm", "tcg"]),
            kernel=dict(type="path"),
            system=dict(type="str", default="x86_64-linux"),
            timeout=dict(type="int", default=20),
            cache_dir=dict(type="path", default="/var/cache/vmhost-virt"),
        ),
        supports_check_mode=True,
    )
    run(module, AccelProbeBackend(module.params, module.check_mode, tools=ModuleTools(module)))


if __name__ == "__main__":
    main()
