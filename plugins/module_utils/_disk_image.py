# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backend of vmhost.virt.disk_image: plan from the image read back, then apply.

Private to vmhost.virt: other collections must not import this module.

Safety rules (docs/security.md, findings 1, 2, 10):

* every existing image is read with ``-f``: the declared ``format`` when the
  file carries that format's header, else ``raw``; so a raw image whose first
  bytes a guest wrote as a qcow2 header is never opened as qcow2 and its
  "backing file" never read;
* a file that is not a regular file, or does not look like a disk image (text,
  odd size), is not converted or removed without ``force``; a device node is
  never replaced;
* new files are made by :mod:`_io` (mkstemp beside the target, 0600 unless
  ``mode``, fsync, rename, directory fsync) and leftovers of killed runs are
  removed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.vmhost.virt.plugins.module_utils import _io
from ansible_collections.vmhost.virt.plugins.module_utils import qemu_img
from ansible_collections.vmhost.virt.plugins.module_utils._module import ModuleFailure
from ansible_collections.vmhost.virt.plugins.module_utils.qemu_img import ImageError


def state_of(info):
    if info is None:
        return None
    return {"format": info["format"], "virtual_size": info["virtual_size"],
            "backing_file": info.get("backing_file")}


def existing_format(path, declared):
    """The format an existing ``path`` is read as: ``declared`` only when its header agrees."""
    found = qemu_img.sniff(path)
    if declared == "qcow2" and found == "qcow2":
        return "qcow2"
    return "raw"


class DiskImage(_io.FileBackend):
    """Plan, compare and apply (a :class:`_io.FileBackend`: check mode, the ``actions`` list
    and the diff are the shared base's).

    ``tools`` (:class:`_io.FileTools`) applies mode/owner/group; a new image gets them on
    its temporary file, before the rename."""

    errors = (ImageError, _io.IoError)
    report_actions = True

    def __init__(self, params, check_mode=False, tools=None, runner=None):
        _io.FileBackend.__init__(self, params, check_mode, tools)
        self.p = params
        self.runner = runner
        self.attributes = tools.set_attributes if tools is not None else None
        self.before = self.after = None

    def steps(self):
        if self.tools is not None and self.tools.get_bin_path("qemu-img") is None:
            raise ImageError("qemu-img was not found; install qemu-utils (Debian) or qemu-img")
        yield from self.image_steps()
        if self.after is not None:
            change = self.attributes_step(self.p["path"])
            if change is not None:
                yield change

    def finish(self):
        if self.after is None:
            return
        if self.check_mode:
            self.result.update(self.after)
            self.result["backing_format"] = self.p["backing_format"]
            return
        try:
            info = after_info(self.p)
        except ImageError as exc:
            raise ModuleFailure(str(exc))
        for key in ("format", "virtual_size", "actual_size", "backing_file", "backing_format"):
            self.result[key] = info.get(key)

    def diff(self):
        return {"before": self.before, "after": self.after}

    def _refuse_unless_image(self, path, doing):
        reason = qemu_img.looks_like_disk(path)
        if reason and not self.p["force"]:
            raise ImageError("%s does not look like a disk image (%s); refusing to %s it: set "
                             "force: true if it is one" % (path, reason, doing))

    def image_steps(self):
        """The qemu-img steps; sets ``self.before`` and ``self.after`` (the summaries)."""
        p = self.p
        path = p["path"]
        what = _io.describe(path)
        if p["state"] == "absent":
            if what is None:
                return
            if what not in ("a regular file", "a symbolic link"):
                raise ImageError("%s is %s, not an image file; disk_image never removes it"
                                 % (path, what))
            if what == "a symbolic link" and not p["force"]:
                raise ImageError("%s is a symbolic link; set force: true to remove the link "
                                 "(its target is kept)" % path)
            before = None
            if what == "a regular file":
                self._refuse_unless_image(path, "remove")
                before = state_of(qemu_img.info(path, self.runner,
                                                existing_format(path, p["format"])))
            yield self.step("remove", os.unlink, path)
            self.before, self.after = before, None
            return
        if what not in (None, "a regular file"):
            raise ImageError("%s is %s, not an image file; disk_image only manages image "
                             "files and never replaces anything else" % (path, what))
        exists = what is not None
        if not self.check_mode:
            _io.clean_stale(path, qemu_img.TEMP_TAG)
        current = existing_format(path, p["format"]) if exists else None
        before = state_of(qemu_img.info(path, self.runner, current)) if exists else None
        size = qemu_img.round_up(qemu_img.parse_size(p["size"]), qemu_img.SECTOR) \
            if p["size"] is not None else None
        if exists and before["backing_file"] and not p["backing_file"]:
            raise ImageError("%s has a qcow2 header naming the backing file %s, which was not "
                             "given as backing_file; if it is a raw image (a guest may have "
                             "written that header) declare format: raw, if it is your overlay "
                             "name its backing_file" % (path, before["backing_file"]))
        if exists and p["backing_file"] and before["backing_file"] != p["backing_file"]:
            if not p["force"]:
                raise ImageError("%s has backing file %s, not %s; set force: true to recreate "
                                 "it (its data will be lost)"
                                 % (path, before["backing_file"], p["backing_file"]))
            yield self.step("recreate", self.create, path, size)
            self.before, self.after = before, self.expected(before, size, created=True)
            return
        if not exists or (p["source"] and p["force"]):
            if p["source"]:
                source_format = qemu_img.format_of(p["source"], p["source_format"],
                                                   "source", self.runner)
                src_size = qemu_img.info(p["source"], self.runner, source_format)["virtual_size"]
                if size is not None and size < src_size:
                    raise ImageError("size %d is smaller than the source's %d bytes"
                                     % (size, src_size))
                yield self.step("create", self.convert, p["source"], path, source_format)
                if size is not None and size > src_size:
                    yield self.step("grow", self.resize, path, size, False)
            else:
                if size is None and not p["backing_file"]:
                    raise ImageError("%s does not exist: give size, source or backing_file "
                                     "to create it" % path)
                yield self.step("create", self.create, path, size)
            self.before, self.after = before, self.expected(before, size, created=True)
            return
        # existing image
        if before["format"] != p["format"]:
            self._refuse_unless_image(path, "convert")
            yield self.step("convert", self.convert, path, path, before["format"])
        if size is not None and size != before["virtual_size"]:
            self._refuse_unless_image(path, "resize")
            if not p["resize"]:
                raise ImageError("%s is %d bytes, not %d, and resize is false"
                                 % (path, before["virtual_size"], size))
            if size < before["virtual_size"]:
                if not p["shrink"]:
                    raise ImageError("%s is %d bytes; shrinking it to %d loses data: set "
                                     "shrink: true to allow it"
                                     % (path, before["virtual_size"], size))
                yield self.step("shrink", self.resize, path, size, True)
            else:
                yield self.step("grow", self.resize, path, size, False)
        self.before, self.after = before, self.expected(before, size)

    def expected(self, before, size, created=False):
        p = self.p
        after = {"format": p["format"], "virtual_size": size,
                 "backing_file": p["backing_file"] if created else (before or {}).get(
                     "backing_file")}
        if size is None:
            if p["source"] and created:
                fmt = qemu_img.format_of(p["source"], p["source_format"], "source", self.runner)
                after["virtual_size"] = qemu_img.info(p["source"], self.runner,
                                                      fmt)["virtual_size"]
            elif p["backing_file"] and created:
                after["virtual_size"] = qemu_img.info(p["backing_file"], self.runner,
                                                      self.backing_format())["virtual_size"]
            else:
                after["virtual_size"] = before["virtual_size"]
        return after

    def backing_format(self):
        return qemu_img.format_of(self.p["backing_file"], self.p["backing_format"],
                                  "backing file", self.runner)

    def _mode_for(self, path):
        """Keep an existing file's mode when no mode is given."""
        if self.p.get("mode") is None and os.path.isfile(path):
            return os.stat(path).st_mode & 0o7777
        return None

    # -- effects ----------------------------------------------------------
    def create(self, path, size):
        p = self.p
        backing_format = self.backing_format() if p["backing_file"] else None
        qemu_img.atomic_create(path, p["format"], size, p["backing_file"], backing_format,
                               p["preallocation"], runner=self.runner,
                               mode=self._mode_for(path), before_commit=self.attributes)

    def convert(self, src, dst, src_format):
        qemu_img.atomic_convert(src, dst, self.p["format"], src_format, self.p["compress"],
                                runner=self.runner, mode=self._mode_for(dst),
                                before_commit=self.attributes)

    def resize(self, path, size, shrink):
        qemu_img.resize(path, size, self.p["format"], shrink, runner=self.runner)


def after_info(params):
    """The summary of ``params['path']`` read back after a real run (with ``-f``)."""
    path = params["path"]
    return qemu_img.info(path, fmt=existing_format(path, params["format"]))
