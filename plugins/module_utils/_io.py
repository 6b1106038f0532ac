# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way vmhost.virt modules write files.

Private to vmhost.virt: other collections must not import this module.

* Temporary files and directories are made by :func:`tempfile.mkstemp` /
  :func:`tempfile.mkdtemp` in the target's own directory (``O_EXCL``, an
  unpredictable suffix, so a planted symlink is never followed), named
  ``.<target>.<tag>.<pid>.<random>`` so that :func:`clean_stale` can tell this
  module's leftovers of a killed run (dead PID, our tag, our owner) from
  anything else.
* The mode is set before any content is written (default 0600).
* :func:`commit` fsyncs the file, refuses to rename over anything that is not a
  regular file (a device node, a directory, a symlink), renames, and fsyncs
  the directory.
* :func:`check_target` is what every module calls before it decides to write.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import abc

import errno
import json
import os
import re
import shutil
import stat
import tempfile

from ansible_collections.vmhost.virt.plugins.module_utils._module import (
    Backend, Change, ModuleFailure, ModuleTools,
)

DEFAULT_MODE = 0o600


class IoError(Exception):
    """A file could not be written safely; the message says what and why."""


def _split(path):
    directory, base = os.path.split(os.path.abspath(path))
    return directory, base


def temp_prefix(path, tag):
    directory, base = _split(path)
    return directory, ".%s.%s.%d." % (base, tag, os.getpid())


def make_temp(path, tag, mode=DEFAULT_MODE):
    """``(fd, name)`` of a new empty file beside ``path`` with ``mode`` already set."""
    directory, prefix = temp_prefix(path, tag)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def make_temp_dir(path, tag, parent=None):
    """A new private (0700) directory beside ``path`` (or in ``parent``)."""
    directory, prefix = temp_prefix(path, tag)
    return tempfile.mkdtemp(prefix=prefix, dir=parent or directory)


def temp_path(path, tag, mode=DEFAULT_MODE):
    """Like :func:`make_temp` but closes the descriptor: for tools that write the file by name."""
    fd, tmp = make_temp(path, tag, mode)
    os.close(fd)
    return tmp


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def open_nofollow(path, flags=os.O_RDONLY, mode=0o600):
    """``os.open`` that refuses a symlink as the last component."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise IoError("%s is a symbolic link; refusing to follow it" % path)
        raise


def fsync_path(path):
    fd = open_nofollow(path)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory):
    fd = os.open(directory or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def describe(path):
    """What ``path`` is, in words, or None when nothing is there."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return describe_mode(st.st_mode)


def describe_mode(mode):
    """The kind of file of an ``st_mode``, in words ("a regular file", "a FIFO", ...)."""
    kinds = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISDIR, "a directory"),
             (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISREG, "a regular file"))
    for test, words in kinds:
        if test(mode):
            return words
    return "a special file"  # pragma: no cover


def check_target(path, allow_block=False):
    """Raise :class:`IoError` unless ``path`` is absent or a regular file
    (or, with ``allow_block``, a block device written in place)."""
    what = describe(path)
    if what is None or what == "a regular file":
        return what
    if allow_block and what == "a block device":
        return what
    raise IoError("%s is %s, not an image file; refusing to replace it" % (path, what))


def commit(tmp, path, fsync=True):
    """fsync ``tmp``, rename it over ``path`` (never over a non-regular file), fsync the directory."""
    check_target(path)
    if fsync:
        fsync_path(tmp)
    os.rename(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def build_atomically(path, tag, fill, mode=None, before_commit=None):
    """Let ``fill(tmp)`` write a new file beside ``path`` (created with ``mode``, default 0600)
    by name, run ``before_commit(tmp)`` (owner/group), then :func:`commit` it over ``path``.
    On any error the temporary file is removed and ``path`` is untouched."""
    check_target(path)
    tmp = temp_path(path, tag, DEFAULT_MODE if mode is None else mode)
    try:
        fill(tmp)
        if before_commit:
            before_commit(tmp)
        commit(tmp, path)
        tmp = None
    finally:
        discard(tmp)


def atomic_write(path, data, mode=DEFAULT_MODE, tag="write"):
    """Write ``data`` (bytes) to ``path`` atomically with ``mode``."""
    check_target(path)
    fd, tmp = make_temp(path, tag, mode)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        commit(tmp, path, fsync=False)
        tmp = None
    finally:
        discard(tmp)


def discard(tmp):
    """Remove a temporary file or directory of this run (never following links)."""
    if not tmp:
        return
    try:
        st = os.lstat(tmp)
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def temps_in(directory, tag, stale_only=True, base=None):
    """Temporary entries of ``tag`` in ``directory`` (``.<base>.<tag>.<pid>.<random>``) that we own;
    with ``stale_only`` only those whose process is gone.  ``base`` limits them to one target."""
    name_re = re.escape(base) if base is not None else ".+"
    pattern = re.compile(r"^\.%s\.%s\.(\d+)\.[A-Za-z0-9_]+$" % (name_re, re.escape(tag)))
    found = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return found
    for name in names:
        match = pattern.match(name)
        if not match:
            continue
        pid = int(match.group(1))
        if stale_only and (pid == os.getpid() or _pid_alive(pid)):
            continue
        full = os.path.join(directory, name)
        try:
            if os.lstat(full).st_uid != os.geteuid():
                continue
        except OSError:
            continue
        found.append(full)
    return found


def clean_stale(path, tag):
    """Remove what a killed run of ours left beside ``path``: entries named
    ``.<base>.<tag>.<pid>.<random>`` whose PID is gone and whose owner is us.
    Returns the removed names."""
    directory, base = _split(path)
    removed = temps_in(directory, tag, True, base)
    for full in removed:
        discard(full)
    return removed


def file_attributes(module, path):
    """Apply ``mode``/``owner``/``group`` (``add_file_common_args``) to ``path``; True when changed.

    A module with no ``mode`` given keeps the file's current mode (new files are
    created 0600 by :func:`make_temp`)."""
    args = module.load_file_common_arguments(module.params, path=path)
    return module.set_fs_attributes_if_different(args, False)


def first_data(handle, chunk=1 << 20):
    """Offset of the first non-zero byte of the open binary file ``handle``, or None.

    Holes are skipped with ``SEEK_DATA`` where the file system supports it."""
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    position = 0
    fd = handle.fileno()
    while position < end:
        if hasattr(os, "SEEK_DATA"):
            try:
                position = os.lseek(fd, position, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole is left
                    return None
                if exc.errno != errno.EINVAL:
                    raise
        handle.seek(position)
        data = handle.read(chunk)
        if not data:
            return None
        stripped = data.lstrip(b"\0")
        if stripped:
            return position + len(data) - len(stripped)
        position += len(data)
    return None


RECORD_XATTR = "user.vmhost.built-from"


def read_record(path):
    """What :func:`write_record` noted on ``path`` (a dict), or None when there is no record,
    the file system keeps no extended attributes, or the file changed since (its size,
    mtime or inode differ: something else wrote or replaced it)."""
    try:
        st = os.lstat(path)
        record = json.loads(os.getxattr(path, RECORD_XATTR, follow_symlinks=False).decode("utf-8"))
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(record, dict) or not stat.S_ISREG(st.st_mode) or [
            record.get("size"), record.get("mtime_ns"), record.get("ino")] != [
            st.st_size, st.st_mtime_ns, st.st_ino]:
        return None
    return record


def write_record(path, **fields):
    """Note ``fields`` (JSON values) and the file's size, mtime and inode on ``path`` in the
    extended attribute :data:`RECORD_XATTR`; False where extended attributes are not kept."""
    st = os.lstat(path)
    record = dict(fields, size=st.st_size, mtime_ns=st.st_mtime_ns, ino=st.st_ino)
    try:
        os.setxattr(path, RECORD_XATTR, json.dumps(record, sort_keys=True).encode("utf-8"),
                    follow_symlinks=False)
    except (OSError, AttributeError):
        return False
    return True


class FileTools(ModuleTools):
    """:class:`ModuleTools` plus the file common arguments (``mode``/``owner``/``group`` of
    ``add_file_common_args``) of the running module."""

    def attributes_differ(self, path):
        """Whether ``path`` lacks the requested mode/owner/group (asks, changes nothing)."""
        saved = self.module.check_mode
        self.module.check_mode = True
        try:
            return file_attributes(self.module, path)
        finally:
            self.module.check_mode = saved

    def set_attributes(self, path):
        """Give ``path`` the requested mode/owner/group; True when something changed."""
        return file_attributes(self.module, path)


class FileBackend(Backend):
    """A :class:`Backend` whose module writes one file (an image).

    Subclasses implement :meth:`steps` (a generator of :class:`Change`) instead of ``plan``;
    the errors listed in ``errors`` that a step or the planning raises become
    :class:`ModuleFailure` with that message (plus :meth:`failure_result`).  ``tools`` is a
    :class:`FileTools` (or, in unit tests, any object with ``attributes_differ`` and
    ``set_attributes``)."""

    errors = (IoError,)
    report_actions = False

    @abc.abstractmethod
    def steps(self):
        """Yield the :class:`Change` objects that write the file."""

    want_diff = False

    def execute(self, diff=False):
        self.want_diff = diff     # a plan may need to know (iso9660 keeps the new image to list it)
        return Backend.execute(self, diff)

    def failure_result(self):
        """Return values a refusal carries besides ``msg`` and ``changed``."""
        return {}

    def plan(self):
        try:
            yield from self.steps() or ()
        except self.errors as exc:
            raise ModuleFailure(str(exc), **self.failure_result())

    def step(self, description, func, *args):
        """A :class:`Change` that calls ``func(*args)``, its errors turned into ModuleFailure."""
        def apply():
            try:
                func(*args)
            except self.errors as exc:
                raise ModuleFailure(str(exc), **self.failure_result())
        return Change(description, apply=apply)

    def attributes_step(self, path, description="attributes"):
        """The change of mode/owner/group of the existing regular file ``path``, or None."""
        if self.tools is None or not os.path.isfile(path) or not self.tools.attributes_differ(path):
            return None
        return self.step(description, self.tools.set_attributes, path)
