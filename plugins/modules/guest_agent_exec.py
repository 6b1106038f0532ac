#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: guest_agent_exec
short_description: Send a command to a QEMU guest agent through its host-side socket
version_added: "0.1.0"
description:
  - Connects to the unix socket that QEMU binds to a guest's C(org.qemu.guest_agent.0)
    virtio-serial port, synchronises with C(qemu-ga) (a raw C(0xFF) byte, then
    C(guest-sync-delimited) with a random id, dropping stale replies), sends one command
    and returns the agent's reply.
  - Typical uses are C(guest-ping) to wait until a guest is up, C(guest-get-osinfo) and
    C(guest-network-get-interfaces) to learn about it, and C(guest-shutdown) to power it
    off cleanly.
  - Every attempt is bounded by O(timeout); a path that does not exist, is not a socket,
    or that nobody listens on fails with a clear message instead of hanging.
  - Runs on the VM host (the machine whose QEMU owns the socket), not inside the guest.
author:
  - vmhost.virt contributors (@vmhost)
options:
  socket:
    description:
      - Path of the host-side unix socket of the guest agent channel, for example the
        C(qga.sock) next to a harness VM or the path given to QEMU's
        C(-chardev socket,path=...,server=on,wait=off).
    type: path
    required: true
  command:
    description:
      - The QGA command to run, for example V(guest-ping), V(guest-info),
        V(guest-get-osinfo), V(guest-network-get-interfaces) or V(guest-shutdown).
      - Commands known to only read guest state report C(changed=false); every other
        command (V(guest-shutdown), V(guest-exec), V(guest-set-time), ...) reports
        C(changed=true).
    type: str
    required: true
  arguments:
    description:
      - Not logged (C(no_log)), it can carry passwords, file contents or keys.
      - The command's C(arguments) object, for example a C(mode) of V(reboot) for
        V(guest-shutdown), or a C(path) of V(/bin/true) for V(guest-exec).
    type: dict
  timeout:
    description:
      - Seconds one attempt (connect, handshake and command) may take before it fails.
    type: float
    default: 10
  wait_for:
    description:
      - Keep retrying while the socket is missing, refused, closed or silent (the VM or
        its agent is still starting) until the agent answers or O(wait_timeout) passes.
      - An error reply from the agent, or a path that exists but is not a socket, is
        never retried.
    type: bool
    default: false
  wait_timeout:
    description:
      - Overall deadline in seconds for O(wait_for=true).
    type: float
    default: 300
extends_documentation_fragment:
  - vmhost.virt.attributes
  - vmhost.virt.attributes.files
attributes:
  check_mode:
    support: full
    details:
      - Read-only commands run in check mode. Commands that change the guest are not sent;
        the module still connects and completes the handshake, so check mode fails exactly
        when a real run could not reach the agent, and reports C(changed=true).
  diff_mode:
    support: none
    details:
      - There is no file or configuration to compare.
  safe_file_operations:
    support: none
    details:
      - The module writes no files.
  idempotent:
    support: partial
    details:
      - Read-only commands never change anything. Commands that change the guest report a
        change every time they are sent.
notes:
  - C(guest-shutdown) and C(guest-suspend-*) send no reply when they succeed. The module
    follows them with another C(guest-sync-delimited); an error reply means failure, the
    sync answer, the connection closing (the VM powered off) or no answer before
    O(timeout) mean the agent accepted the command, and RV(result) is V(null).
  - The agent serves one client at a time; a second client waits until the first one
    disconnects, which O(timeout) bounds.
  - Commands blocked in the guest (see the C(vmhost.virt.guest_agent) role's
    C(guest_agent_blocked_rpcs)) fail with the agent's own class and description.
seealso:
  - name: QEMU guest agent protocol reference
    description: The commands and their arguments.
    link: https://www.qemu.org/docs/master/interop/qemu-ga-ref.html
"""

EXAMPLES = r"""
- name: Wait until the guest agent answers (the VM is booting)
  vmhost.virt.guest_agent_exec:
    socket: /var/lib/vmhost/vms/build1/qga.sock
    command: guest-ping
    wait_for: true
    wait_timeout: 600

- name: Ask the guest what it runs
  vmhost.virt.guest_agent_exec:
    socket: /var/lib/vmhost/vms/build1/qga.sock
    command: guest-get-osinfo
  register: osinfo

- name: Show the guest's addresses
  vmhost.virt.guest_agent_exec:
    socket: /var/lib/vmhost/vms/build1/qga.sock
    command: guest-network-get-interfaces
  register: interfaces

- name: Power the guest off cleanly
  vmhost.virt.guest_agent_exec:
    socket: /var/lib/vmhost/vms/build1/qga.sock
    command: guest-shutdown
    arguments:
      mode: powerdown
"""

RETURN = r"""
command:
  description: The command that was sent (or, in check mode, would have been sent).
  returned: always
  type: str
  sample: guest-get-osinfo
result:
  description:
    - The agent's C(return) value. V(null) for commands that send no reply on success
      (C(guest-shutdown)) and for state-changing commands skipped in check mode.
  returned: always
  type: raw
  sample: {"id": "debian", "version-id": "12", "pretty-name": "Debian GNU/Linux 12 (bookworm)"}
sent:
  description: Whether the command was sent to the agent (false only in check mode).
  returned: always
  type: bool
  sample: true
attempts:
  description: How many connection attempts were made (more than one only with O(wait_for=true)).
  returned: always
  type: int
  sample: 1
elapsed:
  description: Seconds from the first attempt to the answer.
  returned: always
  type: float
  sample: 0.02
error_class:
  description: The agent's error class when it refused the command.
  returned: failure, when the agent answered with an error
  type: str
  sample: CommandNotFound
error_desc:
  description: The agent's error description when it refused the command.
  returned: failure, when the agent answered with an error
  type: str
  sample: Command guest-exec has been disabled
reason:
  description:
    - Why talking to the agent failed, one of V(missing), V(not_socket), V(refused),
      V(permission), V(timeout), V(closed), V(protocol), V(agent).
  returned: failure
  type: str
  sample: timeout
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmhost.virt.plugins.module_utils._guest_agent_exec import AgentExecBackend
from ansible_collections.vmhost.virt.plugins.module_utils._module import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", required=True),
            command=dict(type="str", required=True),
            arguments=dict(type="dict", no_log=True),
            timeout=dict(type="float", default=10),
            wait_for=dict(type="bool", default=False),
            wait_timeout=dict(type="float", default=300),
        ),
        supports_check_mode=True,
    )
    run(module, AgentExecBackend(module.params, module.check_mode))


if __name__ == "__main__":
    main()
