# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way vmhost.virt runs external tools, and the constants several modules share.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

# A directory exactly while systemd runs as the init system (sd_booted(3)).
SYSTEMD_DIR = "/run/systemd/system"
# Where Debian's grub-efi-amd64-bin keeps the x86_64-efi modules (grub-mkimage -d).
GRUB_EFI_DIR = "/usr/lib/grub/x86_64-efi"
# 1980-01-01T00:00:00Z, the earliest date FAT can hold.
FAT_EPOCH = 315532800
# A tool that runs longer than this is stuck (mkfs of a big tree on a slow disk takes minutes).
DEFAULT_TIMEOUT = 3600
# 9999-12-31T23:59:59Z: the last second ISO 9660 and ext4 dates can hold.
MAX_EPOCH = 253402300799


class InputError(ValueError):
    """An option or environment value that cannot be used; the message says which and why."""


def resolve_epoch(option, environ=None, default=None):
    """The ``source_date_epoch`` a build uses: the option, else a non-empty
    ``SOURCE_DATE_EPOCH`` in ``environ`` (default :data:`os.environ`), else ``default``
    (iso9660: 1, the reference's; partition_table: None, not reproducible).

    Raises :class:`InputError` naming where a bad value came from."""
    environ = os.environ if environ is None else environ
    if option is not None:
        value, origin = option, "source_date_epoch"
    elif environ.get("SOURCE_DATE_EPOCH", "") != "":
        value, origin = environ["SOURCE_DATE_EPOCH"], "SOURCE_DATE_EPOCH"
    else:
        return default
    try:
        epoch = int(str(value).strip())
    except ValueError:
        raise InputError("%s must be a whole number of seconds since 1970-01-01 UTC, got %r"
                         % (origin, value))
    if epoch < 0 or epoch > MAX_EPOCH:
        raise InputError("%s must lie between 0 and %d (year 9999), got %d"
                         % (origin, MAX_EPOCH, epoch))
    return epoch


# These functions are the only place vmhost.virt starts processes. They are plain
# subprocess calls, not AnsibleModule.run_command, because module_utils here also serve
# code that runs without an AnsibleModule (the test harness, filters, pure backends);
# argv lists only, never a shell.  (ansible-test's ansible-bad-function check wants
# run_command in module_utils: these two lines are the deliberate exception.)


def spawn(argv, **kwargs):
    """Start ``argv`` (a list) with :class:`subprocess.Popen` for callers that must watch
    a process while it runs (stream its output, stop it after a deadline)."""
    if not isinstance(argv, (list, tuple)) or not argv:
        raise TypeError("argv must be a non-empty list")
    kwargs.pop("shell", None)
    return subprocess.Popen(list(argv), **kwargs)  # pylint: disable=ansible-bad-function


def run_command(argv, env=None, cwd=None, timeout=DEFAULT_TIMEOUT, extra_env=None, data=None):
    """Run ``argv`` (a list, never a shell string) and return ``(rc, stdout, stderr)`` as text.

    ``env`` replaces the environment, ``extra_env`` is added to the current one, ``data``
    (bytes) is the program's standard input.  A program that cannot be started gives rc
    127, one that times out rc 124 (the conventions of the shell and of timeout(1)), with
    the reason in stderr."""
    if not isinstance(argv, (list, tuple)) or not argv:
        raise TypeError("argv must be a non-empty list")
    if extra_env:
        env = dict(os.environ if env is None else env)
        env.update(extra_env)
    stdin = {"input": data} if data is not None else {"stdin": subprocess.DEVNULL}
    try:
        proc = subprocess.run(list(argv), env=env, cwd=cwd,  # pylint: disable=ansible-bad-function
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
                              timeout=timeout, **stdin)
    except OSError as exc:
        return 127, "", "cannot run %s: %s" % (argv[0], exc)
    except subprocess.TimeoutExpired:
        return 124, "", "%s did not finish within %s s" % (argv[0], timeout)
    return (proc.returncode, proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"))
