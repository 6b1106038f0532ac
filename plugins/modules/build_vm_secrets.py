#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: build_vm_secrets
short_description: Generate the keys a host hands to its build VMs, in every format the build daemons read
version_added: 0.1.0
description:
  - Creates, for one build VM called O(name), a secret root laid out as the guest expects to receive it
    (C(etc/ssh/ssh_host_*_key{,.pub}), C(etc/ssh/authorized_keys.d/<offloading_user>), C(etc/guix/signing-key.{sec,pub}),
    C(etc/guix/acl), C(etc/nix/signing-key.{sec,pub})) and an SSH key pair O(offloading_key) the host uses to offload
    builds to the guest.
  - Keys are generated in Python with C(cryptography); no C(ssh-keygen), C(guix) or C(nix) is needed.
    SSH private keys are OpenSSH-format files, public keys C(authorized_keys) lines.
  - The Guix signing key is what C(guix archive --generate-key) creates (libgcrypt's ECDSA key on the Ed25519 curve,
    written as libgcrypt's advanced s-expression). The guest's C(etc/guix/acl) is the host's ACL plus the host's
    own signing key; the guest's key is authorized in the host's ACL (created when missing, existing entries kept,
    no duplicates, replaced atomically).
  - The Nix signing key pair is written as C(nix key generate-secret) writes it, C(NAME:BASE64) of the 64-byte Ed25519
    secret key (seed, then public key) and C(NAME:BASE64) of the 32-byte public key; with O(host_nix_conf) the public
    key is added to the host's trusted keys.
  - Existing valid keys are kept, a missing or wrong public half is derived again from its private half, and a
    corrupt key makes the module fail naming the file, unless O(regenerate=always).
  - Only public material is returned. Private keys never appear in results, diffs or logs.
  - Symbolic links inside O(secret_root) (and O(secret_root) or O(offloading_key) as links) and a O(secret_root) owned
    by another user are refused. A host Guix C(acl) or O(host_nix_conf) that is a link is edited in its target, which
    is replaced atomically; the link stays. The host Guix directory is locked while its ACL is edited.
  - With O(regenerate=always) the old guest keys are removed from the host ACL and O(host_nix_conf) before the new
    keys are written, so a killed run never leaves a replaced key trusted.
author:
  - vmhost.virt contributors (@vmhost)
requirements:
  - cryptography (an ansible-core dependency) on the managed host
  - root on the managed host, to write under C(/etc)
extends_documentation_fragment:
  - vmhost.virt.attributes
  - vmhost.virt.attributes.files
attributes:
  check_mode:
    support: full
    details: Check mode inspects every file and reports exactly which files a real run would create, replace or
      re-derive, without generating or writing anything. Public keys that do not exist yet are returned as V(null).
  diff_mode:
    support: full
    details: The diff lists the files that would be created or changed and their modes, never their content.
  safe_file_operations:
    support: full
    details: Every file is written to a temporary file in its own directory (mode set before content) and renamed
      into place. A key pair is installed as one group (public half first, old private half removed first), so a
      killed run never leaves a private key without its public half or a partly written file.
  idempotent:
    support: full
    details: With O(regenerate=never) or O(regenerate=fail) a second run reports no change. O(regenerate=always)
      replaces every key on every run by design.
options:
  name:
    description:
      - Name of the build VM; one path component (letters, digits, C(.), C(_), C(@), C(+), C(-)).
    type: str
    required: true
  secret_root:
    description:
      - Directory holding the guest's secrets, mode C(0700). Defaults to C(/etc/vmhost/build-vms/<name>).
    type: path
  offloading_key:
    description:
      - Private key the host uses to log in to the guest as O(offloading_user); the public half is
        C(<offloading_key>.pub). Defaults to C(/etc/vmhost/offload/ssh/<name>).
    type: path
  offloading_user:
    description:
      - Guest account authorized by C(etc/ssh/authorized_keys.d/<offloading_user>).
    type: str
    default: offloading
  ssh_host_key_types:
    description:
      - Host key types to generate, like C(ssh-keygen -A). V(ecdsa) is NIST P-256.
    type: list
    elements: str
    choices: [ed25519, ecdsa, rsa]
    default: [ed25519, ecdsa, rsa]
  ssh_rsa_bits:
    description:
      - Size of a new RSA host key; 3072 or more.
    type: int
    default: 3072
  ssh_port:
    description:
      - Host port forwarded to the guest's SSH port, used in the returned RV(known_hosts) lines.
    type: int
    default: 11022
  signing_keys:
    description:
      - Which store signing key pairs to generate for the guest.
    type: list
    elements: str
    choices: [guix, nix]
    default: [guix, nix]
  nix_key_name:
    description:
      - Name of a new Nix signing key. Defaults to C(<name>-1).
    type: str
  host_guix_dir:
    description:
      - The host's Guix configuration directory; its C(acl) receives the guest's key, its C(signing-key.pub)
        goes into the guest's ACL.
    type: path
    default: /etc/guix
  host_guix_acl:
    description:
      - Whether to authorize the guest's Guix key in C(<host_guix_dir>/acl).
    type: bool
    default: true
  host_nix_conf:
    description:
      - When set, the guest's Nix public key is added to this C(nix.conf), to its last C(trusted-public-keys) line,
        else to its last C(extra-trusted-public-keys) line, else in a new C(extra-trusted-public-keys) line (which
        keeps Nix's default keys trusted). A replaced guest key is removed from the line.
    type: path
  regenerate:
    description:
      - V(never) keeps every existing valid key, whatever its parameters.
      - V(fail) keeps existing keys but fails when one does not match the requested parameters (an RSA key smaller
        than O(ssh_rsa_bits), an ECDSA key on another curve, a Nix key with another name than O(nix_key_name)).
      - V(always) replaces every key on every run, also corrupt ones; previous guest keys are removed from the
        host's ACL and O(host_nix_conf).
    type: str
    choices: [never, fail, always]
    default: never
"""

EXAMPLES = r"""
- name: Generate the secrets of build VM "x86"
  vmhost.virt.build_vm_secrets:
    name: x86
  register: build_vm

- name: Pin the guest's host key for the offloading daemon
  ansible.builtin.copy:
    content: "{{ build_vm.known_hosts | join('\n') }}\n"
    dest: /etc/vmhost/offload/known_hosts
    mode: "0644"

- name: Only ed25519 host keys, no Nix key, trust Guix keys in a test directory
  vmhost.virt.build_vm_secrets:
    name: hurd
    ssh_host_key_types: [ed25519]
    signing_keys: [guix]
    host_guix_dir: /srv/guix-test/etc/guix

- name: Also trust the guest's Nix key on the host
  vmhost.virt.build_vm_secrets:
    name: x86
    host_nix_conf: /etc/nix/nix.conf
"""

RETURN = r"""
secret_root:
  description: The secret root directory.
  returned: always
  type: str
  sample: /etc/vmhost/build-vms/x86
offloading_key:
  description: Path of the host's offloading private key (the path only).
  returned: always
  type: str
  sample: /etc/vmhost/offload/ssh/x86
offloading_public_key:
  description: The offloading public key as an C(authorized_keys) line; V(null) in check mode before it exists.
  returned: always
  type: str
  sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL0e8Yq0XuNQ3dYH6mnJ1KZTa1IlTRVTqvYBzq3AO7Hz
offloading_fingerprint:
  description: SHA256 fingerprint of the offloading key, as C(ssh-keygen -l) prints it.
  returned: always
  type: str
  sample: SHA256:2Zt8Qb0kXYQ8RgO6Z3ksq1J5y8JyR6bqjV3CwSa3sNs
ssh_host_keys:
  description: Per host key type, its public key line, fingerprint, size and public key path.
  returned: always
  type: dict
  sample:
    ed25519:
      public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF4d7c5lGzk8XbW4yJXoX0vZ5nIh7mG1Qm3xYQp8w3pS
      fingerprint: SHA256:j6Vd0bQ3fC1g0dC7dkZq1E0w6z8Qb6Hc8Y9fQx1cZc4
      bits: 256
      path: /etc/vmhost/build-vms/x86/etc/ssh/ssh_host_ed25519_key.pub
known_hosts:
  description: One C(known_hosts) line per host key, for C([localhost]:<ssh_port>).
  returned: always
  type: list
  elements: str
  sample:
    - "[localhost]:11022 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF4d7c5lGzk8XbW4yJXoX0vZ5nIh7mG1Qm3xYQp8w3pS"
guix_public_key:
  description: The guest's Guix public signing key (the text of C(etc/guix/signing-key.pub)), or V(null).
  returned: always
  type: str
  sample: "(public-key \n (ecc \n  (curve Ed25519)\n  (q #09F97CC1027E176B5468DAB52C875B8B10494CC670204B4452DF6296009D1848#)\n  )\n )\n"
nix_public_key:
  description: The guest's Nix public signing key, or V(null).
  returned: always
  type: str
  sample: x86-1:+asYMzFh4H3tFgbCgA3BOvYkN0mkRq442oY9nPhTeoM=
actions:
  description: What was (or in check mode would be) done, one entry per file or directory; never content.
  returned: always
  type: list
  elements: str
  sample:
    - created /etc/vmhost/build-vms/x86/etc/ssh/ssh_host_ed25519_key (0600)
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.vmhost.virt.plugins.module_utils._build_vm_secrets import SecretsBackend
from ansible_collections.vmhost.virt.plugins.module_utils._module import run
from ansible_collections.vmhost.virt.plugins.module_utils.keys import crypto


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            secret_root=dict(type="path"),
            offloading_key=dict(type="path", no_log=False),
            offloading_user=dict(type="str", default="offloading"),
            ssh_host_key_types=dict(type="list", elements="str", choices=["ed25519", "ecdsa", "rsa"],
                                    default=["ed25519", "ecdsa", "rsa"], no_log=False),
            ssh_rsa_bits=dict(type="int", default=3072),
            ssh_port=dict(type="int", default=11022),
            signing_keys=dict(type="list", elements="str", choices=["guix", "nix"], default=["guix", "nix"],
                              no_log=False),
            nix_key_name=dict(type="str", no_log=False),
            host_guix_dir=dict(type="path", default="/etc/guix"),
            host_guix_acl=dict(type="bool", default=True),
            host_nix_conf=dict(type="path"),
            regenerate=dict(type="str", choices=["never", "fail", "always"], default="never"),
        ),
        supports_check_mode=True,
    )
    if not crypto.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"),
                         exception="".join(traceback.format_exception(None, crypto.CRYPTOGRAPHY_IMPORT_ERROR,
                                                                      crypto.CRYPTOGRAPHY_IMPORT_ERROR.__traceback__)))
    run(module, SecretsBackend(module.params, module.check_mode))


if __name__ == "__main__":
    main()
