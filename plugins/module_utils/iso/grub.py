# -*- coding: utf-8 -*-
# Copyright (c) vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The GRUB boot images of an ISO: El Torito (BIOS) and an EFI system partition image.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

from ansible_collections.vmhost.virt.plugins.module_utils import filesystems
from ansible_collections.vmhost.virt.plugins.module_utils._tools import GRUB_EFI_DIR
from ansible_collections.vmhost.virt.plugins.module_utils.iso.names import IsoError, fat_serial
from ansible_collections.vmhost.virt.plugins.module_utils.iso.plan import BIOS_IMAGE, EFI_IMAGE
from ansible_collections.vmhost.virt.plugins.module_utils.iso.tools import default_run, run_checked, tool_env
from ansible_collections.vmhost.virt.plugins.module_utils.qemu_img import ImageError

GRUB_BIOS_DIR = "/usr/lib/grub/i386-pc"
GRUB_MODULES_COMMON = [
    "iso9660", "part_msdos", "part_gpt", "fat", "normal", "configfile", "linux",
    "search", "search_fs_uuid", "search_fs_file", "search_label", "echo", "test",
    "ls", "cat", "serial", "terminal", "gzio", "xzio", "halt", "reboot",
]
GRUB_MODULES_BIOS = ["biosdisk"]
GRUB_MODULES_EFI = ["efi_gop", "efi_uga", "video", "video_fb"]


def build_tools(plan):
    """The programs and GRUB files an image of ``plan`` is built with (their size and mtime go
    into the plan's digest: an upgraded xorriso or GRUB rebuilds the image)."""
    tools = ["xorriso"]
    if plan.boot:
        tools += ["grub-mkimage", "mkfs.fat", "mcopy"]
    found = [shutil.which(tool) or tool for tool in tools]
    if plan.boot and plan.boot["bios"]:
        found.append(os.path.join(GRUB_BIOS_DIR, "moddep.lst"))
    if plan.boot and plan.boot["efi"]:
        found.append(os.path.join(GRUB_EFI_DIR, "moddep.lst"))
    return found


def early_grub_config(plan):
    """Config embedded in the GRUB images: find this ISO, then load its grub.cfg."""
    cfg = plan.boot["grub_config"]
    prefix = cfg.rsplit("/", 1)[0] or "/"
    return (
        "search --no-floppy --fs-uuid --set=root %s\n"
        "if [ -z \"$root\" ]; then search --no-floppy --file --set=root %s; fi\n"
        "set prefix=($root)%s\n"
        "configfile ($root)%s\n"
    ) % (plan.volume_uuid, cfg, prefix, cfg)


def build_grub_images(plan, workdir, run=default_run):
    """Write eltorito.img and/or efi.img for plan.boot into workdir; return {iso path: file}."""
    env = tool_env(plan.epoch)
    early = os.path.join(workdir, "early.cfg")
    with open(early, "w") as f:
        f.write(early_grub_config(plan))
    out = {}
    if plan.boot["bios"]:
        if not os.path.isdir(GRUB_BIOS_DIR):
            raise IsoError("boot.bios needs GRUB's i386-pc modules in %s (Debian: apt-get install grub-pc-bin)"
                           % GRUB_BIOS_DIR)
        img = os.path.join(workdir, "eltorito.img")
        run_checked(run, ["grub-mkimage", "-O", "i386-pc-eltorito", "-d", GRUB_BIOS_DIR, "-p", "/boot/grub",
                          "-c", early, "-o", img] + GRUB_MODULES_COMMON + GRUB_MODULES_BIOS, env, "grub-mkimage (BIOS)")
        out[BIOS_IMAGE] = img
    if plan.boot["efi"]:
        if not os.path.isdir(GRUB_EFI_DIR):
            raise IsoError("boot.efi needs GRUB's x86_64-efi modules in %s (Debian: apt-get install "
                           "grub-efi-amd64-bin)" % GRUB_EFI_DIR)
        boot_dir = os.path.join(workdir, "esp", "EFI", "BOOT")
        os.makedirs(boot_dir)
        loader = os.path.join(boot_dir, "BOOTX64.EFI")
        run_checked(run, ["grub-mkimage", "-O", "x86_64-efi", "-d", GRUB_EFI_DIR, "-p", "/boot/grub",
                          "-c", early, "-o", loader] + GRUB_MODULES_COMMON + GRUB_MODULES_EFI, env,
                    "grub-mkimage (EFI)")
        img = os.path.join(workdir, "efi.img")
        make_esp_image(img, os.path.join(workdir, "esp"), fat_serial(plan.volume_uuid), plan.epoch, run=run)
        out[EFI_IMAGE] = img
    return out


def esp_image_size(tree):
    """Bytes of the FAT image for ``tree``: the files plus a tenth and 256 KiB, in 64 KiB steps,
    at least a 1.44 MB floppy's 1440 KiB."""
    payload = sum(os.path.getsize(os.path.join(root, name))
                  for root, _dirs, names in os.walk(tree) for name in names)
    return max(1440, ((payload * 11 // 10) // 1024 + 256 + 63) // 64 * 64) * 1024


def make_esp_image(path, tree, serial, epoch, label="EFIBOOT", run=default_run):
    """The EFI boot image: ``tree`` in a FAT file system of its own, built by the collection's one
    FAT builder (:func:`..filesystems.make_fat`) with the tools' clean UTC environment."""
    env = tool_env(epoch)

    def runner(argv, extra=None):
        return run(argv, env=dict(env, **(extra or {})))
    try:
        filesystems.make_fat(path, esp_image_size(tree), tree=tree, label=label, uuid=serial,
                             source_date_epoch=epoch, runner=runner)
    except ImageError as exc:
        raise IsoError("the EFI boot image %s: %s" % (EFI_IMAGE, exc))
    return path
