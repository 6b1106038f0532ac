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
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Check mode inspects every file and reports exactly which files a real run would create, replace or
      re-derive, without generating or writing anything. Public keys that do not exist yet are returned as V(null).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The diff lists the files that would be created or changed and their modes, never their content.
  safe_file_operations:
    description: Writes files through a temporary file in the destination directory and an atomic rename.
    support: full
    details: Every file is written to a temporary file in its own directory (mode set before content) and renamed
      into place. A key pair is installed as one group (public half first, old private half removed first), so a
      killed run never leaves a private key without its public half or a partly written file.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
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

import fcntl
import os
import stat
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.vmhost.virt.plugins.module_utils import keys as K


class Secrets(object):
    """Plan and apply one build VM's secrets; every mutation goes through _act()."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check = module.check_mode
        self.changed = False
        self.actions = []
        self.before = []
        self.after = []
        self.planned_dirs = set()
        self.locks = []

    # -- bookkeeping -------------------------------------------------------
    def fail(self, msg):
        self.module.fail_json(msg=msg, actions=self.actions, changed=self.changed)

    def _act(self, description, before, after, func=None):
        self.changed = True
        self.actions.append(description)
        self.before.append(before)
        self.after.append(after)
        if not self.check and func is not None:
            try:
                func()
            except (OSError, IOError) as exc:
                self.fail("%s failed: %s" % (description, exc))

    def read(self, path, what):
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except (OSError, IOError) as exc:
            self.fail("cannot read %s %s: %s" % (what, path, exc))

    # -- refusals (docs/security.md, finding 4) ----------------------------
    def refuse_links(self, root, paths):
        """Fail if ``root`` or any existing component between it and one of ``paths`` is a symlink."""
        root = os.path.normpath(root)
        if os.path.islink(root):
            self.fail("secret_root %s is a symbolic link; give the real directory (links inside or "
                      "as the secret root are refused so that no key is written or chmodded elsewhere)"
                      % root)
        for path in paths:
            rel = os.path.relpath(os.path.normpath(path), root)
            current = root
            for part in rel.split(os.sep):
                current = os.path.join(current, part)
                if os.path.islink(current):
                    self.fail("%s is a symbolic link (to %s); build_vm_secrets refuses links inside "
                              "secret_root: remove it" % (current, os.readlink(current)))

    def refuse_foreign_owner(self, path, what):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if st.st_uid != os.geteuid():
            self.fail("%s %s is owned by uid %d, not by the user running the module (uid %d); "
                      "refusing to keep secrets there" % (what, path, st.st_uid, os.geteuid()))

    @staticmethod
    def resolve_host_file(path):
        """Host files (Guix ACL, nix.conf) that are symlinks are followed: the target is replaced
        atomically and the link stays a link."""
        return os.path.realpath(path) if os.path.islink(path) else path

    def lock_dir(self, path):
        """Hold an exclusive flock on directory ``path`` until the module exits (guix archive
        --authorize and other runs of this module wait)."""
        if self.check or not os.path.isdir(path):
            return
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.locks.append(fd)

    # -- directories and modes --------------------------------------------
    def ensure_dir(self, path, mode, enforce=True):
        """Create ``path`` (parents 0755) with ``mode``; with ``enforce`` also fix the mode of an existing one."""
        path = os.path.normpath(path)
        if path in self.planned_dirs:
            return
        if os.path.isdir(path):
            current = stat.S_IMODE(os.stat(path).st_mode)
            if enforce and current != mode:
                self._act("chmod %s %04o" % (path, mode), "%s: directory %04o" % (path, current),
                          "%s: directory %04o" % (path, mode), lambda: os.chmod(path, mode))
            return
        if os.path.lexists(path):
            self.fail("%s exists and is not a directory" % path)
        parent = os.path.dirname(path)
        if parent and parent != path:
            self.ensure_dir(parent, 0o755, enforce=False)
        self.planned_dirs.add(path)

        def make():
            os.mkdir(path, mode)
            os.chmod(path, mode)
        self._act("created directory %s (%04o)" % (path, mode), "%s: absent" % path,
                  "%s: directory %04o" % (path, mode), make)

    def ensure_mode(self, path, mode):
        if not os.path.exists(path):
            return
        current = stat.S_IMODE(os.stat(path).st_mode)
        if current != mode:
            self._act("chmod %s %04o" % (path, mode), "%s: mode %04o" % (path, current),
                      "%s: mode %04o" % (path, mode), lambda: os.chmod(path, mode))

    def clean_temps(self, directory):
        for tmp in K.stale_temp_files(directory):
            self._act("removed stale temporary file %s" % tmp, "%s: present" % tmp, "%s: absent" % tmp,
                      lambda tmp=tmp: os.unlink(tmp))

    def install(self, files, replaced_private=(), verb=None):
        """Write a group of (path, bytes, mode) as one unit (see keys.write_group)."""
        for path, _content, mode in files:
            existed = os.path.exists(path)
            how = verb or ("replaced" if existed else "created")
            self.actions.append("%s %s (%04o)" % (how, path, mode))
            self.before.append("%s: %s" % (path, "present" if existed else "absent"))
            self.after.append("%s: %s, mode %04o" % (path, how, mode))
        self.changed = True
        if not self.check:
            try:
                K.write_group(files, unlink_first=[p for p in replaced_private if os.path.exists(p)])
            except (OSError, IOError) as exc:
                self.fail("writing %s failed: %s" % (", ".join(p for p, _c, _m in files), exc))

    # -- key pairs ---------------------------------------------------------
    def ssh_pair(self, kind, priv, pub, extra_public=()):
        """Ensure an SSH key pair; return (public line, bits), (None, None) in check mode if new."""
        p = self.params
        regenerate = p["regenerate"]
        data = self.read(priv, "SSH private key")
        key = None
        if data is not None and regenerate != "always":
            try:
                key = K.load_ssh_private(data, what=priv)
            except K.KeysError as exc:
                self.fail("%s; fix or remove the file, or use regenerate=always to replace it" % exc)
            found, size = K.ssh_key_kind(key)
            if found != kind:
                self.fail("%s holds a %s key, not %s; remove it or use regenerate=always" % (priv, found, kind))
            if regenerate == "fail":
                if kind == "rsa" and size < p["ssh_rsa_bits"]:
                    self.fail("%s is a %d-bit RSA key, smaller than ssh_rsa_bits=%d (regenerate=fail)"
                              % (priv, size, p["ssh_rsa_bits"]))
                if kind == "ecdsa" and size != 256:
                    self.fail("%s is an ECDSA key on a %d-bit curve, not nistp256 (regenerate=fail)" % (priv, size))
        if key is None:
            if self.check:
                self.install([(path, b"", 0o644) for path in [pub] + list(extra_public)] + [(priv, b"", 0o600)],
                             replaced_private=[priv])
                return None, None
            private_bytes, public_line = K.generate_ssh_key(kind, p["ssh_rsa_bits"])
            line = (public_line + "\n").encode("ascii")
            self.install([(path, line, 0o644) for path in [pub] + list(extra_public)] + [(priv, private_bytes, 0o600)],
                         replaced_private=[priv] if data is not None else [])
            return public_line, p["ssh_rsa_bits"] if kind == "rsa" else 256
        public_line = K.ssh_public_line(key)
        line = (public_line + "\n").encode("ascii")
        for path in [pub] + list(extra_public):
            current = self.read(path, "SSH public key")
            if current is None or not K.same_ssh_public(current.decode("ascii", "replace"), public_line):
                self.install([(path, line, 0o644)], verb="re-derived")
        self.ensure_mode(priv, 0o600)
        for path in [pub] + list(extra_public):
            self.ensure_mode(path, 0o644)
        return public_line, K.ssh_key_kind(key)[1]

    def guix_pair(self, sec, pub):
        """Ensure the guest's Guix key pair; return (public_bytes or None, replaced_q or None)."""
        regenerate = self.params["regenerate"]
        data = self.read(sec, "Guix secret key")
        old_q = None
        if data is not None:
            try:
                d, q = K.parse_guix_secret(data, what=sec)
            except K.KeysError as exc:
                if regenerate != "always":
                    self.fail("%s; fix or remove the file, or use regenerate=always to replace it" % exc)
                d = q = None
            if regenerate != "always" and d is not None:
                _secret, public = K.guix_key_from_scalar(d)
                current = self.read(pub, "Guix public key")
                try:
                    current_q = K.parse_guix_public(current) if current is not None else None
                except K.KeysError:
                    current_q = None
                if current_q != q:
                    self.install([(pub, public, 0o644)], verb="re-derived")
                else:
                    public = current
                self.ensure_mode(sec, 0o600)
                self.ensure_mode(pub, 0o644)
                return public, None
            old_q = q
        if self.check:
            self.install([(pub, b"", 0o644), (sec, b"", 0o600)], replaced_private=[sec])
            return None, old_q
        secret, public = K.generate_guix_key()
        self.install([(pub, public, 0o644), (sec, secret, 0o600)], replaced_private=[sec] if data is not None else [])
        return public, old_q

    def nix_pair(self, sec, pub):
        """Ensure the guest's Nix key pair; return (public_line or None, replaced public line or None)."""
        p = self.params
        regenerate = p["regenerate"]
        data = self.read(sec, "Nix secret key")
        old_public = None
        if data is not None:
            try:
                name, _seed, public = K.parse_nix_secret(data, what=sec)
            except K.KeysError as exc:
                if regenerate != "always":
                    self.fail("%s; fix or remove the file, or use regenerate=always to replace it" % exc)
                name = public = None
            if regenerate != "always" and public is not None:
                if regenerate == "fail" and name != p["nix_key_name"]:
                    self.fail("%s is named %r, not nix_key_name=%r (regenerate=fail)" % (sec, name, p["nix_key_name"]))
                current = self.read(pub, "Nix public key")
                if current is None or current.decode("ascii", "replace").strip() != public:
                    self.install([(pub, public.encode("ascii"), 0o644)], verb="re-derived")
                self.ensure_mode(sec, 0o600)
                self.ensure_mode(pub, 0o644)
                return public, None
            old_public = public
        if self.check:
            self.install([(pub, b"", 0o644), (sec, b"", 0o600)], replaced_private=[sec])
            return None, old_public
        secret, public = K.generate_nix_key(p["nix_key_name"])
        self.install([(pub, public.encode("ascii"), 0o644), (sec, secret.encode("ascii"), 0o600)],
                     replaced_private=[sec] if data is not None else [])
        return public, old_public

    # -- host side ---------------------------------------------------------
    def host_acl_keys(self, path):
        data = self.read(path, "Guix ACL")
        if data is None:
            return None
        try:
            return K.parse_acl(data, what=path)
        except K.KeysError as exc:
            self.fail("%s; the host's Guix ACL must be (acl (entry (public-key ...) (tag (guix import))) ...)" % exc)

    def host_public_key(self, path):
        data = self.read(path, "Guix public key")
        if data is None:
            return None
        try:
            tree = K.sexp_parse(data)
        except K.KeysError as exc:
            self.fail("%s is not a Guix public key: %s" % (path, exc))
        if not tree or tree[0] != b"public-key":
            self.fail("%s is not a Guix public key: it does not start with (public-key" % path)
        return tree

    def deauthorize_old_guix(self, sec, host_keys, acl_path):
        data = self.read(sec, "Guix secret key")
        try:
            _d, old_q = K.parse_guix_secret(data, what=sec) if data is not None else (None, None)
        except K.KeysError:
            return host_keys
        if old_q is None:
            return host_keys
        kept = K.acl_merge(host_keys, remove=[K.guix_public_tree(old_q)])
        if kept != host_keys:
            self.write_text_file(acl_path, K.acl_dump(kept), 0o644, "de-authorized the old guest key in")
        return kept

    def deauthorize_old_nix(self, sec, text):
        data = self.read(sec, "Nix secret key")
        try:
            _name, _seed, old_public = K.parse_nix_secret(data, what=sec) if data is not None else (None, None, None)
        except K.KeysError:
            return text
        if not old_public:
            return text
        new = K.nix_conf_trust(text, None, remove=[old_public])
        if new != text:
            self.write_text_file(self.params["host_nix_conf"], new.encode("utf-8"), 0o644,
                                 "de-authorized the old guest key in")
        return new

    def write_text_file(self, path, content, default_mode, description):
        mode = default_mode
        if os.path.exists(path):
            mode = stat.S_IMODE(os.stat(path).st_mode)
        self.install([(path, content, mode)], verb=description)

    # -- main --------------------------------------------------------------
    def run(self):
        p = self.params
        try:
            K.check_name(p["name"])
        except K.KeysError as exc:
            self.fail(str(exc))
        try:
            K.check_name(p["offloading_user"])
        except K.KeysError as exc:
            self.fail("offloading_user: %s" % exc)
        if p["ssh_rsa_bits"] < K.MIN_RSA_BITS:
            self.fail("ssh_rsa_bits=%d is too small: RSA keys need %d bits or more"
                      % (p["ssh_rsa_bits"], K.MIN_RSA_BITS))
        if not 0 < p["ssh_port"] < 65536:
            self.fail("ssh_port=%d is not a TCP port" % p["ssh_port"])
        p["secret_root"] = p["secret_root"] or os.path.join("/etc/vmhost/build-vms", p["name"])
        p["offloading_key"] = p["offloading_key"] or os.path.join("/etc/vmhost/offload/ssh", p["name"])
        p["nix_key_name"] = p["nix_key_name"] or "%s-1" % p["name"]
        if ":" in p["nix_key_name"] or not p["nix_key_name"].strip() or any(c.isspace() for c in p["nix_key_name"]):
            self.fail("nix_key_name %r must be non-empty, without ':' or spaces" % p["nix_key_name"])
        types = []
        for kind in p["ssh_host_key_types"]:
            if kind not in types:
                types.append(kind)
        root = p["secret_root"]
        layout = K.secret_layout(root, types, p["offloading_user"])
        host_acl_path = self.resolve_host_file(os.path.join(p["host_guix_dir"], "acl"))
        host_pub_path = os.path.join(p["host_guix_dir"], "signing-key.pub")
        if p["host_nix_conf"]:
            p["host_nix_conf"] = self.resolve_host_file(p["host_nix_conf"])

        # Refuse links and foreign owners before reading or writing anything.
        self.refuse_foreign_owner(root, "secret_root")
        inside = [layout[k] for k in ("ssh_dir", "authorized_dir", "authorized", "guix_dir", "guix_sec",
                                      "guix_pub", "guix_acl", "nix_dir", "nix_sec", "nix_pub")]
        for priv, pub in layout["host_keys"].values():
            inside += [priv, pub]
        self.refuse_links(root, inside)
        for path in (p["offloading_key"], p["offloading_key"] + ".pub"):
            if os.path.islink(path):
                self.fail("offloading_key %s is a symbolic link; refusing to write a key through it" % path)
        if "guix" in p["signing_keys"] and p["host_guix_acl"]:
            self.lock_dir(os.path.dirname(host_acl_path))

        # Validate host inputs before changing anything.
        host_keys = None
        host_pub = None
        if "guix" in p["signing_keys"]:
            host_keys = self.host_acl_keys(host_acl_path)
            host_pub = self.host_public_key(host_pub_path)
        nix_conf_text = None
        if "nix" in p["signing_keys"] and p["host_nix_conf"]:
            raw = self.read(p["host_nix_conf"], "nix.conf")
            try:
                nix_conf_text = (raw or b"").decode("utf-8")
            except UnicodeDecodeError:
                self.fail("%s is not UTF-8 text" % p["host_nix_conf"])

        # Secret root and its directories.
        self.ensure_dir(root, 0o700)
        for sub in ("etc", "etc/ssh"):
            self.ensure_dir(os.path.join(root, sub), 0o755, enforce=False)
        self.ensure_dir(layout["authorized_dir"], 0o555)
        self.ensure_dir(os.path.dirname(p["offloading_key"]), 0o700, enforce=False)
        for directory in (layout["ssh_dir"], layout["authorized_dir"], os.path.dirname(p["offloading_key"])):
            self.clean_temps(directory)

        result = {"secret_root": root, "offloading_key": p["offloading_key"], "ssh_host_keys": {},
                  "known_hosts": [], "guix_public_key": None, "nix_public_key": None}

        for kind in types:
            priv, pub = layout["host_keys"][kind]
            line, bits = self.ssh_pair(kind, priv, pub)
            if line is not None:
                result["ssh_host_keys"][kind] = {"public_key": line, "fingerprint": K.ssh_fingerprint(line),
                                                 "bits": bits, "path": pub}
                result["known_hosts"].append(K.known_hosts_line("localhost", p["ssh_port"], line))

        off, _bits = self.ssh_pair("ed25519", p["offloading_key"], p["offloading_key"] + ".pub",
                                   extra_public=[layout["authorized"]])
        result["offloading_public_key"] = off
        result["offloading_fingerprint"] = K.ssh_fingerprint(off) if off else None

        if "guix" in p["signing_keys"]:
            self.ensure_dir(layout["guix_dir"], 0o755, enforce=False)
            self.clean_temps(layout["guix_dir"])
            if p["regenerate"] == "always" and p["host_guix_acl"] and host_keys:
                # Take the old guest key out of the host ACL before replacing it: a run killed
                # after the new key is written must not leave the old one trusted.
                host_keys = self.deauthorize_old_guix(layout["guix_sec"], host_keys, host_acl_path)
            public, old_q = self.guix_pair(layout["guix_sec"], layout["guix_pub"])
            result["guix_public_key"] = public.decode("ascii", "replace") if public is not None else None
            guest_tree = K.guix_public_tree(K.parse_guix_public(public)) if public is not None else None
            remove = [K.guix_public_tree(old_q)] if old_q is not None else []
            if guest_tree is not None:
                remove.append(guest_tree)
            # The guest trusts what the host trusts, plus the host's own key.
            guest_acl = K.acl_dump(K.acl_merge(host_keys or [], add=[host_pub] if host_pub else [], remove=remove))
            current = self.read(layout["guix_acl"], "guest Guix ACL")
            if current != guest_acl:
                self.install([(layout["guix_acl"], guest_acl, 0o644)], verb="updated" if current else "created")
            self.ensure_mode(layout["guix_acl"], 0o644)
            if p["host_guix_acl"]:
                existing = host_keys or []
                if host_keys is None:
                    self.ensure_dir(p["host_guix_dir"], 0o755, enforce=False)
                self.clean_temps(p["host_guix_dir"])
                if guest_tree is None:
                    # Check mode with a key still to be created: the ACL changes.
                    self.install([(host_acl_path, b"", 0o644)], verb="updated" if host_keys is not None else "created")
                else:
                    wanted = K.acl_merge(existing, add=[guest_tree],
                                         remove=[K.guix_public_tree(old_q)] if old_q is not None else [])
                    if host_keys is None or wanted != existing:
                        self.write_text_file(host_acl_path, K.acl_dump(wanted), 0o644,
                                             "updated" if host_keys is not None else "created")

        if "nix" in p["signing_keys"]:
            self.ensure_dir(layout["nix_dir"], 0o755, enforce=False)
            self.clean_temps(layout["nix_dir"])
            if p["regenerate"] == "always" and p["host_nix_conf"] and nix_conf_text is not None:
                nix_conf_text = self.deauthorize_old_nix(layout["nix_sec"], nix_conf_text)
            public, old_public = self.nix_pair(layout["nix_sec"], layout["nix_pub"])
            result["nix_public_key"] = public
            if p["host_nix_conf"]:
                self.ensure_dir(os.path.dirname(p["host_nix_conf"]) or ".", 0o755, enforce=False)
                self.clean_temps(os.path.dirname(p["host_nix_conf"]) or ".")
                if public is None:
                    self.install([(p["host_nix_conf"], b"", 0o644)], verb="updated")
                else:
                    new = K.nix_conf_trust(nix_conf_text, public, remove=[old_public] if old_public else [])
                    if new != nix_conf_text or not os.path.exists(p["host_nix_conf"]):
                        self.write_text_file(p["host_nix_conf"], new.encode("utf-8"), 0o644, "updated")

        result["changed"] = self.changed
        result["actions"] = self.actions
        if self.module._diff:
            result["diff"] = {"before": "\n".join(self.before) + ("\n" if self.before else ""),
                              "after": "\n".join(self.after) + ("\n" if self.after else "")}
        return result


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
    if not K.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"),
                         exception="".join(traceback.format_exception(None, K.CRYPTOGRAPHY_IMPORT_ERROR,
                                                                      K.CRYPTOGRAPHY_IMPORT_ERROR.__traceback__)))
    module.exit_json(**Secrets(module).run())


if __name__ == "__main__":
    main()
