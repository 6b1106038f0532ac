# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backend of the qemu_binfmt module: binfmt_misc entries and binfmt.d files as Changes.

:class:`BinfmtBackend` validates the options (platforms, flags, interpreters), reads what
``binfmt_misc`` shows and yields one :class:`~._module.Change` per mount, registration,
removal or ``binfmt.d`` file; the shared base applies them unless in check mode.  The
pure encoding, parsing and matching live in :mod:`binfmt`.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.vmhost.virt.plugins.module_utils import _io
from ansible_collections.vmhost.virt.plugins.module_utils import _tools
from ansible_collections.vmhost.virt.plugins.module_utils import binfmt as B
from ansible_collections.vmhost.virt.plugins.module_utils._module import Backend, Change, ModuleFailure

TEMP_TAG = "qemu_binfmt"
SERVICE_NAME = re.compile(r"^[A-Za-z0-9:_.@-]+\.service$")
# a distribution's binfmt.d file name, "{}" standing for the platform (qemu-{}-static.conf)
MASK_NAME = re.compile(r"^[A-Za-z0-9._-]*\{\}[A-Za-z0-9._-]*\.conf$")


def read_text(path):
    """The text of ``path``, or None when it cannot be read."""
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def write_proc(path, text):
    """One write(2) of ``text`` to a binfmt_misc control file (the kernel wants one write)."""
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)
    except OSError as exc:
        raise B.BinfmtError("writing to %s failed: %s" % (path, exc))


def write_conf(path, content):
    """Replace ``path`` (a binfmt.d file) atomically (fsync, rename, directory fsync)."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    try:
        _io.atomic_write(path, content.encode("utf-8"), 0o644, TEMP_TAG)
    except _io.IoError as exc:
        raise B.BinfmtError(str(exc))


def mask_link(path):
    """Make ``path`` a symlink to /dev/null (systemd's way to mask a binfmt.d file), atomically."""
    directory, prefix = _io.temp_prefix(path, TEMP_TAG)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    tmp = os.path.join(directory, prefix + os.urandom(6).hex())
    try:
        os.symlink("/dev/null", tmp)
        os.rename(tmp, path)
        _io.fsync_dir(os.path.dirname(path))
    except OSError:
        _io.discard(tmp)
        raise


def interpreter_info(path):
    """What :func:`binfmt.check_interpreter` needs to know about ``path``."""
    if not os.path.isfile(path):
        return "missing"
    try:
        with open(path, "rb") as handle:
            return B.inspect_elf(handle)
    except B.BinfmtError as exc:
        return str(exc).replace("not an ELF file ", "").strip("()") or "not ELF"
    except (IOError, OSError) as exc:
        return "cannot be read: %s" % exc


def classify(path, entries, host):
    """The ``match`` return value: which platform row and which enabled entry take ``path``."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(B.BINPRM_BUF_SIZE)
            handle.seek(0)
            try:
                info = B.inspect_elf(handle)
            except B.BinfmtError:
                info = None
    except (IOError, OSError) as exc:
        raise B.BinfmtError("match_file %s cannot be read: %s" % (path, exc))
    names = B.match_platforms(head)
    own = B.host_platform(host)
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


class BinfmtBackend(Backend):
    """Plan from the options and what binfmt_misc shows; the base applies unless in check mode.

    ``host`` is the machine name (``uname -m``); ``run_command`` runs ``mount`` (argv list,
    returns ``(rc, out, err)``)."""

    def __init__(self, params, check_mode=False, tools=None, host=None, run_command=None):
        Backend.__init__(self, params, check_mode, tools)
        self.misc = params["binfmt_misc_path"]
        self.host = host or os.uname()[4]
        self.run_command = run_command or _tools.run_command
        self.wanted = {}
        self.current = {}
        self.after = {}
        self.before_all = {}
        self.files_before = {}
        self.files_after = {}
        self.services_before = {}
        self.services_after = {}
        self.systemd_dir = _tools.SYSTEMD_DIR

    # ------------------------------------------------------------ binfmt_misc
    def mounted(self):
        return os.path.exists(os.path.join(self.misc, "register"))

    def mount(self):
        rc, out, err = self.run_command(["mount", "-t", "binfmt_misc", "binfmt_misc", self.misc])
        if rc != 0 or not self.mounted():
            raise ModuleFailure("mount -t binfmt_misc binfmt_misc %s failed (rc=%s): %s; mount it yourself "
                                "(mount -t binfmt_misc binfmt_misc %s) or fix binfmt_misc_path"
                                % (self.misc, rc, (err or out).strip() or "no register file appeared", self.misc))

    def read_entry(self, name):
        text = read_text(os.path.join(self.misc, name))
        return None if text is None else B.parse_entry(name, text)

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
        write_proc(os.path.join(self.misc, "register"), B.register_line(entry))

    def remove(self, name):
        write_proc(os.path.join(self.misc, name), "-1")

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

    @staticmethod
    def step(description, func, *args):
        """A Change whose failure stops the run, saying that later steps were not done."""
        def apply():
            try:
                func(*args)
            except (B.BinfmtError, OSError) as exc:
                raise ModuleFailure("%s (nothing after this step was changed)" % exc)
        return Change(description, apply=apply)

    # ------------------------------------------------------------ the distribution's registrar
    def unit_state(self, unit, running):
        """(enabled, active) of ``unit``; a unit that is not installed is neither."""
        rc, out, _err = self.run_command(["systemctl", "is-enabled", unit])
        enabled = out.strip() in ("enabled", "enabled-runtime")
        active = False
        if running:
            rc, out, _err = self.run_command(["systemctl", "is-active", unit])
            active = out.strip() in ("active", "activating", "reloading")
        return enabled, active

    def disable_unit(self, unit, running):
        argv = ["systemctl", "disable"] + (["--now"] if running else []) + [unit]
        rc, out, err = self.run_command(argv)
        if rc != 0:
            raise ModuleFailure("%s failed (rc=%s): %s (nothing after this step was changed)"
                                % (" ".join(argv), rc, (err or out).strip()))

    def service_names(self):
        units = self.params["distribution_services"] or []
        bad = [u for u in units if not SERVICE_NAME.match(u)]
        if bad:
            raise ModuleFailure("distribution_services: %s is not a systemd service name (like "
                                "binfmt-support.service)" % ", ".join(repr(u) for u in bad))
        return units

    def take_over_services(self, units):
        """Stop and disable the distribution's own registration services ``units`` (checked by
        :meth:`service_names`; before registering: stopping Debian's binfmt-support unregisters
        its entries, which carry our names)."""
        if not units or self.params["state"] != "present":
            return
        running = os.path.isdir(self.systemd_dir)
        for unit in units:
            enabled, active = self.unit_state(unit, running)
            if not (enabled or active):
                continue
            self.services_before[unit] = {"enabled": enabled, "active": active}
            self.services_after[unit] = {"enabled": False, "active": False}
            yield Change("%s %s" % ("stop and disable" if active else "disable", unit),
                         apply=lambda unit=unit: self.disable_unit(unit, running))

    def mask_paths(self):
        """The distribution's binfmt.d files to mask, one per wanted platform and pattern."""
        patterns = self.params["mask_binfmt_d"] or []
        bad = [m for m in patterns if not MASK_NAME.match(m) or m.count("{}") != 1]
        if bad:
            raise ModuleFailure("mask_binfmt_d: %s must be a file name ending in .conf with {} once for the "
                                "platform (like qemu-{}-static.conf)" % ", ".join(repr(m) for m in bad))
        own = set("%s.conf" % n for n in self.wanted)
        paths = []
        for name in sorted(self.wanted):
            for pattern in patterns:
                base = pattern.replace("{}", name[len(B.ENTRY_PREFIX):])
                if base in own:
                    raise ModuleFailure("mask_binfmt_d: %s would mask this module's own file %s"
                                        % (pattern, base))
                paths.append(os.path.join(self.params["binfmt_d_path"], base))
        return paths

    # ------------------------------------------------------------ the plan
    def wanted_entries(self, selected, flags):
        p = self.params
        wanted = {}
        for name in selected:
            try:
                interp = B.interpreter_path(name, p["interpreter_dir"], p["interpreter_suffix"])
                entry = B.wanted_entry(name, interp, flags)
                B.register_line(entry)
            except B.BinfmtError as exc:
                raise ModuleFailure(str(exc))
            wanted[entry["name"]] = entry
        return wanted

    def check_interpreters(self, flags):
        problems = []
        for entry in self.wanted.values():
            path = entry["interpreter"]
            problems.extend(B.check_interpreter(path, interpreter_info(path), self.host, flags["fix_binary"]))
        if problems:
            raise ModuleFailure("; ".join(problems), problems=problems)

    def plan(self):
        p = self.params
        try:
            selected, skipped = B.select_platforms(p["platforms"], self.host, p["skip_host_family"])
            flags = B.normalize_flags(p["flags"])
        except B.BinfmtError as exc:
            raise ModuleFailure(str(exc))
        persistent = p["persistent"]
        if persistent is None:
            persistent = os.path.isdir(self.systemd_dir)
        state = p["state"]
        self.result.update(skipped_platforms=skipped, persistent=persistent)

        self.wanted = wanted = self.wanted_entries(selected, flags)
        if state == "present":
            self.check_interpreters(flags)
        if p["match_file"] and not os.path.isfile(p["match_file"]):
            raise ModuleFailure("match_file %s does not exist or is not a regular file" % p["match_file"])
        if persistent and os.path.exists(p["binfmt_d_path"]) and not os.path.isdir(p["binfmt_d_path"]):
            raise ModuleFailure("binfmt_d_path %s exists and is not a directory" % p["binfmt_d_path"])

        masks = self.mask_paths() if persistent and state == "present" else []
        units = self.service_names()

        if not self.mounted():
            if not os.path.isdir(self.misc):
                raise ModuleFailure("binfmt_misc is not mounted and its mount point %s is not a directory: "
                                    "check binfmt_misc_path, or load the binfmt_misc kernel module "
                                    "(modprobe binfmt_misc); mount it yourself (mount -t binfmt_misc "
                                    "binfmt_misc %s) or fix binfmt_misc_path" % (self.misc, self.misc))
            yield Change("mount %s" % self.misc, apply=self.mount)
        # after every check that can refuse the run, before anything is registered
        yield from self.take_over_services(units)

        self.before_all = self.read_all()
        self.current = current = dict((n, self.before_all.get(n)) for n in wanted)
        self.after = after = dict(current)
        for action, name in B.plan(wanted, current, state):
            if action == "register":
                yield self.step("register %s" % name, self.register, wanted[name])
                after[name] = wanted[name]
            elif action == "replace":
                yield self.step("re-register %s" % name, self.replace, current[name], wanted[name])
                after[name] = wanted[name]
            else:
                yield self.step("remove %s" % name, self.remove, name)
                after[name] = None
        if persistent:
            # What a killed run left in binfmt_d_path (only our own tag, uid and dead PIDs).
            for tmp in _io.temps_in(p["binfmt_d_path"], TEMP_TAG):
                yield self.step("remove stale temporary file %s" % tmp, _io.discard, tmp)
            for name in sorted(wanted):
                path = os.path.join(p["binfmt_d_path"], "%s.conf" % name)
                have = read_text(path)
                want = B.binfmt_d_content(wanted[name]) if state == "present" else None
                if have is not None:
                    self.files_before[path] = have
                if want is not None:
                    self.files_after[path] = want
                if have == want:
                    continue
                if want is None:
                    yield self.step("remove %s" % path, os.unlink, path)
                else:
                    yield self.step("write %s" % path, write_conf, path, want)
            for path in masks:
                have = os.readlink(path) if os.path.islink(path) else read_text(path)
                if have is not None:
                    self.files_before[path] = have
                self.files_after[path] = "/dev/null"
                if os.path.islink(path) and have == "/dev/null":
                    continue
                if os.path.isdir(path) and not os.path.islink(path):
                    raise ModuleFailure("%s is a directory: cannot mask it" % path)
                yield self.step("mask %s" % path, mask_link, path)

    def finish(self):
        if not self.check_mode:
            # Report what the kernel says now, not what we asked for.
            self.after = dict((n, self.read_entry(n)) for n in self.wanted)
        self.result["registered"] = dict(
            (n[len(B.ENTRY_PREFIX):],
             {"entry": n, "interpreter": e["interpreter"], "flags": e["flags"], "enabled": e["enabled"]})
            for n, e in sorted(self.after.items()) if e is not None)
        if self.params["match_file"]:
            entries = dict(self.before_all)
            entries.update(self.after)
            entries = dict((n, e) for n, e in entries.items() if e is not None)
            try:
                self.result["match"] = classify(self.params["match_file"], entries, self.host)
            except B.BinfmtError as exc:
                raise ModuleFailure(str(exc))

    def diff(self):
        before = {"entries": dict((n, B.entry_view(e)) for n, e in self.current.items() if e),
                  "files": self.files_before}
        after = {"entries": dict((n, B.entry_view(e)) for n, e in self.after.items() if e),
                 "files": self.files_after}
        if self.services_before:
            before["services"], after["services"] = self.services_before, self.services_after
        return {"before": before, "after": after}
