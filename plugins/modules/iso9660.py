#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: iso9660
short_description: Build reproducible ISO 9660 images (data, cloud-init seeds, bootable media)
version_added: 0.1.0
description:
  - Writes an ISO 9660 image from graft points (O(files)) and generated files (O(content)), with Rock Ridge
    and Joliet, optionally bootable with GRUB for BIOS and EFI and as a hybrid image for USB sticks.
  - The image is byte-reproducible - the same inputs give the same sha256 on any machine, in any time zone,
    at any time. Every date is O(source_date_epoch), owners are root, and the tree is traversed in sorted order.
  - Idempotent - when an image exists, the new one is streamed from xorriso, hashed and compared with it as it
    arrives; only when the bytes differ is it written to a temporary file next to O(path) (the equal start copied
    from the old image) and renamed into place. An unchanged image is never rewritten and the module reports no
    change. An image that does not exist yet is written by xorriso straight into a temporary file next to
    O(path), hashed as it grows, then renamed into place.
  - The backend is C(xorriso), chosen by measurement over pycdlib (see the collection's C(docs/iso9660.md)).
author:
  - vmhost.virt contributors (@vmhost)
requirements:
  - xorriso
  - grub-mkimage with the i386-pc and x86_64-efi modules, mkfs.fat and mtools (only with O(boot))
options:
  path:
    description: The ISO image to write. Its directory must exist.
    type: path
    required: true
  files:
    description:
      - Graft points. Each O(files[].src) (a file, or a directory taken recursively) appears at O(files[].dest)
        in the image.
      - Modes, symbolic links and long names inside directories are kept (with O(rock_ridge)). A symbolic link
        named as O(files[].src) itself is followed.
      - Two entries that map to the same path in the image are an error.
    type: list
    elements: dict
    default: []
    suboptions:
      src:
        description: File or directory on the managed node.
        type: path
        required: true
      dest:
        description: Path inside the image, for example V(/boot/vmlinuz); V(/) merges a directory into the root.
        type: str
        required: true
  content:
    description: Small generated files.
    type: list
    elements: dict
    default: []
    suboptions:
      dest:
        description: Path inside the image.
        type: str
        required: true
      content:
        description:
          - The text of the file (written as UTF-8).
          - Not logged (C(no_log)), it can carry keys.
        type: str
        required: true
      mode:
        description: Permission bits of the file in the image (Rock Ridge), octal.
        type: raw
        default: '0644'
  volume_id:
    description:
      - Volume identifier (label). Upper-cased, then it must be 1 to 32 characters from V(A-Z), V(0-9) and V(_).
      - Defaults to V(ISOIMAGE), or V(CIDATA) with O(cidata).
    type: str
  volume_uuid:
    description:
      - ISO 9660 "UUID" as shown by blkid and GRUB, V(YYYY-MM-DD-hh-mm-ss-cc). It becomes the volume creation and
        modification dates, so a boot loader can find this very image with C(search --fs-uuid).
      - Default is the date of O(source_date_epoch).
    type: str
  source_date_epoch:
    description:
      - Seconds since 1970-01-01 UTC used for every file date and (without O(volume_uuid)) the volume dates.
      - Default is the E(SOURCE_DATE_EPOCH) environment variable of the managed node, else V(1).
    type: int
  rock_ridge:
    description: Record POSIX names (long, case-sensitive), modes and symbolic links (Rock Ridge).
    type: bool
    default: true
  joliet:
    description: Add a Joliet tree (Unicode names for Windows).
    type: bool
    default: true
  interchange_level:
    description:
      - ISO 9660 interchange level. Names are checked against it when neither O(rock_ridge) nor O(joliet) carries
        the real names (level 1 is 8.3 names, 2 and 3 allow 30 characters; 3 also allows files over 4 GiB).
    type: int
    choices: [1, 2, 3]
    default: 3
  mode:
    description:
      - Permission bits of the image file, octal.
      - When not given, a new image is created C(0600) (it may carry keys) and an existing image keeps its mode.
        Version 0.1.0 created images V('0644').
    type: raw
  boot:
    description:
      - Make the image bootable with GRUB. O(boot.grub_config) must be in the image (from O(files) or O(content))
        and load a kernel and initrd the image carries.
      - GRUB images are generated with C(grub-mkimage) and embed a short configuration that finds this image
        by O(volume_uuid) and loads O(boot.grub_config).
    type: dict
    suboptions:
      grub_config:
        description: Path in the image of the GRUB configuration to load.
        type: str
        default: /boot/grub/grub.cfg
      bios:
        description: El Torito boot image for BIOS (C(/boot/grub/eltorito.img), GRUB i386-pc-eltorito).
        type: bool
        default: true
      efi:
        description:
          - El Torito EFI boot image C(/boot/grub/efi.img), a FAT file system built without root (mkfs.fat and
            mtools) holding a standalone GRUB C(EFI/BOOT/BOOTX64.EFI); its serial number derives from O(volume_uuid).
        type: bool
        default: true
      hybrid:
        description: Hybrid MBR (GRUB's boot_hybrid.img) and partition entries so the same file boots from a USB stick.
        type: bool
        default: true
  cidata:
    description:
      - Not logged (C(no_log)), user data usually carries password hashes and keys.
      - Shorthand for a cloud-init NoCloud seed. Writes C(user-data) (a dictionary becomes a C(#cloud-config)
        YAML document), C(meta-data) (an C(instance-id) derived from the user data is added when missing) and,
        when given, C(network-config). The volume id becomes V(CIDATA).
    type: dict
    suboptions:
      user_data:
        description: Cloud config as a dictionary, or a complete user-data text starting with a C(#) header.
        type: raw
      meta_data:
        description: Meta data as a dictionary (for example C(instance-id), C(local-hostname)) or text.
        type: raw
      network_config:
        description: Network configuration (version 1 or 2) as a dictionary or text.
        type: raw
  checksum_sources:
    description:
      - Also compare the bytes of the sources when deciding that the image is unchanged without building it.
      - Without it, that decision covers each file of O(files) (walked trees included) by path, size, mtime and
        ctime, so a file whose bytes change while all three stay the same is not noticed.
      - With it, the SHA-256 of every such file is part of the recorded plan, so any change of bytes rebuilds the
        image. Each run then reads every source byte once, even when nothing changed.
      - Images recorded with the default stay valid; turning the option on or off builds and compares once.
    type: bool
    default: false
    version_added: 0.1.0
attributes:
  check_mode:
    support: full
    details: The image is built and compared as a stream; nothing is written (with diff mode, the new image
      goes to a temporary directory so it can be listed).
  diff_mode:
    support: full
    details: Lists the paths added, removed and changed in the image, and both listings.
  safe_file_operations:
    support: full
    details: The image is written to a private temporary directory beside O(path), fsynced and renamed into
      place, and the directory is fsynced; what a killed run left there is removed by the next run.
  idempotent:
    support: full
    details: A second run with the same inputs builds the same bytes, finds them equal to the image and reports no change
      without writing.
notes:
  - Backend measured on 2 shared cores, 1 GiB tree (65 570 small files and four 128 MiB files) - xorriso 4.5-6.8 s,
    pycdlib 11.5-11.8 s (quiet machine); under load, best of 3, pycdlib used 1.41x xorriso's CPU without any date
    fixing. This module took 1.33x (1 GiB tree) and 1.29x (300 MB tree of small files and links) the wall
    time of C(xorriso -as mkisofs -R -J) for a new image, on a quiet machine
    (C(benchmarks/iso.py), figures in C(docs/iso9660.md)).
  - The GRUB images come from the GRUB installed on the managed node, so the same sha256 needs the same GRUB
    and xorriso versions.
extends_documentation_fragment:
  - vmhost.virt.attributes
  - vmhost.virt.attributes.files
  - ansible.builtin.files
seealso:
  - name: community.general.iso_create
    description: The pycdlib-based peer; it always reports a change and its images carry the build time.
    link: https://docs.ansible.com/ansible/latest/collections/community/general/iso_create_module.html
"""

EXAMPLES = r"""
- name: Put a directory tree and a generated file on a data ISO
  vmhost.virt.iso9660:
    path: /srv/images/tools.iso
    volume_id: tools
    files:
      - src: /srv/tools/
        dest: /
    content:
      - dest: /README.txt
        content: "Tools for the build machines.\n"

- name: Build a cloud-init NoCloud seed that creates a user with an SSH key
  vmhost.virt.iso9660:
    path: /var/lib/libvirt/images/guest1-seed.iso
    cidata:
      user_data:
        users:
          - name: admin
            sudo: ALL=(ALL) NOPASSWD:ALL
            shell: /bin/bash
            ssh_authorized_keys:
              - "{{ lookup('ansible.builtin.file', '/root/.ssh/id_ed25519.pub') }}"
      meta_data:
        instance-id: guest1
        local-hostname: guest1

- name: Build a bootable rescue ISO for BIOS and EFI (also a hybrid USB image)
  vmhost.virt.iso9660:
    path: /srv/images/rescue.iso
    volume_id: rescue
    volume_uuid: "2024-05-01-12-00-00-00"
    source_date_epoch: 1714564800
    files:
      - src: /boot/vmlinuz
        dest: /boot/vmlinuz
      - src: /boot/initrd.img
        dest: /boot/initrd.img
    content:
      - dest: /boot/grub/grub.cfg
        content: |
          serial --unit=0 --speed=115200
          terminal_input serial console
          terminal_output serial console
          set timeout=3
          menuentry "Rescue" {
            linux /boot/vmlinuz console=ttyS0
            initrd /boot/initrd.img
          }
    boot: {}

- name: Rebuild a data ISO whenever any source byte changes (reads every source file on each run)
  vmhost.virt.iso9660:
    path: /srv/images/firmware.iso
    volume_id: firmware
    checksum_sources: true
    files:
      - src: /srv/firmware/
        dest: /
"""

RETURN = r"""
path:
  description: The image path.
  returned: always
  type: str
  sample: /srv/images/rescue.iso
sha256:
  description: SHA-256 of the image (in check mode, of the image a real run would write).
  returned: success
  type: str
  sample: 9f2c5f0a2b1d5e3c4d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4
size:
  description: Size of the image in bytes.
  returned: success
  type: int
  sample: 1157978112
volume_id:
  description: The volume id written (upper-cased).
  returned: success
  type: str
  sample: RESCUE
volume_uuid:
  description: The ISO 9660 UUID (volume date) of the image, as blkid and GRUB show it.
  returned: success
  type: str
  sample: "2024-05-01-12-00-00-00"
source_date_epoch:
  description: The epoch every date in the image was set from.
  returned: success
  type: int
  sample: 1714564800
entries:
  description: Number of files, directories and links in the image (boot images and catalog included).
  returned: success
  type: int
  sample: 42
changes:
  description: Paths added, removed and changed compared with the previous image (computed in diff mode only).
  returned: when changed and in diff mode
  type: dict
  sample: {"added": ["/etc/motd"], "removed": [], "changed": ["/boot/grub/grub.cfg"]}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.vmhost.virt.plugins.module_utils import _io
from ansible_collections.vmhost.virt.plugins.module_utils._module import run
from ansible_collections.vmhost.virt.plugins.module_utils.iso.backend import Iso9660
from ansible_collections.vmhost.virt.plugins.module_utils.iso.cidata import HAS_YAML, YAML_IMPORT_ERROR


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            files=dict(type="list", elements="dict", default=[], options=dict(
                src=dict(type="path", required=True),
                dest=dict(type="str", required=True),
            )),
            content=dict(type="list", elements="dict", default=[], options=dict(
                dest=dict(type="str", required=True),
                content=dict(type="str", required=True, no_log=True),
                mode=dict(type="raw", default="0644"),
            )),
            volume_id=dict(type="str"),
            volume_uuid=dict(type="str"),
            source_date_epoch=dict(type="int"),
            rock_ridge=dict(type="bool", default=True),
            joliet=dict(type="bool", default=True),
            interchange_level=dict(type="int", choices=[1, 2, 3], default=3),
            mode=dict(type="raw"),
            boot=dict(type="dict", options=dict(
                grub_config=dict(type="str", default="/boot/grub/grub.cfg"),
                bios=dict(type="bool", default=True),
                efi=dict(type="bool", default=True),
                hybrid=dict(type="bool", default=True),
            )),
            cidata=dict(type="dict", no_log=True, options=dict(
                user_data=dict(type="raw"),
                meta_data=dict(type="raw"),
                network_config=dict(type="raw"),
            )),
            checksum_sources=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
        add_file_common_args=True,
    )
    if module.params["cidata"] is not None and not HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"), exception=str(YAML_IMPORT_ERROR))
    run(module, Iso9660(module.params, module.check_mode, tools=_io.FileTools(module), tmpdir=module.tmpdir))


if __name__ == "__main__":
    main()
