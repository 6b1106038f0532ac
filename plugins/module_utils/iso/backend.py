# -*- coding: utf-8 -*-
# Copyright (c) vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backend of vmhost.virt.iso9660: plan the image, stream it, commit it when it differs.

Private to vmhost.virt: other collections must not import this module.

An image is unchanged, without building anything, when the record noted on it (an extended
attribute, :func:`.._io.read_record`) holds this plan's digest (:meth:`.plan.Plan.digest`) and
the file was not written since.  Otherwise the stream from xorriso is compared with the
existing image as it arrives; a new file is only
written (in a private directory beside ``path``, then renamed) from the first differing byte
on.  Check mode writes nothing, unless a diff needs the new image to list it (then into the
module's temporary directory).

An image that does not exist yet is written by xorriso itself into the private directory
(:class:`.writer.NewImage`), started on an outline of the plan (``make_plan(shallow=True)``)
while the full plan walks the sources; a failing walk stops it, a full plan whose command
differs restarts it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

from ansible_collections.vmhost.virt.plugins.module_utils import _io
from ansible_collections.vmhost.virt.plugins.module_utils.iso.names import IsoError, parse_mode
from ansible_collections.vmhost.virt.plugins.module_utils.iso.plan import make_plan
from ansible_collections.vmhost.virt.plugins.module_utils.iso.grub import build_tools
from ansible_collections.vmhost.virt.plugins.module_utils.iso.writer import ImageSink, NewImage, build
from ansible_collections.vmhost.virt.plugins.module_utils.iso.xorriso import diff_images, format_listing

TEMP_TAG = "iso9660"


class Iso9660(_io.FileBackend):
    """``params`` are the module's; ``tmpdir`` the module's temporary directory.  With a diff
    wanted, the new image is kept (in check mode: in ``tmpdir``) until it is listed."""

    errors = (IsoError, _io.IoError)

    def __init__(self, params, check_mode=False, tools=None, tmpdir=None):
        _io.FileBackend.__init__(self, params, check_mode, tools)
        self.tmpdir = tmpdir
        self.workdir = None
        self.job = None             # xorriso writing a new image (writer.NewImage), until it is done
        self.image_diff = {}

    def failure_result(self):
        return {"path": self.params["path"]}

    def steps(self):
        p = self.params
        path = p["path"]
        parent = os.path.dirname(os.path.abspath(path)) or "."
        if not os.path.isdir(parent):
            raise IsoError("the directory %s of path does not exist; create it first" % parent)
        if os.path.isdir(path):
            raise IsoError("path %s is a directory; give the file name of the image" % path)
        if p["mode"] is not None:
            parse_mode(p["mode"], "mode")
        args = dict(
            files=p["files"], content=p["content"], volume_id=p["volume_id"],
            volume_uuid=p["volume_uuid"], source_date_epoch=p["source_date_epoch"], rock_ridge=p["rock_ridge"],
            joliet=p["joliet"], interchange_level=p["interchange_level"], boot=p["boot"], cidata=p["cidata"])
        outline = make_plan(shallow=True, **args)     # every input but the trees below the sources
        exists = os.path.lexists(path)
        if exists and (os.path.islink(path) or not os.path.isfile(path)):
            raise IsoError("path %s exists and is %s, not a regular file; this module writes image files only"
                           % (path, _io.describe(path)))
        if not self.check_mode:     # leftovers of killed runs go first, whatever this run decides
            _io.clean_stale(path, TEMP_TAG)
        job = None
        if not exists and not self.check_mode and outline.boot is None:
            # A new image: xorriso starts on the outline while the sources are walked, checked
            # and digested; a full plan that differs from the outline's command restarts it.
            self.workdir = _io.make_temp_dir(path, TEMP_TAG)
            job = self.job = NewImage(outline, os.path.join(self.workdir, "new.iso"), tmpdir=self.tmpdir)
        try:
            plan = make_plan(**args)
            digest = plan.digest(build_tools(plan), checksum_sources=bool(p.get("checksum_sources")))
        except BaseException:
            if job is not None:
                job.abort()
            raise
        self.result.update(path=path, volume_id=plan.volume_id, volume_uuid=plan.volume_uuid,
                           source_date_epoch=plan.epoch, entries=len(plan.entries))
        self.warn(plan.warnings)
        record = _io.read_record(path) if exists else None
        if record is not None and record.get("iso9660") == digest and record.get("sha256"):
            # built from exactly this plan and not written since: unchanged, nothing rebuilt
            self.result.update(sha256=record["sha256"], size=record["size"])
            change = self.attributes_step(path)
            if change is not None:
                yield change
            return
        keep = not self.check_mode or self.want_diff
        if self.workdir is None:
            self.workdir = _io.make_temp_dir(path, TEMP_TAG, parent=self.tmpdir if self.check_mode else None)
        candidate = os.path.join(self.workdir, "new.iso")
        if exists or not keep:
            # compared with the image there as it streams; nothing written while they agree
            sink = ImageSink(path if exists else None, candidate if keep else None)
            try:
                build(plan, sink, tmpdir=self.tmpdir)
            except IsoError:
                sink.discard()
                raise
            same = sink.close()
            sha256, size = sink.sha256, sink.size
        else:
            # nothing to compare with: xorriso writes the new file itself
            if job is not None and not job.matches(plan):
                job.abort()
                job = None
            if job is None:
                job = self.job = NewImage(plan, candidate, tmpdir=self.tmpdir)
            self.job = None
            sha256, size = job.finish()
            same = False
        self.result.update(sha256=sha256, size=size)
        if same:
            if not self.check_mode:     # the same bytes: note the plan so the next run need not build
                _io.write_record(path, iso9660=digest, sha256=sha256)
            change = self.attributes_step(path)   # mode/owner/group of the unchanged image
            if change is not None:
                yield change
            return
        if self.want_diff:
            self._list_changes(path if exists else None, candidate)
        yield self.step("writing %s" % path, self._commit, candidate, path, exists, digest, sha256)

    def _list_changes(self, old, new):
        try:
            self.result["changes"] = diff_images(old, new)
            self.image_diff = {"before_header": old or "(absent)", "after_header": self.params["path"],
                               "before": format_listing(old), "after": format_listing(new)}
        except IsoError as exc:
            if self.tools is not None:
                self.tools.warn("cannot list the images for the diff: %s" % exc)

    def _commit(self, candidate, path, exists, digest, sha256):
        # a new image is private (0600) unless mode says otherwise; a replaced one keeps its mode
        os.chmod(candidate, os.stat(path).st_mode & 0o7777 if exists else _io.DEFAULT_MODE)
        if self.tools is not None:
            self.tools.set_attributes(candidate)
        _io.write_record(candidate, iso9660=digest, sha256=sha256)
        _io.commit(candidate, path)

    def warn(self, warnings):
        for warning in dict.fromkeys(warnings):
            if self.tools is not None:
                self.tools.warn(warning)

    def diff(self):
        return self.image_diff or None     # unchanged: no diff, as before

    def close(self):
        if self.job is not None:    # left by an error before it was done: stop it
            self.job.abort()
            self.job = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
