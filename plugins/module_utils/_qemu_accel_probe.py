# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backend of the qemu_accel_probe module: KVM or TCG for one QEMU guest.

The probe only reads the host (it boots a throw-away guest); it plans no change.  In
check mode the verdict cache is not written (``qemu_accel.decide(dry_run=True)``).

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

from ansible_collections.vmhost.virt.plugins.module_utils import build_vm as bv
from ansible_collections.vmhost.virt.plugins.module_utils import qemu_accel as qa
from ansible_collections.vmhost.virt.plugins.module_utils._module import Backend, ModuleFailure


class AccelProbeBackend(Backend):
    """Find the QEMU binary, validate the options, run the probe; ``result`` holds the verdict.

    ``tools.get_bin_path(name)`` looks a name up in PATH (``shutil.which`` without tools);
    ``machine`` is the host's ``uname -m``."""

    report_actions = False

    def __init__(self, params, check_mode=False, tools=None, machine=None, decide=None):
        Backend.__init__(self, params, check_mode, tools)
        self.machine = machine or os.uname().machine
        self.decide = decide or qa.decide

    def which(self, name):
        return self.tools.get_bin_path(name) if self.tools is not None else shutil.which(name)

    def plan(self):
        params = self.params
        qemu = params["qemu"]
        if not os.path.isabs(qemu):
            found = self.which(qemu)
            if not found and self.check_mode:
                # Check mode before the package is installed: predict what a run would do.
                self.result.update(accel="tcg", cpu="max", qemu="/usr/bin/" + qemu,
                                   reason="%s is not installed yet (check mode): a real run probes" % qemu)
                return []
            if not found:
                raise ModuleFailure("%s not found in PATH: install the QEMU system emulator" % qemu)
            qemu = found
        elif not os.access(qemu, os.X_OK):
            raise ModuleFailure("%s is not an executable" % qemu)
        system = params["system"]
        if system not in bv.SYSTEMS:
            raise ModuleFailure("unknown system type %r (known: %s)" % (system, ", ".join(sorted(bv.SYSTEMS))))
        if params["kernel"] and not os.path.isfile(params["kernel"]):
            raise ModuleFailure("kernel %s does not exist" % params["kernel"])
        machine = bv.SYSTEMS[system]["machine"] or list(qa.X86_MACHINE)
        try:
            accel, cpu, reason = self.decide(params["policy"], qemu, params["kernel"],
                                             bv.kvm_possible(system, self.machine),
                                             cache_dir=params["cache_dir"] or None, machine=machine,
                                             console=bv.console_for(system), timeout=params["timeout"],
                                             dry_run=self.check_mode)
        except (qa.AccelError, OSError) as exc:
            raise ModuleFailure(str(exc), qemu=qemu)
        self.result.update(accel=accel, cpu=cpu, reason=reason, qemu=qemu)
        return []

    def diff(self):
        return None
