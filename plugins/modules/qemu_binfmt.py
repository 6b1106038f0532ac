#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: qemu_binfmt
short_description: Register QEMU user-mode emulators with the kernel's binfmt_misc
version_added: 0.1.0
description:
  - Registers (or removes) one C(binfmt_misc) handler per foreign platform, named C(qemu-<platform>),
    so that the kernel runs foreign-architecture ELF programs through the matching QEMU user-mode
    emulator, transparently, also inside chroots and containers when O(flags.fix_binary=true).
  - The platform table (magic and mask bytes, families) is the collection's one copy of these
    facts, taken from QEMU's C(qemu-binfmt-conf.sh) and checked against Debian's C(qemu-user-static).
  - Reads every C(/proc/sys/fs/binfmt_misc/qemu-<platform>) entry back and compares interpreter,
    flags, offset, magic, mask and the enabled state; registers what is missing, re-registers
    (remove, then add) what differs, and removes entries with O(state=absent).
  - Mounts C(binfmt_misc) at O(binfmt_misc_path) when it is not mounted.
  - Before changing anything, inspects each interpreter with pyelftools and fails with a message
    naming the file and the fix when it is missing, not an ELF file, built for another machine
    than this host, or dynamically linked while O(flags.fix_binary=true).
author:
  - vmhost.virt contributors (@vmhost)
requirements:
  - pyelftools (Debian/Ubuntu C(python3-pyelftools)) on the managed host
  - root on the managed host (binfmt_misc is kernel-wide)
extends_documentation_fragment:
  - vmhost.virt.attributes
  - vmhost.virt.attributes.files
attributes:
  check_mode:
    support: full
    details: Check mode reads the kernel's entries and the files and reports exactly the changes a
      real run would make, without mounting, registering or writing.
  diff_mode:
    support: full
    details: The diff shows each managed entry (and each O(persistent) file) before and after.
  safe_file_operations:
    support: full
    details: Files under O(binfmt_d_path) are written to a temporary file in the same directory
      and renamed into place.
  idempotent:
    support: full
    details: A second run with the same options reports no change.
options:
  platforms:
    description:
      - Platform names to manage, or V(all) for every platform in the table.
      - The default, an empty list, manages nothing (the safest default).
      - Valid names are V(i386), V(i486), V(x86_64), V(alpha), V(arm), V(armeb), V(sparc),
        V(sparc32plus), V(sparc64), V(ppc), V(ppc64), V(ppc64le), V(m68k), V(mips), V(mipsel),
        V(mipsn32), V(mipsn32el), V(mips64), V(mips64el), V(sh4), V(sh4eb), V(s390x), V(aarch64),
        V(aarch64_be), V(hppa), V(riscv32), V(riscv64), V(xtensa), V(xtensaeb), V(microblaze),
        V(microblazeel), V(or1k), V(hexagon) and V(loongarch64).
    type: list
    elements: str
    default: []
  state:
    description:
      - V(present) registers the handlers, V(absent) removes them (and their O(persistent) files).
    type: str
    choices: [present, absent]
    default: present
  interpreter_dir:
    description:
      - Directory holding the emulators, named C(qemu-<platform><interpreter_suffix>) (V(i486) uses C(qemu-i386)).
    type: path
    default: /usr/bin
  interpreter_suffix:
    description:
      - Suffix of the emulator file names; V(-static) is Debian's and Fedora's statically linked build.
    type: str
    default: -static
  flags:
    description:
      - binfmt_misc flags for every managed entry. Unset flags keep their defaults.
    type: dict
    default: {}
    suboptions:
      fix_binary:
        description:
          - V(F). The kernel opens the interpreter when the entry is registered, so it also works in
            chroots, containers and other mount namespaces. Needs a statically linked interpreter.
        type: bool
        default: true
      preserve_argv0:
        description:
          - V(P). Pass the program's original C(argv[0]) (QEMU 6.0 and later detect this flag).
        type: bool
        default: true
      credentials:
        description:
          - V(C). Compute credentials (setuid bits) from the program, not the interpreter. Implies
            O(flags.open_binary).
        type: bool
        default: false
      open_binary:
        description:
          - V(O). Hand the interpreter an open file descriptor of the program.
        type: bool
        default: false
  skip_host_family:
    description:
      - Never manage the platforms of the host's own family (on an x86_64 host V(i386), V(i486) and
        V(x86_64)), so the kernel never hands native programs to QEMU. Skipped names are returned in RV(skipped_platforms).
    type: bool
    default: true
  persistent:
    description:
      - Also write one C(<binfmt_d_path>/qemu-<platform>.conf) per platform, read by systemd-binfmt at
        boot, so the handlers survive a reboot; V(state=absent) removes those files.
      - When unset, V(true) if the host runs systemd (C(/run/systemd/system) exists), else V(false).
    type: bool
  binfmt_d_path:
    description:
      - Directory for the O(persistent) files.
    type: path
    default: /etc/binfmt.d
  distribution_services:
    description:
      - systemd services of the distribution that register binfmt_misc entries themselves
        (Debian's C(binfmt-support.service)). With O(state=present), each one that is enabled
        or running is stopped and disabled (C(systemctl disable --now)) before anything is
        registered. Stopping Debian's C(binfmt-support) unregisters its C(qemu-*) entries,
        which carry this module's entry names, and left enabled it would register its own at
        boot. A service that is not installed is left alone. Without a running systemd the
        service is only disabled.
    type: list
    elements: str
    default: []
  mask_binfmt_d:
    description:
      - File names of the distribution's own C(binfmt.d) files, with C({}) standing for the
        platform (Fedora's C(qemu-{}-static.conf)). With O(state=present) and O(persistent),
        the file of every registered platform is masked in O(binfmt_d_path) (a symlink to
        C(/dev/null)), so that systemd-binfmt registers only this module's entry at boot.
    type: list
    elements: str
    default: []
  binfmt_misc_path:
    description:
      - Where binfmt_misc is (or gets) mounted.
    type: path
    default: /proc/sys/fs/binfmt_misc
  match_file:
    description:
      - An ELF file to classify; RV(match) tells which platform it is and which registered handler
        the kernel would run it with, after this run.
    type: path
notes:
  - binfmt_misc registrations are global to the kernel (and to every container sharing it).
  - Debian's qemu-user-static ships C(/usr/lib/binfmt.d/qemu-<platform>.conf) files with the same
    names; a persistent file in C(/etc/binfmt.d) overrides its namesake, and after V(state=absent)
    the distribution's file still registers its own entry at the next boot.
seealso:
  - name: binfmt_misc
    description: The kernel's documentation of the register format and flags.
    link: https://docs.kernel.org/admin-guide/binfmt-misc.html
"""

EXAMPLES = r"""
- name: Run arm64 and riscv64 programs transparently
  vmhost.virt.qemu_binfmt:
    platforms: [aarch64, riscv64]

- name: Every foreign platform, surviving reboots, argv[0] not preserved
  vmhost.virt.qemu_binfmt:
    platforms: all
    persistent: true
    flags:
      preserve_argv0: false

- name: Which handler would run this file?
  vmhost.virt.qemu_binfmt:
    platforms: [aarch64]
    match_file: /srv/rootfs-arm64/bin/busybox
  register: binfmt

- name: Take over from Debian's binfmt-support and Fedora's binfmt.d files
  vmhost.virt.qemu_binfmt:
    platforms: [aarch64]
    persistent: true
    distribution_services: [binfmt-support.service]
    mask_binfmt_d: ["qemu-{}-static.conf"]

- name: Remove the handlers again
  vmhost.virt.qemu_binfmt:
    platforms: [aarch64, riscv64]
    state: absent
"""

RETURN = r"""
registered:
  description: The managed entries present after the run (predicted in check mode), by platform name.
  returned: always
  type: dict
  sample:
    aarch64:
      entry: qemu-aarch64
      interpreter: /usr/bin/qemu-aarch64-static
      flags: PF
      enabled: true
skipped_platforms:
  description: Requested platforms left alone because they belong to the host's own family.
  returned: always
  type: list
  elements: str
  sample: [x86_64]
actions:
  description: What was (or, in check mode, would be) done, in order.
  returned: always
  type: list
  elements: str
  sample: ["mount /proc/sys/fs/binfmt_misc", "register qemu-aarch64", "write /etc/binfmt.d/qemu-aarch64.conf"]
persistent:
  description: Whether the persistent files were managed in this run.
  returned: always
  type: bool
  sample: true
match:
  description:
    - Classification of O(match_file), after this run.
    - C(platform) is the table platform whose magic and mask accept the file (null if none),
      C(machine) the ELF machine pyelftools reads (null for a non-ELF file), C(native) whether
      the host runs it itself, C(handler) and C(interpreter) the enabled binfmt_misc entry the
      kernel would use (null if none).
  returned: when O(match_file) is set
  type: dict
  sample:
    path: /tmp/busybox
    platform: aarch64
    machine: EM_AARCH64
    native: false
    handler: qemu-aarch64
    interpreter: /usr/bin/qemu-aarch64-static
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.vmhost.virt.plugins.module_utils import binfmt as B
from ansible_collections.vmhost.virt.plugins.module_utils._module import run
from ansible_collections.vmhost.virt.plugins.module_utils._qemu_binfmt import BinfmtBackend


def main():
    module = AnsibleModule(
        argument_spec=dict(
            platforms=dict(type="list", elements="str", default=[]),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            interpreter_dir=dict(type="path", default="/usr/bin"),
            interpreter_suffix=dict(type="str", default="-static"),
            flags=dict(type="dict", default={}, options=dict(
                fix_binary=dict(type="bool", default=True),
                preserve_argv0=dict(type="bool", default=True),
                credentials=dict(type="bool", default=False),
                open_binary=dict(type="bool", default=False),
            )),
            skip_host_family=dict(type="bool", default=True),
            persistent=dict(type="bool"),
            binfmt_d_path=dict(type="path", default="/etc/binfmt.d"),
            binfmt_misc_path=dict(type="path", default="/proc/sys/fs/binfmt_misc"),
            distribution_services=dict(type="list", elements="str", default=[]),
            mask_binfmt_d=dict(type="list", elements="str", default=[]),
            match_file=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    if not B.HAS_ELFTOOLS:
        module.fail_json(msg=missing_required_lib("pyelftools"),
                         exception="".join(traceback.format_exception_only(
                             type(B.ELFTOOLS_IMPORT_ERROR), B.ELFTOOLS_IMPORT_ERROR)))
    run(module, BinfmtBackend(module.params, module.check_mode))


if __name__ == "__main__":
    main()
