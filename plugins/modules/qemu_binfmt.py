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
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Check mode reads the kernel's entries and the files and reports exactly the changes a
      real run would make, without mounting, registering or writing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The diff shows each managed entry (and each O(persistent) file) before and after.
  safe_file_operations:
    description: Writes files through a temporary file in the destination directory and an atomic rename.
    support: full
    details: Files under O(binfmt_d_path) are written to a temporary file in the same directory
      and renamed into place.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
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

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.vmhost.virt.plugins.module_utils import _io
from ansible_collections.vmhost.virt.plugins.module_utils import binfmt as B


class QemuBinfmt(object):
    """Plan from the options and what /proc shows, then act unless in check mode."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.check = module.check_mode
        self.actions = []
        self.misc = self.p["binfmt_misc_path"]
        self.host = os.uname()[4]

    # ---------------------------------------------------------------- helpers
    def fail(self, msg, **kw):
        self.module.fail_json(msg=msg, actions=self.actions, **kw)

    def step(self, description, func=None, *args):
        """One mutating step: recorded, and skipped in check mode."""
        self.actions.append(description)
        if not self.check and func is not None:
            func(*args)

    def _write_proc(self, path, text):
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, text.encode("utf-8"))
            finally:
                os.close(fd)
        except OSError as exc:
            raise B.BinfmtError("writing to %s failed: %s" % (path, exc))

    def mounted(self):
        return os.path.exists(os.path.join(self.misc, "register"))

    def mount(self):
        if not os.path.isdir(self.misc):
            raise B.BinfmtError("binfmt_misc mount point %s is not a directory" % self.misc)
        rc, out, err = self.module.run_command(["mount", "-t", "binfmt_misc", "binfmt_misc", self.misc])
        if rc != 0 or not self.mounted():
            raise B.BinfmtError("mount -t binfmt_misc binfmt_misc %s failed (rc=%s): %s"
                                % (self.misc, rc, (err or out).strip() or "no register file appeared"))

    def read_entry(self, name):
        path = os.path.join(self.misc, name)
        try:
            with open(path) as f:
                return B.parse_entry(name, f.read())
        except (IOError, OSError):
            return None

    def read_all(self):
        if not self.mounted():
            return {}
        out = {}
        for name in sorted(os.listdir(self.misc)):
            if name in ("register", "status"):
                continue
            entry = self.read_entry(name)
            if entry is not None:
                out[name] = entry
        return out

    def register(self, entry):
        self._write_proc(os.path.join(self.misc, "register"), B.register_line(entry))

    def remove(self, name):
        self._write_proc(os.path.join(self.misc, name), "-1")

    def replace(self, old, new):
        self.remove(old["name"])
        try:
            self.register(new)
        except B.BinfmtError:
            try:  # put the old handler back rather than leave none
                self.register(old)
            except B.BinfmtError:
                pass
            raise

    def write_file(self, path, content):
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        _io.clean_stale(path, "qemu_binfmt")
        try:
            _io.atomic_write(path, content.encode("utf-8"), 0o644, "qemu_binfmt")
        except _io.IoError as exc:
            raise B.BinfmtError(str(exc))

    @staticmethod
    def read_text(path):
        try:
            with open(path) as f:
                return f.read()
        except (IOError, OSError):
            return None

    # ---------------------------------------------------------------- checks
    def check_interpreters(self, wanted, fix_binary):
        problems = []
        for entry in wanted.values():
            path = entry["interpreter"]
            if not os.path.isfile(path):
                info = "missing"
            else:
                try:
                    with open(path, "rb") as f:
                        info = B.inspect_elf(f)
                except B.BinfmtError as exc:
                    info = str(exc).replace("not an ELF file ", "").strip("()") or "not ELF"
                except (IOError, OSError) as exc:
                    info = "cannot be read: %s" % exc
            problems.extend(B.check_interpreter(path, info, self.host, fix_binary))
        if problems:
            self.fail("; ".join(problems), problems=problems)

    def classify(self, path, entries):
        try:
            with open(path, "rb") as f:
                head = f.read(B.BINPRM_BUF_SIZE)
                f.seek(0)
                try:
                    info = B.inspect_elf(f)
                except B.BinfmtError:
                    info = None
        except (IOError, OSError) as exc:
            raise B.BinfmtError("match_file %s cannot be read: %s" % (path, exc))
        names = B.match_platforms(head)
        own = B.host_platform(self.host)
        native = bool(info) and own is not None and (
            info["machine"] == B.elf_machine_of(B.platform(own))
            and info["elfclass"] == (64 if bytearray(B.platform(own)["magic"])[4] == 2 else 32))
        handlers = B.match_entries(list(entries.values()), head)
        handler = handlers[0] if handlers else None
        return {
            "path": path,
            "platform": names[0] if names else None,
            "machine": info["machine_name"] if info else None,
            "native": native,
            "handler": handler,
            "interpreter": entries[handler]["interpreter"] if handler else None,
        }

    # ---------------------------------------------------------------- run
    def run(self):
        p = self.p
        try:
            selected, skipped = B.select_platforms(p["platforms"], self.host, p["skip_host_family"])
            flags = B.normalize_flags(p["flags"])
        except B.BinfmtError as exc:
            self.fail(str(exc))
        persistent = p["persistent"]
        if persistent is None:
            persistent = os.path.isdir("/run/systemd/system")
        state = p["state"]

        wanted = {}
        for name in selected:
            try:
                interp = B.interpreter_path(name, p["interpreter_dir"], p["interpreter_suffix"])
                entry = B.wanted_entry(name, interp, flags)
                B.register_line(entry)
            except B.BinfmtError as exc:
                self.fail(str(exc))
            wanted[entry["name"]] = entry
        if state == "present":
            self.check_interpreters(wanted, flags["fix_binary"])
        if p["match_file"] and not os.path.isfile(p["match_file"]):
            self.fail("match_file %s does not exist or is not a regular file" % p["match_file"])
        if persistent and os.path.exists(p["binfmt_d_path"]) and not os.path.isdir(p["binfmt_d_path"]):
            self.fail("binfmt_d_path %s exists and is not a directory" % p["binfmt_d_path"])

        try:
            if not self.mounted():
                if not os.path.isdir(self.misc):
                    raise B.BinfmtError("binfmt_misc is not mounted and its mount point %s is not a "
                                        "directory: check binfmt_misc_path, or load the binfmt_misc "
                                        "kernel module (modprobe binfmt_misc)" % self.misc)
                self.step("mount %s" % self.misc, self.mount)
        except B.BinfmtError as exc:
            self.fail("%s; mount it yourself (mount -t binfmt_misc binfmt_misc %s) or fix "
                      "binfmt_misc_path" % (exc, self.misc))

        before_all = self.read_all()
        current = dict((n, before_all.get(n)) for n in wanted)
        after = dict(current)
        files_before, files_after = {}, {}
        try:
            for action, name in B.plan(wanted, current, state):
                if action == "register":
                    self.step("register %s" % name, self.register, wanted[name])
                    after[name] = wanted[name]
                elif action == "replace":
                    self.step("re-register %s" % name, self.replace, current[name], wanted[name])
                    after[name] = wanted[name]
                else:
                    self.step("remove %s" % name, self.remove, name)
                    after[name] = None
            if persistent:
                for name in sorted(wanted):
                    path = os.path.join(p["binfmt_d_path"], "%s.conf" % name)
                    have = self.read_text(path)
                    want = B.binfmt_d_content(wanted[name]) if state == "present" else None
                    if have is not None:
                        files_before[path] = have
                    if want is not None:
                        files_after[path] = want
                    if have == want:
                        continue
                    if want is None:
                        self.step("remove %s" % path, os.unlink, path)
                    else:
                        self.step("write %s" % path, self.write_file, path, want)
        except (B.BinfmtError, OSError) as exc:
            self.fail("%s (nothing after this step was changed)" % exc)

        if not self.check:
            # Report what the kernel says now, not what we asked for.
            after = dict((n, self.read_entry(n)) for n in wanted)
        result = {
            "changed": bool(self.actions),
            "actions": self.actions,
            "skipped_platforms": skipped,
            "persistent": persistent,
            "registered": dict(
                (n[len(B.ENTRY_PREFIX):],
                 {"entry": n, "interpreter": e["interpreter"], "flags": e["flags"], "enabled": e["enabled"]})
                for n, e in sorted(after.items()) if e is not None),
        }
        if self.module._diff:
            result["diff"] = {
                "before": {"entries": dict((n, B.entry_view(e)) for n, e in current.items() if e),
                           "files": files_before},
                "after": {"entries": dict((n, B.entry_view(e)) for n, e in after.items() if e),
                          "files": files_after},
            }
        if p["match_file"]:
            entries = dict(before_all)
            entries.update(after)
            entries = dict((n, e) for n, e in entries.items() if e is not None)
            try:
                result["match"] = self.classify(p["match_file"], entries)
            except B.BinfmtError as exc:
                self.fail(str(exc))
        self.module.exit_json(**result)


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
            match_file=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    if not B.HAS_ELFTOOLS:
        module.fail_json(msg=missing_required_lib("pyelftools"),
                         exception="".join(traceback.format_exception_only(
                             type(B.ELFTOOLS_IMPORT_ERROR), B.ELFTOOLS_IMPORT_ERROR)))
    QemuBinfmt(module).run()


if __name__ == "__main__":
    main()
