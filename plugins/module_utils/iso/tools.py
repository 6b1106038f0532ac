# -*- coding: utf-8 -*-
# Copyright (c) vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running the ISO tools (xorriso, grub-mkimage): a clean UTC environment and one checked run.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.vmhost.virt.plugins.module_utils import _tools
from ansible_collections.vmhost.virt.plugins.module_utils.iso.names import IsoError


def default_run(argv, env=None, cwd=None):
    """Run a tool; return (rc, stdout, stderr)."""
    return _tools.run_command(argv, env=env, cwd=cwd)


def tool_env(epoch):
    env = dict(os.environ)
    env.pop("SOURCE_DATE_EPOCH", None)
    env["TZ"] = "UTC"
    env["LC_ALL"] = "C"
    env.pop("FAKETIME", None)
    return env


def run_checked(run, argv, env, what):
    try:
        rc, out, err = run(argv, env=env)
    except OSError as exc:
        raise IsoError("%s: cannot run %s: %s" % (what, argv[0], exc))
    if rc != 0:
        raise IsoError("%s failed (exit %d): %s" % (what, rc, (err or out).strip()[-2000:]))
    return out, err
