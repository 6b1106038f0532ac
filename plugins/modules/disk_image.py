#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: disk_image
short_description: Create, convert, resize and remove QEMU disk images
version_added: 0.1.0
description:
  - Manages one disk image file with C(qemu-img). It creates it (empty, on a backing file, or
    converted from O(source)), converts it to another O(format), grows it, and removes it.
  - Idempotent by reading C(qemu-img info --output=json) - the same format and virtual size mean
    no change. A bigger O(size) grows the image; a smaller one fails unless O(shrink=true); a
    different O(format) converts the image (its data is kept); a different backing file fails
    unless O(force=true), which recreates the image (its data is lost).
  - New and converted images are written to a temporary file in the same directory (created with
    C(mkstemp), mode C(0600) unless O(mode) is given, fsynced) and renamed into place; the directory
    is fsynced. Temporary files of an earlier run that was killed are removed. Growing and shrinking
    happen in place with C(qemu-img resize).
  - An existing image is always read with C(-f). It is read as O(format) only when its header is
    that format's (a qcow2 header); otherwise as raw. So a raw image whose first bytes a guest wrote
    as a qcow2 header with a backing file is never opened as qcow2, and no host file is read through
    it. To turn an existing qcow2 into raw, give it as O(source) of a new image.
  - The format of O(source) and O(backing_file) is guessed only when O(source_format) /
    O(backing_format) is not given, and a guessed qcow2 that names a backing file is refused.
  - O(path) must be absent or a regular file; a device node, directory or other special file is
    never replaced or removed. A regular file that does not look like a disk image (not a
    multiple of 512 bytes, or text) is not converted or removed unless O(force=true).
author:
  - vmhost.virt contributors (@vmhost)
requirements:
  - qemu-img (Debian C(qemu-utils)) on the managed host
attributes:
  check_mode:
    support: full
    details: Check mode reads the image and reports the changes a real run would make.
  diff_mode:
    support: full
    details: The diff shows format, virtual size and backing file before and after.
  safe_file_operations:
    support: partial
    details: Creation and conversion go through a temporary file (mkstemp, fsync) and a rename;
      resizing is done in place by qemu-img.
  idempotent:
    support: full
    details: A second run with the same options reports no change.
options:
  path:
    description:
      - The image file.
    type: path
    required: true
  state:
    description:
      - V(present) makes sure the image exists as described; V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  format:
    description:
      - Image format.
    type: str
    choices: [qcow2, raw]
    default: qcow2
  size:
    description:
      - Virtual size in bytes or with a unit (V(10G), V(512MiB), V(1.5 TiB); C(K)/C(M)/C(G)/C(T) and
        C(KiB)... are powers of 1024, C(KB)/C(MB)/C(GB) powers of 1000), rounded up to 512 bytes.
      - Required to create an image without O(source) or O(backing_file).
    type: str
  backing_file:
    description:
      - Create a qcow2 overlay on this backing image.
    type: path
  backing_format:
    description:
      - Format of O(backing_file); read from the file with C(qemu-img info) when not given.
    type: str
    choices: [qcow2, raw]
  preallocation:
    description:
      - Preallocation mode for new images.
    type: str
    choices: ['off', metadata, falloc, full]
  source:
    description:
      - Create the image by converting this image (any format qemu-img reads).
      - Used only when O(path) does not exist (or with O(force=true)); an existing image is not
        compared with its source.
    type: path
  source_format:
    description:
      - Format of O(source); detected by qemu-img when not given.
    type: str
    choices: [qcow2, raw]
  compress:
    description:
      - Write compressed qcow2 clusters when converting (O(source) or a format change).
    type: bool
    default: false
  resize:
    description:
      - Allow changing the virtual size of an existing image to O(size). Without it a
        different size fails.
    type: bool
    default: true
  shrink:
    description:
      - Allow making an existing image smaller (data beyond the new end is lost).
    type: bool
    default: false
  force:
    description:
      - Recreate an image whose backing file differs (its data is lost).
      - Convert or remove (O(state=absent)) a regular file that does not look like a disk image,
        and remove a symbolic link (not its target) with O(state=absent).
    type: bool
    default: false
extends_documentation_fragment:
  - vmhost.virt.attributes
  - vmhost.virt.attributes.files
  - ansible.builtin.files
seealso:
  - module: vmhost.virt.partition_table
"""

EXAMPLES = r"""
- name: A 20 GiB qcow2 disk, created on first run like a VM's root disk
  vmhost.virt.disk_image:
    path: /var/lib/libvirt/images/guest.qcow2
    format: qcow2
    size: 20G

- name: An overlay on a base image
  vmhost.virt.disk_image:
    path: /var/lib/libvirt/images/guest-overlay.qcow2
    backing_file: /var/lib/libvirt/images/base.qcow2
    backing_format: qcow2

- name: Compressed qcow2 from a raw build
  vmhost.virt.disk_image:
    path: /srv/images/debian.qcow2
    source: /srv/images/debian.raw
    source_format: raw
    compress: true

- name: Extra empty raw disk
  vmhost.virt.disk_image:
    path: /var/lib/images/scratch.raw
    format: raw
    size: 512MiB

- name: Remove it
  vmhost.virt.disk_image:
    path: /var/lib/images/scratch.raw
    state: absent
"""

RETURN = r"""
changed:
  description: Whether the image was (or in check mode would be) changed.
  returned: always
  type: bool
  sample: true
actions:
  description: What was done, in order (V(create), V(convert), V(grow), V(shrink), V(recreate), V(remove)).
  returned: always
  type: list
  elements: str
  sample: [create]
format:
  description: Image format after the run.
  returned: when the image exists after the run
  type: str
  sample: qcow2
virtual_size:
  description: Virtual size in bytes.
  returned: when the image exists after the run
  type: int
  sample: 21474836480
actual_size:
  description: Bytes the file occupies on disk.
  returned: when the image exists after the run and not in check mode
  type: int
  sample: 200704
backing_file:
  description: Backing file name as recorded in the image, or null.
  returned: when the image exists after the run
  type: str
  sample: /var/lib/libvirt/images/base.qcow2
backing_format:
  description: Backing file format recorded in the image, or null.
  returned: when the image exists after the run
  type: str
  sample: qcow2
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmhost.virt.plugins.module_utils import _io
from ansible_collections.vmhost.virt.plugins.module_utils._disk_image import DiskImage
from ansible_collections.vmhost.virt.plugins.module_utils._module import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            format=dict(type="str", default="qcow2", choices=["qcow2", "raw"]),
            size=dict(type="str"),
            backing_file=dict(type="path"),
            backing_format=dict(type="str", choices=["qcow2", "raw"]),
            preallocation=dict(type="str", choices=["off", "metadata", "falloc", "full"]),
            source=dict(type="path"),
            source_format=dict(type="str", choices=["qcow2", "raw"]),
            compress=dict(type="bool", default=False),
            resize=dict(type="bool", default=True),
            shrink=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
        ),
        mutually_exclusive=[["source", "backing_file"]],
        supports_check_mode=True,
        add_file_common_args=True,
    )
    run(module, DiskImage(module.params, module.check_mode, tools=_io.FileTools(module)))


if __name__ == "__main__":
    main()
