# -*- coding: utf-8 -*-
# Copyright (c) vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The planned image tree: every input validated before anything is written.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import stat

from ansible_collections.vmhost.virt.plugins.module_utils._checksum import file_sha256, tool_stamp
from ansible_collections.vmhost.virt.plugins.module_utils.iso.cidata import cidata_content
from ansible_collections.vmhost.virt.plugins.module_utils.iso.names import (
    IsoError, MAX_ISO_DEPTH, MAX_JOLIET_LONG, name_key, name_problem, normalize_volume_id,
    parse_mode, parse_volume_uuid, resolve_epoch, split_dest, timestring,
)

GRUB_CONFIG = "/boot/grub/grub.cfg"
BIOS_IMAGE = "/boot/grub/eltorito.img"
EFI_IMAGE = "/boot/grub/efi.img"
BOOT_CATALOG = "/boot/grub/boot.cat"
# Bump when the image the same plan gives changes (a new xorriso argument, a new boot layout).
DIGEST_VERSION = 1


class Entry(object):
    """One node of the planned image tree."""

    __slots__ = ("path", "kind", "src", "mode", "target", "data", "origin", "size", "stamp", "ident")

    def __init__(self, path, kind, origin, src=None, mode=None, target=None, data=None, size=0, stamp=None,
                 ident=None):
        self.path = path          # tuple of components
        self.kind = kind          # 'dir', 'file', 'link'
        self.origin = origin      # human description of the input that produced it
        self.src = src            # file on disk (files), or None
        self.mode = mode          # permission bits
        self.target = target      # symlink target
        self.data = data          # bytes of generated files
        self.size = size
        self.stamp = stamp        # (size, mtime_ns, ctime_ns) of a file on disk: what its bytes are taken to be
        self.ident = ident        # (st_dev, st_ino) of that file as the walk saw it

    @property
    def iso_path(self):
        return "/" + "/".join(self.path)


class Plan(object):
    """Everything needed to write the image, validated."""

    def __init__(self):
        self.entries = {}         # key tuple -> Entry
        self.grafts = []          # (src, dest) for xorriso -map, in order
        self.generated = []       # Entry with data, written to a staging dir
        self.volume_id = None
        self.volume_uuid = None   # canonical YYYY-MM-DD-hh-mm-ss-cc
        self.volume_digits = None
        self.epoch = 1
        self.rock_ridge = True
        self.joliet = True
        self.level = 3
        self.boot = None
        self.warnings = []

    def digest(self, tools=(), checksum_sources=False):
        """SHA-256 of everything the image is built from: the options, every planned path with
        its kind, mode, link target, source file and that file's size, mtime and ctime, the
        bytes of generated files, and the size and mtime of ``tools`` (the xorriso and GRUB
        files used).  Without ``checksum_sources`` the source files' bytes are not read: equal
        digests mean the image would come out the same unless a source file's bytes changed
        while its size, mtime and ctime stayed the same.  With it, the digest also covers the
        SHA-256 of every source file's bytes (each read once, :func:`.._checksum.file_sha256`;
        an :class:`IsoError` when one vanished or is no longer the regular file walked), and
        the option itself; without it the digest is the one earlier releases recorded."""
        digest = hashlib.sha256()
        head = [DIGEST_VERSION, self.volume_id, self.volume_digits, self.epoch, self.rock_ridge,
                self.joliet, self.level, self.boot, self.grafts]
        if checksum_sources:
            head.append({"checksum_sources": True})
        followed = set(src for src, _dest in self.grafts)   # a link named as a src is followed
        head += [tool_stamp(tool) for tool in tools]
        digest.update(json.dumps(head, sort_keys=True).encode("utf-8", "surrogateescape"))
        for key in sorted(self.entries):
            e = self.entries[key]
            data = hashlib.sha256(e.data).hexdigest() if e.data is not None else None
            fields = (e.path, e.kind, e.mode, e.target, e.src, e.stamp, data)
            if checksum_sources and e.kind == "file" and e.src is not None and e.data is None:
                src = os.path.realpath(e.src) if e.src in followed else e.src
                fields += (file_sha256(src, e.ident, IsoError, e.origin),)
            digest.update(repr(fields).encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    def listing(self):
        """Sorted 'type mode path [-> target]' lines of the planned tree."""
        out = []
        for key in sorted(self.entries):
            e = self.entries[key]
            line = "%s %04o %s" % (e.kind[0], e.mode & 0o7777, e.iso_path)
            if e.kind == "link":
                line += " -> " + e.target
            out.append(line)
        return out


def _add(plan, entry, explicit, parent_key=None):
    """Add ``entry`` (and its missing parent directories); returns its key.  A walked child
    passes its directory's ``parent_key``: that parent is known to be planned as a directory."""
    if parent_key is not None:
        key = parent_key + (name_key(entry.path[-1], plan.rock_ridge, plan.joliet),)
    else:
        key = tuple(name_key(p, plan.rock_ridge, plan.joliet) for p in entry.path)
    # parents
    for i in range(1, len(entry.path) if parent_key is None else 0):
        pkey = key[:i]
        parent = plan.entries.get(pkey)
        if parent is None:
            _check_name(plan, entry.path[i - 1], True, entry.origin, entry.path[:i])
            plan.entries[pkey] = Entry(entry.path[:i], "dir", entry.origin, mode=0o755)
        elif parent.kind != "dir":
            raise IsoError("%s and %s both map to %s: one needs it as a directory, the other as a %s"
                           % (entry.origin, parent.origin, parent.iso_path, parent.kind))
    if not entry.path:
        return key  # the root itself
    _check_name(plan, entry.path[-1], entry.kind == "dir", entry.origin, entry.path)
    other = plan.entries.get(key)
    if other is not None:
        if other.kind == "dir" and entry.kind == "dir" and not explicit:
            return key
        if other.kind == "dir" and entry.kind == "dir" and explicit and not other.src:
            other.mode, other.origin, other.src = entry.mode, entry.origin, entry.src
            return key
        raise IsoError("%s and %s both map to the ISO path %s; give each entry its own dest"
                       % (other.origin, entry.origin, entry.iso_path))
    plan.entries[key] = entry
    return key


def _check_name(plan, name, is_dir, origin, path):
    problem = name_problem(name, is_dir, plan.level, plan.rock_ridge, plan.joliet)
    if problem:
        raise IsoError("%s: the component %r of %s cannot be stored: %s"
                       % (origin, name, "/" + "/".join(path), problem))
    if plan.rock_ridge and plan.joliet and len(name.encode("utf-16-be", "surrogatepass")) // 2 > MAX_JOLIET_LONG:
        plan.warnings.append("%s: the Joliet tree (Windows) shortens %s to %d characters; Rock Ridge keeps the "
                             "full name" % (origin, "/" + "/".join(path), MAX_JOLIET_LONG))
    if len(path) > MAX_ISO_DEPTH and not plan.rock_ridge:
        raise IsoError("%s: %s is %d directories deep; ISO 9660 allows %d without Rock Ridge"
                       % (origin, "/" + "/".join(path), len(path), MAX_ISO_DEPTH))


def _walk(plan, src, dest_parts, origin, shallow=False):
    """Add src (followed if it is a link) and, for a directory, everything below it in sorted
    order (``shallow``: the directory itself only)."""
    try:
        st = os.stat(src)
    except OSError as exc:
        raise IsoError("%s: src %s cannot be read: %s" % (origin, src, exc.strerror or exc))
    if not stat.S_ISDIR(st.st_mode):
        if not dest_parts:
            raise IsoError("%s: src is a file, so dest must name a file in the image such as /%s, not /"
                           % (origin, os.path.basename(src)))
        _add_node(plan, src, st, dest_parts, origin)
        return
    key = _add(plan, Entry(dest_parts, "dir", origin, src=src, mode=stat.S_IMODE(st.st_mode)), explicit=True)
    if shallow:
        return
    entries = plan.entries
    fold = not (plan.rock_ridge or plan.joliet)    # names a reader cannot tell apart share a key
    # With Rock Ridge a name of at most 51 characters (255 bytes, 103 UCS-2 characters) is fine
    # at any depth: nothing to check.
    unchecked = 51 if plan.rock_ridge else -1
    s_ifmt, s_ifdir, s_ifreg, s_imode = stat.S_IFMT, stat.S_IFDIR, stat.S_IFREG, stat.S_IMODE
    stack = [(src, dest_parts, key)]
    while stack:
        directory, parts, key = stack.pop()
        try:
            with os.scandir(directory) as it:
                children = sorted(it, key=lambda d: d.name)
        except OSError as exc:
            raise IsoError("%s: directory %s cannot be listed: %s" % (origin, directory, exc.strerror or exc))
        subdirs = []
        for child in children:
            try:
                cst = child.stat(follow_symlinks=False)
            except OSError as exc:
                raise IsoError("%s: %s cannot be read: %s" % (origin, child.path, exc.strerror or exc))
            name = child.name
            fmt = s_ifmt(cst.st_mode)
            child_key = key + (name.upper() if fold else name,)
            if fmt == s_ifreg and len(name) <= unchecked and child_key not in entries:
                # the common case, inline: a regular file with a short name at a new path
                entries[child_key] = Entry(parts + (name,), "file", origin, child.path, s_imode(cst.st_mode),
                                           size=cst.st_size, stamp=(cst.st_size, cst.st_mtime_ns, cst.st_ctime_ns),
                                           ident=(cst.st_dev, cst.st_ino))
                continue
            child_key = _add_node(plan, child.path, cst, parts + (name,), origin, key)
            if fmt == s_ifdir:
                subdirs.append((child.path, parts + (name,), child_key))
        stack.extend(reversed(subdirs))


def _add_node(plan, path, st, parts, origin, parent_key=None):
    """Add one node; its key when it is a directory to descend into, else None."""
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFDIR:
        return _add(plan, Entry(parts, "dir", origin, src=path, mode=stat.S_IMODE(st.st_mode)), explicit=True,
                    parent_key=parent_key)
    if fmt == stat.S_IFREG:
        _add(plan, Entry(parts, "file", origin, src=path, mode=stat.S_IMODE(st.st_mode), size=st.st_size,
                         stamp=(st.st_size, st.st_mtime_ns, st.st_ctime_ns), ident=(st.st_dev, st.st_ino)),
             explicit=True, parent_key=parent_key)
    elif fmt == stat.S_IFLNK:
        if not plan.rock_ridge:
            raise IsoError("%s: %s is a symbolic link; only Rock Ridge can store links, turn rock_ridge on"
                           % (origin, path))
        _add(plan, Entry(parts, "link", origin, src=path, mode=0o777, target=os.readlink(path)), explicit=True,
             parent_key=parent_key)
    else:
        raise IsoError("%s: %s is neither a regular file, a directory nor a symbolic link" % (origin, path))
    return None


def make_plan(files=None, content=None, volume_id=None, volume_uuid=None, source_date_epoch=None,
              rock_ridge=True, joliet=True, interchange_level=3, boot=None, cidata=None, environ=None,
              shallow=False):
    """Validate every input and return a Plan; raise IsoError before anything is written.

    ``shallow``: an outline that does not walk the source directories (only they themselves
    are checked).  Its xorriso command is the full plan's whenever the full plan is valid,
    but for a directory that a dest path implies and that a source tree holds under a name
    a reader cannot tell apart from it (plain ISO 9660 names): the caller compares both."""
    plan = Plan()
    plan.rock_ridge, plan.joliet = bool(rock_ridge), bool(joliet)
    if interchange_level not in (1, 2, 3):
        raise IsoError("interchange_level must be 1, 2 or 3, got %r" % (interchange_level,))
    plan.level = interchange_level
    plan.epoch = resolve_epoch(source_date_epoch, environ)
    content = list(content or [])
    if cidata is not None:
        if volume_id is not None and str(volume_id).upper() != "CIDATA":
            raise IsoError("cidata seeds must be labelled CIDATA for cloud-init to find them; "
                           "drop volume_id or set it to cidata (got %r)" % (volume_id,))
        volume_id = "cidata"
        content.extend(cidata_content(cidata))
    elif volume_id is None:
        volume_id = "ISOIMAGE"
    plan.volume_id = normalize_volume_id(volume_id)
    if volume_uuid:
        plan.volume_digits, plan.volume_uuid = parse_volume_uuid(volume_uuid)
    else:
        plan.volume_digits = timestring(plan.epoch)
        plan.volume_uuid = parse_volume_uuid(plan.volume_digits)[1]

    for i, item in enumerate(files or []):
        if not isinstance(item, dict) or not item.get("src") or item.get("dest") in (None, ""):
            raise IsoError("files[%d] needs both src (a file or directory on this machine) and dest "
                           "(its path in the image)" % i)
        src = os.path.abspath(os.path.expanduser(str(item["src"])))
        origin = "files[%d] (%s)" % (i, item["src"])
        parts = split_dest(item["dest"], origin)
        if not os.path.lexists(src):
            raise IsoError("%s: src %s does not exist" % (origin, src))
        _walk(plan, src, parts, origin, shallow)
        plan.grafts.append((src, "/" + "/".join(parts)))

    for i, item in enumerate(content):
        if not isinstance(item, dict) or item.get("dest") in (None, "") or item.get("content") is None:
            raise IsoError("content[%d] needs dest (its path in the image) and content (a string)" % i)
        origin = "content[%d] (%s)" % (i, item["dest"])
        parts = split_dest(item["dest"], origin)
        if not parts:
            raise IsoError("%s: dest must name a file, not the root directory" % origin)
        data = item["content"]
        data = data if isinstance(data, bytes) else str(data).encode("utf-8")
        entry = Entry(parts, "file", origin, mode=parse_mode(item.get("mode"), origin), data=data, size=len(data))
        _add(plan, entry, explicit=True)
        plan.generated.append(entry)

    if shallow:
        _cover_implied(plan)
    if boot is not None:
        plan.boot = _plan_boot(plan, boot)
    return plan


def _cover_implied(plan):
    """In an outline: a directory only a dest path implies, that a source tree below a graft
    holds as a directory, is that tree's directory (as the walk would find)."""
    trees = []
    for src, dest in plan.grafts:
        if os.path.isdir(src):
            trees.append((split_dest(dest, "files"), src))
    if not trees:
        return
    for entry in plan.entries.values():
        if entry.kind != "dir" or entry.src is not None or not entry.path:
            continue
        for parts, src in trees:
            if len(parts) >= len(entry.path) or entry.path[:len(parts)] != parts:
                continue
            found, mode = src, None
            for name in entry.path[len(parts):]:
                found = os.path.join(found, name)
                try:
                    st = os.lstat(found)
                except OSError:
                    found = None
                    break
                if not stat.S_ISDIR(st.st_mode):
                    found = None
                    break
                mode = stat.S_IMODE(st.st_mode)
            if found is not None:
                entry.src, entry.mode = found, mode
                break


def _plan_boot(plan, boot):
    cfg = dict(boot)
    cfg.setdefault("grub_config", GRUB_CONFIG)
    for flag in ("bios", "efi", "hybrid"):
        cfg[flag] = True if cfg.get(flag) is None else bool(cfg[flag])
    if not cfg["bios"] and not cfg["efi"]:
        raise IsoError("boot: at least one of bios and efi must be true")
    if cfg["hybrid"] and not cfg["bios"]:
        raise IsoError("boot: hybrid needs bios (the hybrid MBR hands over to the BIOS El Torito image)")
    parts = split_dest(cfg["grub_config"], "boot.grub_config")
    key = tuple(name_key(p, plan.rock_ridge, plan.joliet) for p in parts)
    entry = plan.entries.get(key)
    if entry is None or entry.kind != "file":
        raise IsoError("boot: the GRUB configuration %s is not in the image; add it with files or content "
                       "(it must load a kernel and initrd that the image carries)" % cfg["grub_config"])
    cfg["grub_config"] = entry.iso_path
    generated = []
    if cfg["bios"]:
        generated.append(BIOS_IMAGE)
    if cfg["efi"]:
        generated.append(EFI_IMAGE)
    for path in generated + [BOOT_CATALOG]:
        placeholder = Entry(split_dest(path, "boot"), "file", "boot (%s)" % path, mode=0o644)
        _add(plan, placeholder, explicit=True)
    cfg["images"] = generated
    return cfg
