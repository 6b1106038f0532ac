# -*- coding: utf-8 -*-
# Copyright (c) vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""xorriso: the command that writes a planned image, and reading an image back (listing, diff).

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re

from ansible_collections.vmhost.virt.plugins.module_utils.iso.tools import default_run, run_checked, tool_env
from ansible_collections.vmhost.virt.plugins.module_utils.iso.plan import BIOS_IMAGE, BOOT_CATALOG, EFI_IMAGE
from ansible_collections.vmhost.virt.plugins.module_utils.iso.grub import GRUB_BIOS_DIR


def xorriso_command(plan, out_path, staging, xorriso="xorriso"):
    """argv that writes the planned image to out_path (a new, empty regular file or a pipe).

    staging maps the ISO path of each generated file (content entries and boot
    images) to the file on disk that holds its bytes.

    ``no_emul_toc``: a new image in a regular file is the single-session image a pipe gets
    (no 64 KiB multi-session header), so both give the same bytes.  ``-end`` writes the image
    without the ``-commit`` that would load the written image back.  The volume dates are the
    epoch's; the node dates are whatever the sources have until the writer sets them all to the
    epoch in the written bytes (:func:`.stamp.stamp_dates`): xorriso's own way
    (``-alter_date_r`` and ``-find -exec set_to_mtime``, or ``-volume_date all_file_dates``)
    finds every node by its path, 0.6 s for 65 000 files before the first byte is written.
    ``always_gmt``: dates in UTC, as the stamped ones are.
    """
    compliance = "iso_9660_level=%d:no_emul_toc:always_gmt" % plan.level
    if plan.joliet:
        compliance += ":joliet_long_names" if plan.rock_ridge else ""
    argv = [
        xorriso, "-no_rc", "-report_about", "SORRY", "-abort_on", "FAILURE", "-return_with", "SORRY", "32",
        # Paths are data, never patterns: without this "-chmod 0600 /k*" changes every /k... file.
        "-iso_rr_pattern", "off", "-disk_pattern", "off",
        "-outdev", "stdio:" + out_path,
        # no fsync every 16 MiB while writing: the module fsyncs the finished file once
        "-stdio_sync", "off",
        "-follow", "param",
        "-compliance", compliance,
        "-rockridge", "on" if plan.rock_ridge else "off",
        "-joliet", "on" if plan.joliet else "off",
        "-acl", "off", "-xattr", "off", "-md5", "off", "-disk_dev_ino", "off", "-hardlinks", "off",
        "-uid", "0", "-gid", "0",  # every owner root, applied while writing (cheaper than -chown_r)
        "-volid", plan.volume_id,
        "-volset_id", "", "-publisher", "", "-application_id", "", "-system_id", "", "-preparer_id", "",
        "-volume_date", "c", plan.volume_digits,
        "-volume_date", "m", plan.volume_digits,
        "-volume_date", "uuid", plan.volume_digits,
        "-iso_nowtime", "=%d" % plan.epoch,
    ]
    for src, dest in plan.grafts:
        argv += ["-map", src, dest]
    for entry in sorted(plan.generated, key=lambda e: e.path):
        argv += ["-map", staging[entry.iso_path], entry.iso_path, "-chmod", "%04o" % entry.mode, entry.iso_path, "--"]
    if plan.boot:
        for path in plan.boot["images"]:
            argv += ["-map", staging[path], path, "-chmod", "0644", path, "--"]
    # Implicit parent directories get 0755 whatever xorriso's default.
    for key in sorted(plan.entries):
        e = plan.entries[key]
        if e.kind == "dir" and e.src is None:
            argv += ["-chmod", "0755", e.iso_path, "--"]
    if plan.boot:
        argv += boot_arguments(plan)
    argv += ["-end"]
    return argv


def boot_arguments(plan):
    boot = plan.boot
    args = ["-boot_image", "any", "cat_path=" + BOOT_CATALOG]
    if boot["bios"]:
        args += [
            "-boot_image", "grub", "bin_path=" + BIOS_IMAGE,
            "-boot_image", "any", "platform_id=0x00",
            "-boot_image", "any", "emul_type=no_emulation",
            "-boot_image", "any", "load_size=2048",
            "-boot_image", "any", "boot_info_table=on",
            "-boot_image", "grub", "grub2_boot_info=on",
        ]
        if boot["hybrid"]:
            args += ["-boot_image", "grub", "grub2_mbr=" + os.path.join(GRUB_BIOS_DIR, "boot_hybrid.img"),
                     "-boot_image", "any", "partition_table=on"]
    if boot["efi"]:
        if boot["bios"]:
            args += ["-boot_image", "any", "next"]
        args += ["-boot_image", "any", "efi_path=" + EFI_IMAGE,
                 "-boot_image", "any", "platform_id=0xef",
                 "-boot_image", "any", "emul_type=no_emulation"]
        if boot["hybrid"]:
            args += ["-boot_image", "any", "efi_boot_part=--efi-boot-image",
                     "-boot_image", "any", "gpt_disk_guid=volume_date_uuid"]
    return args


_LSDL = re.compile(r"^(\S+)\s+\d+\s+\S+\s+\S+\s+(\d+)\s+\w+\s+\d+\s+[\d:]+\s+'(.*?)'(?: -> '(.*)')?$")
_LBA = re.compile(r"^File data lba:\s*\d+\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*'(.*)'$")


def _unquote(text):
    return text.replace("'\"'\"'", "'")


def read_listing(image, run=default_run, xorriso="xorriso"):
    """{iso path: (type+mode string, size, link target, [(lba, blocks)])} of an existing image."""
    env = tool_env(1)
    argv = [xorriso, "-no_rc", "-report_about", "SORRY", "-indev", image,
            "-find", "/", "-exec", "lsdl", "--",
            "-find", "/", "-type", "f", "-exec", "report_lba", "--"]
    out = run_checked(run, argv, env, "xorriso (reading %s)" % image)[0]
    listing, extents = {}, {}
    for line in out.splitlines():
        m = _LSDL.match(line)
        if m:
            path = _unquote(m.group(3))
            listing[path] = (m.group(1), int(m.group(2)), _unquote(m.group(4)) if m.group(4) else None)
            continue
        m = _LBA.match(line)
        if m:
            extents.setdefault(_unquote(m.group(4)), []).append((int(m.group(1)), int(m.group(2))))
    return dict((p, v + (extents.get(p, []),)) for p, v in listing.items())


def _data_digest(image, extents, size):
    h = hashlib.sha256()
    left = size
    with open(image, "rb") as f:
        for lba, blocks in extents:
            f.seek(lba * 2048)
            want = min(left, blocks * 2048)
            h.update(f.read(want))
            left -= want
    return h.hexdigest()


def diff_images(before, after, run=default_run, xorriso="xorriso"):
    """Paths added, removed and changed (type, mode, size, link target or data) between two images."""
    old = read_listing(before, run=run, xorriso=xorriso) if before and os.path.exists(before) else {}
    new = read_listing(after, run=run, xorriso=xorriso)
    old.pop("/", None)
    new.pop("/", None)
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = []
    for path in sorted(set(old) & set(new)):
        o, n = old[path], new[path]
        if o[:3] != n[:3]:
            changed.append(path)
        elif n[0].startswith("-") and _data_digest(before, o[3], o[1]) != _data_digest(after, n[3], n[1]):
            changed.append(path)
    return {"added": added, "removed": removed, "changed": changed}


def format_listing(image, run=default_run, xorriso="xorriso"):
    """'mode size path [-> target]' lines of an image, for a readable diff."""
    if not image or not os.path.exists(image):
        return ""
    lines = []
    for path, (mode, size, target, _ext) in sorted(read_listing(image, run=run, xorriso=xorriso).items()):
        lines.append("%s %d %s%s" % (mode, size, path, (" -> " + target) if target else ""))
    return "\n".join(lines) + "\n"
