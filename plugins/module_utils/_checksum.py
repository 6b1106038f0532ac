# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the image modules' plan digests stamp: the SHA-256 of a source file's bytes (the
``checksum_sources`` option) and the size and mtime of the tools an image is built with.

Private to vmhost.virt: other collections must not import this module.

The file is read through a descriptor opened with ``O_NOFOLLOW | O_NONBLOCK``, and the
descriptor must still be the regular file a walk saw (same ``st_dev``/``st_ino``): a
symbolic link planted in its place is never followed, a FIFO swapped in never blocks the
run, and a file that vanished or changed type fails with a message, not a traceback.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import os
import stat

from ansible_collections.vmhost.virt.plugins.module_utils._io import describe_mode

CHUNK = 1 << 20


def file_sha256(path, ident, error, origin=None):
    """Hex SHA-256 of the bytes of the regular file ``path``, which a walk found with
    ``ident`` = ``(st_dev, st_ino)``.  Raises ``error`` (the module's error class) with a
    message when the file is gone, is no longer that regular file, or cannot be read."""
    where = "%s: " % origin if origin else ""
    flags = (os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
             | getattr(os, "O_CLOEXEC", 0))
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error("%s%s became a symbolic link after the sources were listed; not following it"
                        % (where, path))
        if exc.errno == errno.ENOENT:
            raise error("%s%s vanished after the sources were listed" % (where, path))
        raise error("%s%s cannot be read for checksum_sources: %s" % (where, path, exc.strerror or exc))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error("%s%s is now %s, no longer the regular file listed; not reading it"
                        % (where, path, describe_mode(st.st_mode)))
        if (st.st_dev, st.st_ino) != tuple(ident):
            raise error("%s%s was replaced by another file after the sources were listed" % (where, path))
        digest = hashlib.sha256()
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            try:
                count = os.readv(fd, [buf])
            except OSError as exc:
                raise error("%s%s cannot be read for checksum_sources: %s"
                            % (where, path, exc.strerror or exc))
            if not count:
                break
            digest.update(view[:count])
        return digest.hexdigest()
    finally:
        os.close(fd)


def tool_stamp(path):
    """``[path, size, mtime in ns]`` of a tool (a program or data file an image is built
    with), or ``[path, None]`` when it cannot be found: in a plan digest, an upgraded tool
    rebuilds the image."""
    try:
        st = os.stat(path)
    except OSError:
        return [path, None]
    return [path, st.st_size, st.st_mtime_ns]
