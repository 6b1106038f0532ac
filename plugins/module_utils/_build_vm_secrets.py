# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backend of the build_vm_secrets module: one build VM's keys, planned as Changes.

:class:`SecretsBackend` reads the secret root, the offloading key and the host's Guix ACL
and ``nix.conf``, refuses what it must not touch (docs/security.md, finding 4) and yields
one :class:`~._module.Change` per directory, mode or file group; the shared base applies
them unless in check mode.  Keys come from the ``keys`` package.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import os
import stat

from ansible_collections.vmhost.virt.plugins.module_utils import _io
from ansible_collections.vmhost.virt.plugins.module_utils._module import Backend, Change, ModuleFailure
from ansible_collections.vmhost.virt.plugins.module_utils.keys import guix, install, nix, sexp, ssh, trust
from ansible_collections.vmhost.virt.plugins.module_utils.keys.errors import KeysError
from ansible_collections.vmhost.virt.plugins.module_utils.keys.layout import check_name, secret_layout


class SecretsBackend(Backend):
    """Plan one build VM's secrets: every mutation is a Change the base applies."""

    def __init__(self, params, check_mode=False, tools=None):
        Backend.__init__(self, dict(params), check_mode, tools)
        self.planned_dirs = set()
        self.locks = []

    def read(self, path, what):
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except (OSError, IOError) as exc:
            raise ModuleFailure("cannot read %s %s: %s" % (what, path, exc))

    # -- refusals (docs/security.md, finding 4) ----------------------------
    def refuse_links(self, root, paths):
        """Fail if ``root`` or any existing component between it and one of ``paths`` is a symlink."""
        root = os.path.normpath(root)
        if os.path.islink(root):
            raise ModuleFailure("secret_root %s is a symbolic link; give the real directory (links inside or "
                                "as the secret root are refused so that no key is written or chmodded elsewhere)"
                                % root)
        for path in paths:
            rel = os.path.relpath(os.path.normpath(path), root)
            current = root
            for part in rel.split(os.sep):
                current = os.path.join(current, part)
                if os.path.islink(current):
                    raise ModuleFailure("%s is a symbolic link (to %s); build_vm_secrets refuses links inside "
                                        "secret_root: remove it" % (current, os.readlink(current)))

    def refuse_foreign_owner(self, path, what):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if st.st_uid != os.geteuid():
            raise ModuleFailure("%s %s is owned by uid %d, not by the user running the module (uid %d); "
                                "refusing to keep secrets there" % (what, path, st.st_uid, os.geteuid()))

    @staticmethod
    def resolve_host_file(path):
        """Host files (Guix ACL, nix.conf) that are symlinks are followed: the target is replaced
        atomically and the link stays a link."""
        return os.path.realpath(path) if os.path.islink(path) else path

    def lock_dir(self, path):
        """Hold an exclusive flock on directory ``path`` until the run ends (guix archive
        --authorize and other runs of this module wait)."""
        if self.check_mode or not os.path.isdir(path):
            return
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.locks.append(fd)

    def close(self):
        while self.locks:
            os.close(self.locks.pop())  # closing the descriptor releases the flock

    # -- directories and modes --------------------------------------------
    def ensure_dir(self, path, mode, enforce=True):
        """Create ``path`` (parents 0755) with ``mode``; with ``enforce`` also fix the mode of an existing one."""
        path = os.path.normpath(path)
        if path in self.planned_dirs:
            return
        if os.path.isdir(path):
            current = stat.S_IMODE(os.stat(path).st_mode)
            if enforce and current != mode:
                yield Change("chmod %s %04o" % (path, mode), "%s: directory %04o" % (path, current),
                             "%s: directory %04o" % (path, mode), lambda: os.chmod(path, mode))
            return
        if os.path.lexists(path):
            raise ModuleFailure("%s exists and is not a directory" % path)
        parent = os.path.dirname(path)
        if parent and parent != path:
            yield from self.ensure_dir(parent, 0o755, enforce=False)
        self.planned_dirs.add(path)

        def make():
            os.mkdir(path, mode)
            os.chmod(path, mode)
        yield Change("created directory %s (%04o)" % (path, mode), "%s: absent" % path,
                     "%s: directory %04o" % (path, mode), make)

    def ensure_mode(self, path, mode):
        if not os.path.exists(path):
            return
        current = stat.S_IMODE(os.stat(path).st_mode)
        if current != mode:
            yield Change("chmod %s %04o" % (path, mode), "%s: mode %04o" % (path, current),
                         "%s: mode %04o" % (path, mode), lambda: os.chmod(path, mode))

    def clean_temps(self, directory):
        for tmp in install.stale_temp_files(directory):
            yield Change("removed stale temporary file %s" % tmp, "%s: present" % tmp, "%s: absent" % tmp,
                         lambda tmp=tmp: os.unlink(tmp))

    def install_files(self, files, replaced_private=(), verb=None):
        """Write a group of (path, bytes, mode) as one unit (see keys.install.write_group):
        one Change per file, the first one writes them all."""
        def write():
            try:
                install.write_group(files, unlink_first=[p for p in replaced_private if os.path.exists(p)])
            except (OSError, IOError, _io.IoError) as exc:
                raise ModuleFailure("writing %s failed: %s" % (", ".join(p for p, _c, _m in files), exc))
        changes = []
        for path, _content, mode in files:
            existed = os.path.exists(path)
            how = verb or ("replaced" if existed else "created")
            changes.append(Change("%s %s (%04o)" % (how, path, mode),
                                  "%s: %s" % (path, "present" if existed else "absent"),
                                  "%s: %s, mode %04o" % (path, how, mode)))
        changes[0].apply = write
        yield from changes

    # -- key pairs ---------------------------------------------------------
    def ssh_pair(self, kind, priv, pub, extra_public=()):
        """Ensure an SSH key pair; return (public line, bits), (None, None) in check mode if new."""
        p = self.params
        regenerate = p["regenerate"]
        data = self.read(priv, "SSH private key")
        key = None
        if data is not None and regenerate != "always":
            try:
                key = ssh.load_ssh_private(data, what=priv)
            except KeysError as exc:
                raise ModuleFailure("%s; fix or remove the file, or use regenerate=always to replace it" % exc)
            found, size = ssh.ssh_key_kind(key)
            if found != kind:
                raise ModuleFailure("%s holds a %s key, not %s; remove it or use regenerate=always" % (priv, found, kind))
            if regenerate == "fail":
                if kind == "rsa" and size < p["ssh_rsa_bits"]:
                    raise ModuleFailure("%s is a %d-bit RSA key, smaller than ssh_rsa_bits=%d (regenerate=fail)"
                                        % (priv, size, p["ssh_rsa_bits"]))
                if kind == "ecdsa" and size != 256:
                    raise ModuleFailure("%s is an ECDSA key on a %d-bit curve, not nistp256 (regenerate=fail)" % (priv, size))
        if key is None:
            if self.check_mode:
                yield from self.install_files([(path, b"", 0o644) for path in [pub] + list(extra_public)] + [(priv, b"", 0o600)],
                                              replaced_private=[priv])
                return None, None
            private_bytes, public_line = ssh.generate_ssh_key(kind, p["ssh_rsa_bits"])
            line = (public_line + "\n").encode("ascii")
            yield from self.install_files([(path, line, 0o644) for path in [pub] + list(extra_public)] + [(priv, private_bytes, 0o600)],
                                          replaced_private=[priv] if data is not None else [])
            return public_line, p["ssh_rsa_bits"] if kind == "rsa" else 256
        public_line = ssh.ssh_public_line(key)
        line = (public_line + "\n").encode("ascii")
        for path in [pub] + list(extra_public):
            current = self.read(path, "SSH public key")
            if current is None or not ssh.same_ssh_public(current.decode("ascii", "replace"), public_line):
                yield from self.install_files([(path, line, 0o644)], verb="re-derived")
        yield from self.ensure_mode(priv, 0o600)
        for path in [pub] + list(extra_public):
            yield from self.ensure_mode(path, 0o644)
        return public_line, ssh.ssh_key_kind(key)[1]

    def guix_pair(self, sec, pub):
        """Ensure the guest's Guix key pair; return (public_bytes or None, replaced_q or None)."""
        regenerate = self.params["regenerate"]
        data = self.read(sec, "Guix secret key")
        old_q = None
        if data is not None:
            try:
                d, q = guix.parse_guix_secret(data, what=sec)
            except KeysError as exc:
                if regenerate != "always":
                    raise ModuleFailure("%s; fix or remove the file, or use regenerate=always to replace it" % exc)
                d = q = None
            if regenerate != "always" and d is not None:
                _secret, public = guix.guix_key_from_scalar(d)
                current = self.read(pub, "Guix public key")
                try:
                    current_q = guix.parse_guix_public(current) if current is not None else None
                except KeysError:
                    current_q = None
                if current_q != q:
                    yield from self.install_files([(pub, public, 0o644)], verb="re-derived")
                else:
                    public = current
                yield from self.keep_modes(sec, pub)
                return public, None
            old_q = q
        public = yield from self.new_pair(sec, pub, guix.generate_guix_key, data is not None)
        return public, old_q

    def nix_pair(self, sec, pub):
        """Ensure the guest's Nix key pair; return (public_line or None, replaced public line or None)."""
        p = self.params
        regenerate = p["regenerate"]
        data = self.read(sec, "Nix secret key")
        old_public = None
        if data is not None:
            try:
                name, _seed, public = nix.parse_nix_secret(data, what=sec)
            except KeysError as exc:
                if regenerate != "always":
                    raise ModuleFailure("%s; fix or remove the file, or use regenerate=always to replace it" % exc)
                name = public = None
            if regenerate != "always" and public is not None:
                if regenerate == "fail" and name != p["nix_key_name"]:
                    raise ModuleFailure("%s is named %r, not nix_key_name=%r (regenerate=fail)" % (sec, name, p["nix_key_name"]))
                current = self.read(pub, "Nix public key")
                if current is None or current.decode("ascii", "replace").strip() != public:
                    yield from self.install_files([(pub, public.encode("ascii"), 0o644)], verb="re-derived")
                yield from self.keep_modes(sec, pub)
                return public, None
            old_public = public

        def generate():
            return tuple(line.encode("ascii") for line in nix.generate_nix_key(p["nix_key_name"]))
        public = yield from self.new_pair(sec, pub, generate, data is not None)
        return (public.decode("ascii") if public is not None else None), old_public

    def keep_modes(self, private, public):
        """An existing pair keeps its content; only the modes are enforced."""
        yield from self.ensure_mode(private, 0o600)
        yield from self.ensure_mode(public, 0o644)

    def new_pair(self, sec, pub, generate, replacing):
        """Install the ``(secret, public)`` bytes ``generate()`` makes, public half first; return the
        public bytes, or None in check mode (nothing is generated: the plan says what would be written)."""
        if self.check_mode:
            yield from self.install_files([(pub, b"", 0o644), (sec, b"", 0o600)], replaced_private=[sec])
            return None
        secret, public = generate()
        yield from self.install_files([(pub, public, 0o644), (sec, secret, 0o600)],
                                      replaced_private=[sec] if replacing else [])
        return public

    # -- host side ---------------------------------------------------------
    def host_acl_keys(self, path):
        data = self.read(path, "Guix ACL")
        if data is None:
            return None
        try:
            return trust.parse_acl(data, what=path)
        except KeysError as exc:
            raise ModuleFailure("%s; the host's Guix ACL must be (acl (entry (public-key ...) (tag (guix import))) ...)" % exc)

    def host_public_key(self, path):
        data = self.read(path, "Guix public key")
        if data is None:
            return None
        try:
            tree = sexp.sexp_parse(data)
        except KeysError as exc:
            raise ModuleFailure("%s is not a Guix public key: %s" % (path, exc))
        if not tree or tree[0] != b"public-key":
            raise ModuleFailure("%s is not a Guix public key: it does not start with (public-key" % path)
        return tree

    def deauthorize_old_guix(self, sec, host_keys, acl_path):
        data = self.read(sec, "Guix secret key")
        try:
            _d, old_q = guix.parse_guix_secret(data, what=sec) if data is not None else (None, None)
        except KeysError:
            return host_keys
        if old_q is None:
            return host_keys
        kept = trust.acl_merge(host_keys, remove=[guix.guix_public_tree(old_q)])
        if kept != host_keys:
            yield from self.write_text_file(acl_path, trust.acl_dump(kept), 0o644, "de-authorized the old guest key in")
        return kept

    def deauthorize_old_nix(self, sec, text):
        data = self.read(sec, "Nix secret key")
        try:
            _name, _seed, old_public = nix.parse_nix_secret(data, what=sec) if data is not None else (None, None, None)
        except KeysError:
            return text
        if not old_public:
            return text
        new = trust.nix_conf_trust(text, None, remove=[old_public])
        if new != text:
            yield from self.write_text_file(self.params["host_nix_conf"], new.encode("utf-8"), 0o644,
                                            "de-authorized the old guest key in")
        return new

    def write_text_file(self, path, content, default_mode, description):
        mode = default_mode
        if os.path.exists(path):
            mode = stat.S_IMODE(os.stat(path).st_mode)
        yield from self.install_files([(path, content, mode)], verb=description)

    # -- the plan ----------------------------------------------------------
    def plan(self):
        p = self.params
        try:
            check_name(p["name"])
        except KeysError as exc:
            raise ModuleFailure(str(exc))
        try:
            check_name(p["offloading_user"])
        except KeysError as exc:
            raise ModuleFailure("offloading_user: %s" % exc)
        if p["ssh_rsa_bits"] < ssh.MIN_RSA_BITS:
            raise ModuleFailure("ssh_rsa_bits=%d is too small: RSA keys need %d bits or more"
                                % (p["ssh_rsa_bits"], ssh.MIN_RSA_BITS))
        if not 0 < p["ssh_port"] < 65536:
            raise ModuleFailure("ssh_port=%d is not a TCP port" % p["ssh_port"])
        p["secret_root"] = p["secret_root"] or os.path.join("/etc/vmhost/build-vms", p["name"])
        p["offloading_key"] = p["offloading_key"] or os.path.join("/etc/vmhost/offload/ssh", p["name"])
        p["nix_key_name"] = p["nix_key_name"] or "%s-1" % p["name"]
        if ":" in p["nix_key_name"] or not p["nix_key_name"].strip() or any(c.isspace() for c in p["nix_key_name"]):
            raise ModuleFailure("nix_key_name %r must be non-empty, without ':' or spaces" % p["nix_key_name"])
        types = []
        for kind in p["ssh_host_key_types"]:
            if kind not in types:
                types.append(kind)
        root = p["secret_root"]
        layout = secret_layout(root, types, p["offloading_user"])
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
                raise ModuleFailure("offloading_key %s is a symbolic link; refusing to write a key through it" % path)
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
                raise ModuleFailure("%s is not UTF-8 text" % p["host_nix_conf"])

        # Secret root and its directories.
        yield from self.ensure_dir(root, 0o700)
        for sub in ("etc", "etc/ssh"):
            yield from self.ensure_dir(os.path.join(root, sub), 0o755, enforce=False)
        yield from self.ensure_dir(layout["authorized_dir"], 0o555)
        yield from self.ensure_dir(os.path.dirname(p["offloading_key"]), 0o700, enforce=False)
        for directory in (layout["ssh_dir"], layout["authorized_dir"], os.path.dirname(p["offloading_key"])):
            yield from self.clean_temps(directory)

        result = self.result
        result.update({"secret_root": root, "offloading_key": p["offloading_key"], "ssh_host_keys": {},
                       "known_hosts": [], "guix_public_key": None, "nix_public_key": None})

        for kind in types:
            priv, pub = layout["host_keys"][kind]
            line, bits = yield from self.ssh_pair(kind, priv, pub)
            if line is not None:
                result["ssh_host_keys"][kind] = {"public_key": line, "fingerprint": ssh.ssh_fingerprint(line),
                                                 "bits": bits, "path": pub}
                result["known_hosts"].append(ssh.known_hosts_line("localhost", p["ssh_port"], line))

        off, _bits = yield from self.ssh_pair("ed25519", p["offloading_key"], p["offloading_key"] + ".pub",
                                              extra_public=[layout["authorized"]])
        result["offloading_public_key"] = off
        result["offloading_fingerprint"] = ssh.ssh_fingerprint(off) if off else None

        if "guix" in p["signing_keys"]:
            yield from self.ensure_dir(layout["guix_dir"], 0o755, enforce=False)
            yield from self.clean_temps(layout["guix_dir"])
            if p["regenerate"] == "always" and p["host_guix_acl"] and host_keys:
                # Take the old guest key out of the host ACL before replacing it: a run killed
                # after the new key is written must not leave the old one trusted.
                host_keys = yield from self.deauthorize_old_guix(layout["guix_sec"], host_keys, host_acl_path)
            public, old_q = yield from self.guix_pair(layout["guix_sec"], layout["guix_pub"])
            result["guix_public_key"] = public.decode("ascii", "replace") if public is not None else None
            guest_tree = guix.guix_public_tree(guix.parse_guix_public(public)) if public is not None else None
            remove = [guix.guix_public_tree(old_q)] if old_q is not None else []
            if guest_tree is not None:
                remove.append(guest_tree)
            # The guest trusts what the host trusts, plus the host's own key.
            guest_acl = trust.acl_dump(trust.acl_merge(host_keys or [], add=[host_pub] if host_pub else [], remove=remove))
            current = self.read(layout["guix_acl"], "guest Guix ACL")
            if current != guest_acl:
                yield from self.install_files([(layout["guix_acl"], guest_acl, 0o644)], verb="updated" if current else "created")
            yield from self.ensure_mode(layout["guix_acl"], 0o644)
            if p["host_guix_acl"]:
                existing = host_keys or []
                if host_keys is None:
                    yield from self.ensure_dir(p["host_guix_dir"], 0o755, enforce=False)
                yield from self.clean_temps(p["host_guix_dir"])
                if guest_tree is None:
                    # Check mode with a key still to be created: the ACL changes.
                    yield from self.install_files([(host_acl_path, b"", 0o644)], verb="updated" if host_keys is not None else "created")
                else:
                    wanted = trust.acl_merge(existing, add=[guest_tree],
                                             remove=[guix.guix_public_tree(old_q)] if old_q is not None else [])
                    if host_keys is None or wanted != existing:
                        yield from self.write_text_file(host_acl_path, trust.acl_dump(wanted), 0o644,
                                                        "updated" if host_keys is not None else "created")

        if "nix" in p["signing_keys"]:
            yield from self.ensure_dir(layout["nix_dir"], 0o755, enforce=False)
            yield from self.clean_temps(layout["nix_dir"])
            if p["regenerate"] == "always" and p["host_nix_conf"] and nix_conf_text is not None:
                nix_conf_text = yield from self.deauthorize_old_nix(layout["nix_sec"], nix_conf_text)
            public, old_public = yield from self.nix_pair(layout["nix_sec"], layout["nix_pub"])
            result["nix_public_key"] = public
            if p["host_nix_conf"]:
                yield from self.ensure_dir(os.path.dirname(p["host_nix_conf"]) or ".", 0o755, enforce=False)
                yield from self.clean_temps(os.path.dirname(p["host_nix_conf"]) or ".")
                if public is None:
                    yield from self.install_files([(p["host_nix_conf"], b"", 0o644)], verb="updated")
                else:
                    new = trust.nix_conf_trust(nix_conf_text, public, remove=[old_public] if old_public else [])
                    if new != nix_conf_text or not os.path.exists(p["host_nix_conf"]):
                        yield from self.write_text_file(p["host_nix_conf"], new.encode("utf-8"), 0o644, "updated")
