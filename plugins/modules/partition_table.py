#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: partition_table
short_description: Build a partitioned, formatted, optionally bootable raw disk image without loop devices
version_added: 0.1.0
description:
  - Writes an C(msdos) (MBR) or C(gpt) partition table into a raw image file (created at O(size)
    when missing) or onto a block device. The table (protective MBR, primary and backup GPT
    headers, CRC32s) is written byte for byte in Python.
  - Formats each partition inside the image without loop devices or mounts, populating it from
    O(partitions[].contents) with C(mkfs.ext4 -d) (written directly at the partition's offset) or
    C(mkfs.fat) and C(mcopy) (built in a small scratch file, then copied to the offset).
  - The first partition starts at 1 MiB and every partition start is aligned to 1 MiB.
  - Idempotent by reading the existing table and probing each partition's file system signature
    (type, label, UUID). If they match the request nothing changes; if they differ the module
    refuses unless O(force=true). File contents are not compared.
  - A new or rebuilt image file is written to a temporary file in the same directory (C(mkstemp),
    mode C(0600) for a new image unless O(mode) is given, the old mode for a rebuilt one), fsynced
    and renamed into place, and the directory is fsynced, so an interrupted run leaves the previous
    image or none; temporary files of killed runs are removed by the next run. Block devices are
    written in place. A symbolic link is only followed to a block device.
  - An existing file with any non-zero byte anywhere (not only in its first MiB) counts as data,
    and a partition table that cannot be read (a hostile GPT header) is reported as such; both
    need O(force=true) to be replaced.
  - FAT contents may not hold symbolic links (FAT cannot store them; the file a link points at is
    never copied in its place).
  - With O(source_date_epoch) (or C(SOURCE_DATE_EPOCH) in the module's environment) the same inputs
    give a byte-identical image. Disk and partition GUIDs and file system UUIDs that were not given
    are then derived from the inputs.
author:
  - vmhost.virt contributors (@vmhost)
requirements:
  - e2fsprogs (C(mkfs.ext4), C(debugfs)), dosfstools (C(mkfs.fat)) and mtools (C(mmd), C(mcopy))
    for the file systems used
  - grub-common and grub-efi-amd64-bin for O(bootloader=efi)
attributes:
  check_mode:
    support: full
    details: Check mode plans and validates the layout, reads the existing table and reports the
      change and diff a real run would make, writing nothing.
  diff_mode:
    support: full
    details: The diff shows the layout read from the image before (or null) and the planned layout.
  safe_file_operations:
    support: partial
    details: Image files are built in a temporary file in the same directory and renamed into
      place. Block devices are written in place.
  idempotent:
    support: full
    details: An image whose table and file system signatures match the request is left alone.
options:
  path:
    description:
      - The raw image file or block device.
    type: path
    required: true
  size:
    description:
      - Size of the disk in bytes or with a unit (V(512MiB), V(10G), V(1.5 TiB); C(K)/C(M)/C(G)/C(T) and
        C(KiB)... are powers of 1024, C(KB)/C(MB)/C(GB) powers of 1000).
      - Required when O(path) does not exist. When given for an existing image, a different size
        is a difference (see O(force)).
    type: str
  label:
    description:
      - Partition table type.
    type: str
    choices: [gpt, msdos]
    default: gpt
  disk_guid:
    description:
      - GPT disk GUID. For V(msdos), the 32-bit disk identifier (V(0x1234abcd)), or the first 32 bits of
        a GUID.
      - Derived from the inputs when O(source_date_epoch) is set, random otherwise.
    type: str
  partitions:
    description:
      - The partitions, in order. At most 4 for V(msdos) (primary partitions only).
    type: list
    elements: dict
    default: []
    suboptions:
      size:
        description:
          - Size in bytes or with a unit, or V(rest) for the remaining space (last partition only).
          - Required unless O(partitions[].estimate_size=true).
        type: str
      estimate_size:
        description:
          - Size the partition from O(partitions[].contents) plus 25%, rounded up to 1 MiB; the
            chosen size is returned.
        type: bool
        default: false
      start:
        description:
          - Start offset (bytes or with a unit), a multiple of 1 MiB. Defaults to the first 1 MiB
            boundary after the previous partition (1 MiB for the first one).
        type: str
      fs:
        description:
          - File system to create. V(vfat) picks FAT12/16/32 by size (FAT32 from 33 MiB).
        type: str
        choices: [ext2, ext3, ext4, vfat, fat16, fat32, swap, none]
        default: none
      label:
        description:
          - File system label (ext at most 16 bytes, FAT at most 11 characters).
        type: str
      uuid:
        description:
          - File system UUID. For FAT the volume serial, as V(ABCD-1234) or a UUID whose first 32
            bits are used.
        type: str
      flags:
        description:
          - V(boot) marks the partition bootable (msdos active flag; GPT legacy BIOS bootable
            attribute) and, with O(bootloader=efi), the root holding the kernel.
          - V(esp) makes it an EFI system partition, V(bios_grub) a BIOS boot partition (GPT),
            V(legacy_boot) sets the GPT legacy BIOS bootable attribute.
        type: list
        elements: str
        choices: [boot, esp, bios_grub, legacy_boot]
        default: []
      type:
        description:
          - GPT partition type by name (V(linux), V(esp), V(bios_boot), V(swap),
            V(linux-root-x86-64), V(linux-root-arm64), V(linux-home), V(linux-var), V(linux-lvm),
            V(linux-raid), V(xbootldr), V(microsoft-basic-data), ...) or GUID; for V(msdos) a hex
            type byte such as V(0x83).
          - Defaults from O(partitions[].flags) and O(partitions[].fs).
        type: str
      name:
        description:
          - GPT partition name (at most 36 UTF-16 code units).
        type: str
      part_uuid:
        description:
          - GPT unique partition GUID. Derived or random when not given.
        type: str
      contents:
        description:
          - Directory whose tree becomes the file system's contents.
        type: path
  source_date_epoch:
    description:
      - Seconds since 1970 used for every timestamp; makes the image reproducible. Falls back
        to C(SOURCE_DATE_EPOCH) in the module's environment.
    type: int
  bootloader:
    description:
      - V(efi) installs a GRUB EFI loader as C(EFI/BOOT/BOOTX64.EFI) on the ESP, with a built-in
        configuration that finds the root file system by UUID, and writes C(/boot/grub/grub.cfg)
        on the root booting the newest C(boot/vmlinuz-*) there.
    type: str
    choices: [none, efi]
    default: none
  kernel_cmdline:
    description:
      - Kernel arguments after C(root=UUID=...) in the generated C(grub.cfg).
    type: str
    default: rw console=tty0 console=ttyS0,115200n8
  force:
    description:
      - Replace an existing image whose table or file systems differ from the request. Without it
        the module fails and changes nothing.
    type: bool
    default: false
  checksum_sources:
    description:
      - Also compare the bytes of the O(partitions[].contents) trees when deciding whether the image must be
        rebuilt.
      - Without it, each contents file is compared by type, mode, owner, size, mtime, ctime and link target, so a
        file whose bytes change while all of these stay the same is not noticed.
      - With it, the SHA-256 of every regular contents file is part of the recorded build, so any change of bytes
        rebuilds the image. Each run then reads every contents byte once, even when nothing changed.
      - Images recorded with the default stay valid; turning the option on or off rebuilds once.
    type: bool
    default: false
    version_added: 0.1.0
extends_documentation_fragment:
  - vmhost.virt.attributes
  - vmhost.virt.attributes.files
  - ansible.builtin.files
seealso:
  - module: vmhost.virt.disk_image
"""

EXAMPLES = r"""
- name: Build a bootable EFI disk image from a root tree
  vmhost.virt.partition_table:
    path: /var/lib/images/debian.raw
    size: 4GiB
    label: gpt
    bootloader: efi
    source_date_epoch: 1700000000
    partitions:
      - size: 64MiB
        fs: vfat
        label: ESP
        flags: [esp]
      - size: rest
        fs: ext4
        label: root
        type: linux-root-x86-64
        flags: [boot]
        contents: /srv/rootfs

- name: An msdos disk with a data partition sized from its contents
  vmhost.virt.partition_table:
    path: /tmp/data.raw
    size: 1G
    label: msdos
    partitions:
      - estimate_size: true
        fs: ext4
        label: data
        contents: /srv/data

- name: A data disk rebuilt whenever any byte of its contents changes (reads every file on each run)
  vmhost.virt.partition_table:
    path: /var/lib/images/config.raw
    size: 64MiB
    checksum_sources: true
    source_date_epoch: 1700000000
    partitions:
      - size: rest
        fs: ext4
        label: config
        contents: /srv/config

- name: Then convert it for QEMU
  vmhost.virt.disk_image:
    path: /var/lib/images/debian.qcow2
    format: qcow2
    source: /var/lib/images/debian.raw
"""

RETURN = r"""
changed:
  description: Whether the image was (or in check mode would be) written.
  returned: always
  type: bool
  sample: true
table:
  description: The layout written (or planned in check mode, or found when unchanged).
  returned: success
  type: dict
  sample:
    label: gpt
    size: 4294967296
    disk_id: 1b4e28ba-2fa1-11d2-883f-0016d3cca427
    partitions:
      - number: 1
        start: 1048576
        size: 67108864
        type: esp
        flags: [esp]
        fs: vfat
        label: ESP
        uuid: 2C4F-1A33
        part_uuid: 0c4f3f4e-5b8a-5d7e-8a0b-3b1c2d3e4f50
        name: null
differences:
  description: What differed between the image and the request (empty when unchanged).
  returned: always
  type: list
  elements: str
  sample: ["partition 2 size is 1048576, wanted 2097152"]
estimated_sizes:
  description: Sizes chosen by O(partitions[].estimate_size), by partition number.
  returned: success
  type: dict
  sample: {"1": 136314880}
source_date_epoch:
  description: The timestamp used, or null when the build is not reproducible.
  returned: success
  type: int
  sample: 1700000000
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmhost.virt.plugins.module_utils import _io
from ansible_collections.vmhost.virt.plugins.module_utils._module import run
from ansible_collections.vmhost.virt.plugins.module_utils.image_builder import PartitionTable

PARTITION_SPEC = dict(
    size=dict(type="str"),
    estimate_size=dict(type="bool", default=False),
    start=dict(type="str"),
    fs=dict(type="str", default="none",
            choices=["ext2", "ext3", "ext4", "vfat", "fat16", "fat32", "swap", "none"]),
    label=dict(type="str"),
    uuid=dict(type="str"),
    flags=dict(type="list", elements="str", default=[],
               choices=["boot", "esp", "bios_grub", "legacy_boot"]),
    type=dict(type="str"),
    name=dict(type="str"),
    part_uuid=dict(type="str"),
    contents=dict(type="path"),
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            size=dict(type="str"),
            label=dict(type="str", default="gpt", choices=["gpt", "msdos"]),
            disk_guid=dict(type="str"),
            partitions=dict(type="list", elements="dict", default=[], options=PARTITION_SPEC),
            source_date_epoch=dict(type="int"),
            bootloader=dict(type="str", default="none", choices=["none", "efi"]),
            kernel_cmdline=dict(type="str", default="rw console=tty0 console=ttyS0,115200n8"),
            force=dict(type="bool", default=False),
            checksum_sources=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
        add_file_common_args=True,
    )
    run(module, PartitionTable(module.params, module.check_mode, tools=_io.FileTools(module)))


if __name__ == "__main__":
    main()
