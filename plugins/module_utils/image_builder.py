# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Partitioned, formatted, optionally bootable disk images in a plain file.

Private to vmhost.virt: other collections must not import this module.

The engine behind ``vmhost.virt.partition_table``: plan (pure, in
:mod:`partitions`), compare with what the file holds, then build the whole
image in a temporary file beside the target -- table written in Python, each
file system made at its partition's offset by mkfs.ext4 ``-E offset`` /
mkfs.fat ``--offset`` + mtools ``@@offset`` -- and rename it into place.  No
loop device and no mount anywhere; a block device is written in place.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import hashlib
import json
import os
import re
import shutil
import stat

from ansible_collections.vmhost.virt.plugins.module_utils.qemu_img import (
    ImageError,
    parse_size,
    run,
)
from ansible_collections.vmhost.virt.plugins.module_utils import _io
from ansible_collections.vmhost.virt.plugins.module_utils._checksum import file_sha256, tool_stamp
from ansible_collections.vmhost.virt.plugins.module_utils import _tools
from ansible_collections.vmhost.virt.plugins.module_utils._tools import GRUB_EFI_DIR
from ansible_collections.vmhost.virt.plugins.module_utils import filesystems as fsmod
from ansible_collections.vmhost.virt.plugins.module_utils import partitions as ptmod

TEMP_TAG = "partition_table"
# Bump when the same request builds a different image (new mkfs options, a new layout rule).
DIGEST_VERSION = 1
DEFAULT_CMDLINE = "rw console=tty0 console=ttyS0,115200n8"
# Modules built into the EFI loader: it never loads any from disk.
GRUB_EFI_MODULES = (
    "part_gpt", "part_msdos", "ext2", "fat", "search", "search_fs_uuid", "configfile",
    "normal", "linux", "gzio", "echo", "test", "boot", "all_video", "efi_gop", "serial",
    "terminal", "sleep", "ls", "cat",
)


# ---------------------------------------------------------------------------
# bootloader pieces (pure)
def _version_key(name):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", name)]


def find_kernel(tree):
    """``(kernel, initrd or None)`` paths relative to ``tree`` (``boot/...``):
    the newest ``boot/vmlinuz-*`` and its ``boot/initrd.img-*``."""
    kernels = sorted(glob.glob(os.path.join(tree, "boot", "vmlinuz-*")),
                     key=lambda p: _version_key(os.path.basename(p)))
    if not kernels:
        raise ImageError("bootloader efi: no boot/vmlinuz-* kernel in %s" % tree)
    kernel = kernels[-1]
    version = os.path.basename(kernel)[len("vmlinuz-"):]
    initrd = os.path.join(tree, "boot", "initrd.img-" + version)
    rel = os.path.relpath(kernel, tree)
    return rel, (os.path.relpath(initrd, tree) if os.path.exists(initrd) else None)


def root_grub_cfg(root_uuid, kernel, initrd, cmdline):
    """``/boot/grub/grub.cfg`` on the root file system: boot its kernel."""
    lines = [
        "# written by vmhost.virt.partition_table",
        "set timeout=1",
        "serial --unit=0 --speed=115200",
        "terminal_input console serial",
        "terminal_output console serial",
        "search --no-floppy --fs-uuid --set=root %s" % root_uuid,
        "menuentry 'Linux' {",
        "  linux /%s root=UUID=%s %s" % (kernel, root_uuid, cmdline),
    ]
    if initrd:
        lines.append("  initrd /%s" % initrd)
    lines += ["}", ""]
    return "\n".join(lines)


def embedded_grub_cfg(root_uuid):
    """The configuration built into BOOTX64.EFI: find the root by UUID."""
    return ("search --no-floppy --fs-uuid --set=root %s\n"
            "set prefix=($root)/boot/grub\n"
            "configfile ($root)/boot/grub/grub.cfg\n" % root_uuid)


def grub_efi_argv(output, config_file):
    return (["grub-mkimage", "-O", "x86_64-efi", "-d", GRUB_EFI_DIR, "-o", output,
             "-p", "/boot/grub", "-c", config_file] + list(GRUB_EFI_MODULES))


# ---------------------------------------------------------------------------
def clean_stale_temps(path):
    """Remove temporary files and directories of earlier runs that were killed."""
    _io.clean_stale(path, TEMP_TAG)
    _io.clean_stale(path, TEMP_TAG + "-work")


def _is_block(path):
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def _device_size(path):
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        return handle.tell()


def tree_stamps(tree, checksum=False, origin="contents"):
    """One line per file below ``tree`` (sorted walk): path, type and mode, owner, size,
    mtime and ctime in ns, link target; with ``checksum`` a regular file's line also ends
    with the SHA-256 of its bytes (:func:`._checksum.file_sha256`, an :class:`ImageError`
    when the file vanished or is no longer the regular file listed)."""
    for root, dirs, files in os.walk(tree):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(root, name)
            try:
                st = os.lstat(full)
                target = os.readlink(full) if stat.S_ISLNK(st.st_mode) else ""
            except OSError as exc:
                raise ImageError("%s: %s cannot be read: %s" % (origin, full, exc.strerror or exc))
            line = "%s\0%o %d:%d %d %d %d\0%s" % (
                os.path.relpath(full, tree), st.st_mode, st.st_uid, st.st_gid, st.st_size,
                st.st_mtime_ns, st.st_ctime_ns, target)
            if checksum and stat.S_ISREG(st.st_mode):
                line += "\0" + file_sha256(full, (st.st_dev, st.st_ino), ImageError, origin)
            yield line + "\n"


class PartitionTable(_io.FileBackend):
    """Plan, compare and build one image.  ``params`` are the module's.

    As a :class:`_io.FileBackend`: :meth:`steps` validates everything and reads the
    existing image (writing nothing), then yields the one build step when the image
    differs (or a mode/owner/group change when only those differ)."""

    errors = (ImageError, _io.IoError)

    def __init__(self, params, check_mode=False, tools=None, environ=None, runner=None):
        _io.FileBackend.__init__(self, params, check_mode, tools)
        self.environ = os.environ if environ is None else environ
        self.runner = runner
        self.path = params["path"]
        self.layout = None
        self.existing = None
        self.after = None
        self.diffs = []
        self.estimates = {}
        self.digest = None

    # -- the module's plan ------------------------------------------------
    def steps(self):
        self.prepare()
        if not self.check_mode and not self.is_block:
            clean_stale_temps(self.path)    # leftovers of killed runs, whatever this run decides
        ours = False
        if not self.diffs and not self.is_block:
            # same table and file systems: the contents are compared through the record of
            # what the image was built from (it holds only if nothing wrote the image since)
            self.digest = self.plan_digest()
            record = _io.read_record(self.path)
            if record is not None and record.get("partition_table") not in (None, self.digest):
                self.diffs = ["the contents or options changed since %s was built" % self.path]
                ours = True     # our own unmodified build: replacing it loses nothing
        self.result.update(differences=self.diffs, source_date_epoch=self.epoch,
                           estimated_sizes=dict((str(k), v) for k, v in self.estimates.items()))
        if not self.diffs:
            self.result["table"] = self.table(self.existing)
            if not self.is_block:
                change = self.attributes_step(self.path)
                if change is not None:
                    yield change
            return
        if not self.is_block and self.digest is None:
            self.digest = self.plan_digest()
        if not ours and self.needs_force and not self.params["force"]:
            raise ImageError("%s differs from the requested layout (%s); set force: true to "
                             "replace it (its data will be lost)"
                             % (self.path, "; ".join(self.diffs)))
        yield self.step("writing %s" % self.path, self._build_and_read)

    def plan_digest(self):
        """SHA-256 of what the image is built from: the planned layout, the options, the tools'
        size and mtime, and every file of every ``contents`` tree with its type, mode, owner,
        size, mtime, ctime and link target.  Without ``checksum_sources`` not its bytes (a file
        rewritten with the same size, mtime and ctime is not seen; the digest is the one
        earlier releases recorded); with it also the SHA-256 of every regular file's bytes,
        and the option itself."""
        checksum = bool(self.params.get("checksum_sources"))
        digest = hashlib.sha256()
        tools = [shutil.which(t) or t for t in ("mkfs.ext4", "mkfs.fat", "mcopy", "debugfs", "grub-mkimage")]
        request = dict((key, self.params.get(key)) for key in (
            "label", "size", "disk_guid", "partitions", "bootloader", "kernel_cmdline"))
        # the request, not the layout: without source_date_epoch unset UUIDs are random
        head = [DIGEST_VERSION, request, self.epoch, [tool_stamp(t) for t in tools]]
        if checksum:
            head.append({"checksum_sources": True})
        digest.update(json.dumps(head, sort_keys=True, default=str).encode("utf-8", "surrogateescape"))
        for part in self.layout["partitions"]:
            if part["contents"] is not None:
                digest.update(("\0partition %d\0" % part["number"]).encode("ascii"))
                for line in tree_stamps(part["contents"], checksum,
                                        "partition %d contents" % part["number"]):
                    digest.update(line.encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    def _build_and_read(self):
        self.build(attributes=self.tools.set_attributes if self.tools is not None else None)
        self.after = self.read_existing()

    def failure_result(self):
        return dict(self.result)

    def finish(self):
        if "table" not in self.result:
            self.result["table"] = self.table(self.after)

    def diff(self):
        before = ptmod.summary(self.existing) if self.existing else None
        return {"before": before, "after": ptmod.summary(self.layout)}

    # -- planning ---------------------------------------------------------
    def source_date_epoch(self):
        """The option, else a non-empty SOURCE_DATE_EPOCH, else None (not reproducible)."""
        try:
            return _tools.resolve_epoch(self.params.get("source_date_epoch"), self.environ)
        except _tools.InputError as exc:
            raise ImageError(str(exc))

    def prepare(self):
        """Validate everything, plan the layout and read the existing image.

        Raises :class:`ImageError` before anything is written."""
        params = self.params
        self.epoch = self.source_date_epoch()
        self.is_block = _is_block(self.path)
        exists = os.path.exists(self.path)
        if os.path.islink(self.path) and not self.is_block:
            raise ImageError("%s is a symbolic link; give the image file itself (a link is "
                             "only followed to a block device)" % self.path)
        if exists and not self.is_block and not os.path.isfile(self.path):
            raise ImageError("%s exists and is %s, neither a regular file nor a block device"
                             % (self.path, _io.describe(self.path)))
        if exists:
            with open(self.path, "rb") as handle:
                if handle.read(4) == b"QFI\xfb":
                    raise ImageError("%s is a qcow2 image; partition_table writes raw images "
                                     "(build raw, then convert with vmhost.virt.disk_image)"
                                     % self.path)
        size = params.get("size")
        if size is not None:
            size = parse_size(size)
        elif exists:
            size = _device_size(self.path)
        else:
            raise ImageError("%s does not exist: give size to create it" % self.path)
        if self.is_block and size != _device_size(self.path):
            raise ImageError("size %d differs from the block device's %d bytes"
                             % (size, _device_size(self.path)))

        parts = []
        for index, part in enumerate(params.get("partitions") or [], 1):
            part = dict(part)
            contents = part.get("contents")
            if contents is not None and not os.path.isdir(contents):
                raise ImageError("partition %d: contents %s is not a directory"
                                 % (index, contents))
            if part.get("estimate_size"):
                if contents is None:
                    raise ImageError("partition %d: estimate_size needs contents" % index)
                if part.get("size") is not None:
                    raise ImageError("partition %d: give size or estimate_size, not both" % index)
                extra = 0
                if self.params.get("bootloader") == "efi" and "esp" in (part.get("flags") or []):
                    extra = 2 * 1024 * 1024
                part["size"] = ptmod.estimate(fsmod.tree_size(contents) + extra)
                self.estimates[index] = part["size"]
            part.pop("estimate_size", None)
            parts.append(part)

        seed = None
        if self.epoch is not None:
            request = {"label": params["label"], "size": size, "epoch": self.epoch,
                       "bootloader": params.get("bootloader"),
                       "cmdline": params.get("kernel_cmdline"),
                       "partitions": parts, "disk_guid": params.get("disk_guid")}
            seed = ptmod.layout_seed(request)
        self.layout = ptmod.plan(params["label"], size, parts, params.get("disk_guid"), seed)

        for part in self.layout["partitions"]:
            if part["contents"] is not None and part["fs"] in fsmod.FAT_TYPES:
                fsmod.fat_copy_plan(part["contents"])  # refuses links and bad names now
            if part["contents"] is not None:
                need = fsmod.tree_size(part["contents"])
                if need > part["size"]:
                    raise ImageError("partition %d: contents %s need about %d bytes, more than "
                                     "the partition's %d (use a bigger size or estimate_size)"
                                     % (part["number"], part["contents"], need, part["size"]))
        self.boot = None
        if params.get("bootloader") == "efi":
            self.boot = self._plan_efi()

        self.unreadable = None
        try:
            self.existing = self.read_existing() if exists else None
        except ImageError as exc:
            self.existing, self.unreadable = None, str(exc)
        if self.unreadable:
            self.diffs = ["%s holds an unreadable partition table (%s)"
                          % (self.path, self.unreadable)]
        elif exists:
            self.diffs = ptmod.differences(self.layout, self.existing)
            if self.existing is None and self._has_data():
                self.diffs = ["%s holds data but no partition table" % self.path]
        else:
            self.diffs = ["%s does not exist" % self.path]
        return self

    def _plan_efi(self):
        parts = self.layout["partitions"]
        esp = [p for p in parts if "esp" in p["flags"]]
        if not esp or esp[0]["fs"] not in fsmod.FAT_TYPES:
            raise ImageError("bootloader efi needs a partition with flag esp and a FAT fs")
        roots = [p for p in parts if "boot" in p["flags"] and p["fs"] in fsmod.EXT_TYPES]
        if not roots:
            roots = [p for p in parts if p["fs"] in fsmod.EXT_TYPES and p["contents"]
                     and glob.glob(os.path.join(p["contents"], "boot", "vmlinuz-*"))]
        if not roots:
            raise ImageError("bootloader efi needs an ext partition (flag boot, or contents "
                             "holding boot/vmlinuz-*) to boot")
        root = roots[0]
        if not root["contents"]:
            raise ImageError("bootloader efi: partition %d has no contents with a kernel"
                             % root["number"])
        kernel, initrd = find_kernel(root["contents"])
        if esp[0]["size"] < 2 * 1024 * 1024:
            raise ImageError("the ESP must be at least 2 MiB to hold the GRUB loader")
        cmdline = self.params.get("kernel_cmdline")
        if cmdline is None:
            cmdline = DEFAULT_CMDLINE
        return {"esp": esp[0]["number"], "root": root["number"], "kernel": kernel,
                "initrd": initrd, "cmdline": cmdline, "root_uuid": root["uuid"]}

    def _has_data(self):
        """Whether any byte of the image is not zero (holes are skipped)."""
        with open(self.path, "rb") as handle:
            if ptmod.probe_filesystem(handle, 0):
                return True
            return _io.first_data(handle) is not None

    def read_existing(self, path=None):
        path = path or self.path
        with open(path, "rb") as handle:
            table = ptmod.read_table(handle)
            if table is None:
                return None
            for part in table["partitions"]:
                found = ptmod.probe_filesystem(handle, part["start"]) or {}
                part["fs"] = found.get("fs")
                part["uuid"] = found.get("uuid")
                part["label"] = found.get("label")
        return table

    @property
    def needs_force(self):
        """True when building would replace an existing table or data."""
        return bool(self.diffs) and os.path.exists(self.path) and (
            self.existing is not None or self._has_data())

    # -- building ---------------------------------------------------------
    def build(self, attributes=None):
        """Write the image (temporary file + rename; block devices in place).

        ``attributes(tmp)`` sets mode/owner/group on the temporary file before
        its rename; a new image is 0600, a rebuilt one keeps the old mode."""
        if self.is_block:
            self._build_into(self.path)
            return
        clean_stale_temps(self.path)
        mode = os.stat(self.path).st_mode & 0o7777 if os.path.isfile(self.path) else None

        def fill(tmp):
            os.truncate(tmp, self.layout["size"])
            self._build_into(tmp)

        def before_commit(tmp):
            if attributes is not None:
                attributes(tmp)
            if self.digest is not None:     # what it is built from, for the next run's comparison
                _io.write_record(tmp, partition_table=self.digest)
        _io.build_atomically(self.path, TEMP_TAG, fill, mode, before_commit)

    def _build_into(self, target):
        layout = self.layout
        with open(target, "r+b") as handle:
            if self.is_block:
                # clear stale GPT copies at both ends before writing ours
                handle.seek(0)
                handle.write(b"\0" * (34 * ptmod.SECTOR))
                handle.seek(layout["size"] - 33 * ptmod.SECTOR)
                handle.write(b"\0" * (33 * ptmod.SECTOR))
            ptmod.write_table(handle, layout)
        scratch = _io.make_temp_dir(self.path, TEMP_TAG + "-work")
        try:
            for part in layout["partitions"]:
                if part["fs"] == "none":
                    continue
                tree = part["contents"]
                if self.boot and part["number"] == self.boot["esp"]:
                    tree = self._stage_esp(scratch, tree)
                fsmod.make_filesystem(part["fs"], target, part["size"], tree=tree,
                                      label=part["label"], uuid=part["uuid"],
                                      source_date_epoch=self.epoch, runner=self.runner,
                                      offset=part["start"], workdir=scratch)
                if self.boot and part["number"] == self.boot["root"]:
                    self._install_root_cfg(scratch, target, part)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _stage_esp(self, scratch, tree):
        stage = os.path.join(scratch, "esp")
        if tree:
            shutil.copytree(tree, stage, symlinks=True)
        boot_dir = os.path.join(stage, "EFI", "BOOT")
        if not os.path.isdir(boot_dir):
            os.makedirs(boot_dir)
        cfg = os.path.join(scratch, "embedded.cfg")
        with open(cfg, "w") as handle:
            handle.write(embedded_grub_cfg(self.boot["root_uuid"]))
        run(grub_efi_argv(os.path.join(boot_dir, "BOOTX64.EFI"), cfg), self.runner)
        return stage

    def _install_root_cfg(self, scratch, target, part):
        cfg = os.path.join(scratch, "grub.cfg")
        with open(cfg, "w") as handle:
            handle.write(root_grub_cfg(self.boot["root_uuid"], self.boot["kernel"],
                                       self.boot["initrd"], self.boot["cmdline"]))
        tree = part["contents"]
        cmds = []
        if not os.path.isdir(os.path.join(tree, "boot")):
            cmds.append("mkdir /boot")
        if not os.path.isdir(os.path.join(tree, "boot", "grub")):
            cmds.append("mkdir /boot/grub")
        if os.path.lexists(os.path.join(tree, "boot", "grub", "grub.cfg")):
            cmds.append("rm /boot/grub/grub.cfg")
        cmds.append('write "%s" /boot/grub/grub.cfg' % cfg)
        if self.epoch is not None:
            for path in ("/boot", "/boot/grub", "/boot/grub/grub.cfg"):
                for field in ("atime", "ctime", "crtime", "mtime"):
                    cmds.append("sif %s %s %d" % (path, field, self.epoch))
        out = fsmod.debugfs_script(target, cmds, self.runner, part["start"], self.epoch)
        if "write:" in out or "Could not" in out:
            raise ImageError("could not install /boot/grub/grub.cfg: %s" % out.strip()[-300:])

    # -- results ----------------------------------------------------------
    def table(self, after=None):
        """The ``table`` return value: ``after`` (what was read back) or the planned layout."""
        layout = after or self.layout
        parts = []
        for part in layout["partitions"]:
            item = {"number": part["number"], "start": part["start"], "size": part["size"],
                    "type": ptmod.type_text(layout["label"], part["type"]),
                    "flags": ptmod.flags_for_compare(layout["label"], part),
                    "fs": part.get("fs"), "label": part.get("label"), "uuid": part.get("uuid"),
                    "part_uuid": part.get("part_uuid"), "name": part.get("name")}
            if part["number"] in self.estimates:
                item["estimated"] = True
            parts.append(item)
        return {"label": layout["label"], "size": layout["size"], "disk_id": layout["id"],
                "partitions": parts}
