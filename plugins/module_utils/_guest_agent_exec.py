# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backend of the guest_agent_exec module: one QEMU guest agent command.

A read-only command (:func:`qga.changes_state` is false) is part of reading the state
and runs in the plan.  A command that changes the guest is the plan's one
:class:`~._module.Change`, so the shared base sends it only outside check mode; in
check mode the plan sends ``guest-ping`` instead (same socket, same handshake), so
check mode fails exactly when a real run could not reach the agent.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.vmhost.virt.plugins.module_utils import qga
from ansible_collections.vmhost.virt.plugins.module_utils._module import Backend, Change, ModuleFailure


class AgentExecBackend(Backend):
    """Validate the options, then run (or, for a state-changing command, plan) the command."""

    report_actions = False

    def check_params(self):
        p = self.params
        command = p["command"].strip()
        if not command:
            raise ModuleFailure("command must not be empty, for example guest-ping")
        if p["timeout"] <= 0:
            raise ModuleFailure("timeout must be a positive number of seconds, got %s" % p["timeout"])
        if p["wait_for"] and p["wait_timeout"] <= 0:
            raise ModuleFailure("wait_timeout must be a positive number of seconds, got %s" % p["wait_timeout"])
        return command

    def send(self, command, arguments):
        """Send one command; its reply goes to ``result`` (a failure keeps what was learnt)."""
        p = self.params
        start = time.monotonic()
        try:
            if p["wait_for"]:
                value, attempts = qga.call_when_ready(p["socket"], command, arguments,
                                                      timeout=p["timeout"], wait_timeout=p["wait_timeout"])
            else:
                value, attempts = qga.call(p["socket"], command, arguments, timeout=p["timeout"]), 1
        except qga.QGAError as exc:
            failure = dict(self.result, changed=False, elapsed=round(time.monotonic() - start, 3),
                           attempts=exc.attempts, reason=exc.reason)
            if isinstance(exc, qga.AgentError):
                failure.update(error_class=exc.error_class, error_desc=exc.desc)
            raise ModuleFailure(str(exc), **failure)
        self.result.update(attempts=attempts, elapsed=round(time.monotonic() - start, 3), result=value)

    def plan(self):
        command = self.check_params()
        arguments = self.params["arguments"] or None
        changing = qga.changes_state(command)
        self.result.update(command=command, sent=True, attempts=0, result=None, elapsed=0.0)
        if not changing:
            self.send(command, arguments)
            return []
        if self.check_mode:
            self.send("guest-ping", None)
            self.result.update(sent=False, result=None)
        return [Change("sent %s to the guest agent" % command, apply=lambda: self.send(command, arguments))]

    def diff(self):
        return None
