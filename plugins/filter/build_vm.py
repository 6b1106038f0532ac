# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters the build_vm role renders its units and offload entries with.

The logic lives in ``plugins/module_utils/build_vm.py``; these wrappers turn its errors
into ``AnsibleFilterError`` messages that name the VM and the field.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError, AnsibleUndefinedVariable
from jinja2.runtime import Undefined

from ansible_collections.vmhost.virt.plugins.module_utils import binfmt
from ansible_collections.vmhost.virt.plugins.module_utils import build_vm as bv


def _plain(value):
    """Turn Ansible's lazy/unsafe containers into plain Python values."""
    if isinstance(value, Undefined):
        raise AnsibleUndefinedVariable("build_vm filter applied to an undefined value")
    if isinstance(value, dict):
        return dict((str(k), _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def _call(func, *args):
    try:
        return func(*args)
    except bv.BuildVMError as exc:
        raise AnsibleFilterError("; ".join(exc.messages))


def build_vm_problems(machines, ss_output="", own_pids=None, missing_paths=None):
    """Messages naming VM and field for every problem of ``machines`` ([] if none)."""
    return bv.problems(_plain(machines), str(ss_output or ""), _plain(own_pids or []), _plain(missing_paths or []))


def build_vm_normalize(machines):
    """The machine list with every field filled in (defaults, presets)."""
    return _call(bv.validate, _plain(machines))


def build_vm_qemu_binary(vm):
    return _call(bv.qemu_for, _plain(vm)["systems"][0])[0]


def build_vm_exec_start(vm, accel="tcg", qemu=None):
    """The QEMU command line as a systemd ExecStart= value."""
    return bv.systemd_command(_call(bv.qemu_argv, _plain(vm), str(accel), qemu))


def build_vm_exec_start_post(vm):
    """The secret sender as a systemd ExecStartPost= value ('' when not delivered)."""
    argv = bv.sender_argv(_plain(vm))
    return bv.systemd_command(argv) if argv else ""


def build_vm_nix_machine(vm, host_key):
    return _call(bv.nix_machine_line, _plain(vm), str(host_key))


def build_vm_ssh_config(vm, known_hosts=bv.KNOWN_HOSTS):
    return bv.ssh_config_block(_plain(vm), str(known_hosts))


def build_vm_known_hosts(vm, host_keys):
    return _call(bv.known_hosts_lines, _plain(vm), _plain(host_keys))


def build_vm_guix_machine(vm, host_key):
    return _call(bv.guix_machine_entry, _plain(vm), str(host_key))


def build_vm_cpu_for_date(systems, date):
    """CPU model the reference's date table gives (None before 2006)."""
    try:
        return bv.cpu_model_for_date(_plain(systems), str(date))
    except ValueError as exc:
        raise AnsibleFilterError(str(exc))


def build_vm_binfmt_platforms(machines):
    """The qemu_binfmt platforms that run the systems of the enabled build VMs, sorted."""
    platforms = set()
    for vm in _plain(machines or []):
        if not isinstance(vm, dict) or not vm.get("enabled", True):
            continue
        for system in vm.get("systems") or bv.DEFAULTS["systems"]:
            try:
                platforms.add(binfmt.platform_of_system(system))
            except binfmt.BinfmtError as exc:
                raise AnsibleFilterError("build VM %s: %s" % (vm.get("name", "?"), exc))
    return sorted(platforms)


class FilterModule(object):
    def filters(self):
        return {
            "build_vm_problems": build_vm_problems,
            "build_vm_normalize": build_vm_normalize,
            "build_vm_qemu_binary": build_vm_qemu_binary,
            "build_vm_exec_start": build_vm_exec_start,
            "build_vm_exec_start_post": build_vm_exec_start_post,
            "build_vm_nix_machine": build_vm_nix_machine,
            "build_vm_ssh_config": build_vm_ssh_config,
            "build_vm_known_hosts": build_vm_known_hosts,
            "build_vm_guix_machine": build_vm_guix_machine,
            "build_vm_cpu_for_date": build_vm_cpu_for_date,
            "build_vm_binfmt_platforms": build_vm_binfmt_platforms,
        }
