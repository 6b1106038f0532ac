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
  - New and converted images are written to a temporary file in the same directory and renamed
    into place. Growing and shrinking happen in place with C(qemu-img resize).
author:
  - vmhost.virt contributors (@vmhost)
requirements:
  - qemu-img (Debian C(qemu-utils)) on the managed host
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Check mode reads the image and reports the changes a real run would make.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The diff shows format, virtual size and backing file before and after.
  safe_file_operations:
    description: Uses Ansible's strict file operation functions to ensure proper permissions and avoid data corruption.
    support: partial
    details: Creation and conversion go through a temporary file and a rename; resizing is
      done in place by qemu-img.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
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
    type: bool
    default: false
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

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmhost.virt.plugins.module_utils import qemu_img
from ansible_collections.vmhost.virt.plugins.module_utils.qemu_img import ImageError


def state_of(info):
    if info is None:
        return None
    return {"format": info["format"], "virtual_size": info["virtual_size"],
            "backing_file": info.get("backing_file")}


class DiskImage(object):
    """Plan, compare and apply; every mutating step is skipped in check mode."""

    def __init__(self, module, runner=None):
        self.module = module
        self.p = module.params
        self.runner = runner
        self.actions = []
        self.predicted = None

    def do(self, action, func, *args):
        self.actions.append(action)
        if not self.module.check_mode:
            func(*args)

    def run(self):
        p = self.p
        path = p["path"]
        exists = os.path.exists(path)
        before = state_of(qemu_img.info(path, self.runner)) if exists else None
        if p["state"] == "absent":
            if exists:
                self.do("remove", os.unlink, path)
            return before, None
        size = qemu_img.round_up(qemu_img.parse_size(p["size"]), qemu_img.SECTOR) \
            if p["size"] is not None else None
        if exists and p["backing_file"] and before["backing_file"] != p["backing_file"]:
            if not p["force"]:
                raise ImageError("%s has backing file %s, not %s; set force: true to recreate "
                                 "it (its data will be lost)"
                                 % (path, before["backing_file"], p["backing_file"]))
            self.do("recreate", self.create, path, size)
            exists = False
            return before, self.expected(before, size, created=True)
        if not exists:
            if p["source"]:
                self.do("create", self.convert, p["source"], path, p["source_format"])
                if size is not None:
                    src_size = qemu_img.info(p["source"], self.runner)["virtual_size"]
                    if size > src_size:
                        self.do("grow", self.resize, path, size, False)
                    elif size < src_size:
                        raise ImageError("size %d is smaller than the source's %d bytes"
                                         % (size, src_size))
            else:
                if size is None and not p["backing_file"]:
                    raise ImageError("%s does not exist: give size, source or backing_file "
                                     "to create it" % path)
                self.do("create", self.create, path, size)
            return before, self.expected(before, size, created=True)
        # existing image
        if before["format"] != p["format"]:
            self.do("convert", self.convert, path, path, before["format"])
        if size is not None and size != before["virtual_size"]:
            if not p["resize"]:
                raise ImageError("%s is %d bytes, not %d, and resize is false"
                                 % (path, before["virtual_size"], size))
            if size < before["virtual_size"]:
                if not p["shrink"]:
                    raise ImageError("%s is %d bytes; shrinking it to %d loses data: set "
                                     "shrink: true to allow it"
                                     % (path, before["virtual_size"], size))
                self.do("shrink", self.resize, path, size, True)
            else:
                self.do("grow", self.resize, path, size, False)
        return before, self.expected(before, size)

    def expected(self, before, size, created=False):
        p = self.p
        after = {"format": p["format"], "virtual_size": size,
                 "backing_file": p["backing_file"] if created else (before or {}).get(
                     "backing_file")}
        if size is None:
            if p["source"] and created:
                after["virtual_size"] = qemu_img.info(p["source"], self.runner)["virtual_size"]
            elif p["backing_file"] and created:
                after["virtual_size"] = qemu_img.info(p["backing_file"],
                                                      self.runner)["virtual_size"]
            else:
                after["virtual_size"] = before["virtual_size"]
        return after

    # -- effects ----------------------------------------------------------
    def create(self, path, size):
        p = self.p
        tmp = qemu_img.temp_name(path, "disk_image")
        backing_format = p["backing_format"]
        if p["backing_file"] and not backing_format:
            backing_format = qemu_img.info(p["backing_file"], self.runner)["format"]
        try:
            qemu_img.create(tmp, p["format"], size, p["backing_file"], backing_format,
                            p["preallocation"], runner=self.runner)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def convert(self, src, dst, src_format):
        qemu_img.atomic_convert(src, dst, self.p["format"], src_format, self.p["compress"],
                                runner=self.runner)

    def resize(self, path, size, shrink):
        qemu_img.resize(path, size, self.p["format"], shrink, runner=self.runner)


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
    )
    if module.get_bin_path("qemu-img") is None:
        module.fail_json(msg="qemu-img was not found; install qemu-utils (Debian) or qemu-img")
    job = DiskImage(module)
    try:
        before, after = job.run()
    except ImageError as exc:
        module.fail_json(msg=str(exc), changed=False)
    result = dict(changed=bool(job.actions), actions=job.actions)
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    if after is not None:
        if module.check_mode:
            result.update(after)
            result["backing_format"] = module.params["backing_format"]
        else:
            try:
                info = qemu_img.info(module.params["path"])
            except ImageError as exc:
                module.fail_json(msg=str(exc), changed=bool(job.actions))
            for key in ("format", "virtual_size", "actual_size", "backing_file",
                        "backing_format"):
                result[key] = info.get(key)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
