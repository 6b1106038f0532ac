# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Installing a group of key files as one unit (a killed run never leaves a private key without its public half).

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.vmhost.virt.plugins.module_utils import _io

TEMP_TAG = "build_vm_secrets"


def write_group(files, unlink_first=(), hook=None):
    """Install ``files`` (a list of ``(path, bytes, mode)``) as one unit.

    Every file is first written in full to a temporary file next to its target
    (mode set before any content, fsynced).  Then the paths in ``unlink_first``
    (old private halves being replaced) are removed, and the temporary files are
    renamed into place in list order, so callers list public halves before
    private ones: a process killed at any point leaves, for each pair, either the
    old pair, the new pair, or a public half alone, never a private key without
    its public half and never a partly written file.  ``hook(stage)`` is called
    between steps (tests use it).  On an exception the temporary files are
    removed.
    """
    temps = []
    try:
        for path, content, mode in files:
            directory = os.path.dirname(path) or "."
            _io.check_target(path)
            fd, tmp = _io.make_temp(path, TEMP_TAG, mode)
            temps.append(tmp)
            try:
                _io.write_all(fd, content)
                os.fsync(fd)
            finally:
                os.close(fd)
            if hook:
                hook("written:" + path)
        for path in unlink_first:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            if hook:
                hook("unlinked:" + path)
        for (path, _content, mode), tmp in zip(files, temps):
            os.rename(tmp, path)
            if hook:
                hook("renamed:" + path)
        for directory in sorted(set(os.path.dirname(p) or "." for p, _c, _m in files)):
            _io.fsync_dir(directory)
        temps = []
    finally:
        for tmp in temps:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def temp_files(directory):
    """Temporary files of write_group in ``directory`` (of any run, alive or not)."""
    return _io.temps_in(directory, TEMP_TAG, stale_only=False)


def stale_temp_files(directory):
    """Temporary files a killed run left in ``directory`` (never a live run's)."""
    return _io.temps_in(directory, TEMP_TAG, stale_only=True)
