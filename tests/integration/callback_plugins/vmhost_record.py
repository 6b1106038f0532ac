# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test-only callback: every task result of a play as JSON, so that integration tests
read what Ansible did instead of parsing its screen output (tests/integration/ansible_local.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: vmhost_record
type: aggregate
short_description: Record every task result as JSON (vmhost.virt integration tests)
description:
  - When the playbook ends, writes a JSON list to the file named by E(VMHOST_RECORD_FILE), one
    item per task result, C({task, role, action, status, changed, msg}); C(status) is one of
    V(ok), V(changed), V(failed), V(skipped), V(unreachable).
"""

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "vmhost_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.records = []

    def _record(self, result, status):
        task = result._task
        data = result._result
        if status == "ok" and data.get("changed"):
            status = "changed"
        role = task._role.get_name() if getattr(task, "_role", None) else None
        msg = data.get("msg")
        self.records.append({"task": task.name, "role": role, "action": task.action, "status": status,
                             "changed": bool(data.get("changed")),
                             "msg": msg if isinstance(msg, str) else None})

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("VMHOST_RECORD_FILE")
        if path:
            with open(path, "w") as handle:
                json.dump(self.records, handle)
