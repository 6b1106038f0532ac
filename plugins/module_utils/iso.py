# -*- coding: utf-8 -*-
# Copyright (c) vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reproducible ISO 9660 images, built with xorriso.

Pure planning (validation of volume ids, names and graft points, the xorriso
command line, GRUB boot set-up, cloud-init NoCloud seeds) plus a thin edge that
runs the tools; every side effect takes an injectable ``run`` callable.

Backend: xorriso, chosen by measurement (benchmarks/iso.py): on a 1 GiB tree of
65 570 small files and four large ones, xorriso took 4.5-6.8 s and pycdlib
11.5-11.8 s on a quiet machine (before any date normalisation); on a loaded one
pycdlib used 1.41x xorriso's CPU. xorriso also does El Torito, EFI, hybrid
MBR/GPT and fixed dates natively. This module: 1.27x the wall time of
``xorriso -as mkisofs -R -J`` for a new image (docs/iso9660.md).

Reproducibility: the tree is planned in sorted order, every file and volume date
comes from one ``source_date_epoch`` (volume creation/modification dates from
``volume_uuid`` when given), owners are 0:0, no ACLs/xattrs/device-inode
numbers are recorded, the preparer/application ids are empty and xorriso runs
with ``TZ=UTC`` and ``-iso_nowtime`` so neither the clock nor the time zone
reaches the image.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import os
import re
import select
import shutil
import stat
import subprocess
import tempfile
import time

from ansible_collections.vmhost.virt.plugins.module_utils._tools import FAT_EPOCH, GRUB_EFI_DIR
from ansible_collections.vmhost.virt.plugins.module_utils import _tools

try:
    import yaml
    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - PyYAML ships with ansible-core
    yaml = None
    HAS_YAML = False
    YAML_IMPORT_ERROR = exc


class IsoError(Exception):
    """A bad input or a failed tool, with a message a person can act on."""


D_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
JOLIET_FORBIDDEN = frozenset("*/:;?\\")
MAX_VOLUME_ID = 32
MAX_RR_NAME = 255
MAX_JOLIET_NAME = 64
MAX_JOLIET_LONG = 103  # xorriso's joliet_long_names, used together with Rock Ridge
MAX_ISO_DEPTH = 8

GRUB_CONFIG = "/boot/grub/grub.cfg"
BIOS_IMAGE = "/boot/grub/eltorito.img"
EFI_IMAGE = "/boot/grub/efi.img"
BOOT_CATALOG = "/boot/grub/boot.cat"
GRUB_BIOS_DIR = "/usr/lib/grub/i386-pc"
GRUB_MODULES_COMMON = [
    "iso9660", "part_msdos", "part_gpt", "fat", "normal", "configfile", "linux",
    "search", "search_fs_uuid", "search_fs_file", "search_label", "echo", "test",
    "ls", "cat", "serial", "terminal", "gzio", "xzio", "halt", "reboot",
]
GRUB_MODULES_BIOS = ["biosdisk"]
GRUB_MODULES_EFI = ["efi_gop", "efi_uga", "video", "video_fb"]


# ---------------------------------------------------------------- dates


def resolve_epoch(option, environ=None):
    """source_date_epoch: the option, else SOURCE_DATE_EPOCH, else 1 (like the reference)."""
    environ = os.environ if environ is None else environ
    if option is not None:
        value, origin = option, "source_date_epoch"
    elif environ.get("SOURCE_DATE_EPOCH", "") != "":
        value, origin = environ["SOURCE_DATE_EPOCH"], "SOURCE_DATE_EPOCH"
    else:
        return 1
    try:
        epoch = int(str(value).strip())
    except ValueError:
        raise IsoError("%s must be a whole number of seconds since 1970-01-01 UTC, got %r" % (origin, value))
    if epoch < 0 or epoch > 253402300799:
        raise IsoError("%s must lie between 0 and 253402300799 (year 9999), got %d" % (origin, epoch))
    return epoch


def timestring(epoch):
    """ISO 9660 volume date digits (YYYYMMDDhhmmsscc) of an epoch, in UTC."""
    when = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=int(epoch))
    return when.strftime("%Y%m%d%H%M%S") + "00"


def parse_volume_uuid(value):
    """An ISO 9660 'UUID' is the volume date: YYYY-MM-DD-hh-mm-ss-cc (or its 16 digits).

    Returns (digits, canonical) where digits feed xorriso and canonical is what
    blkid and GRUB show.
    """
    text = str(value).strip()
    digits = text.replace("-", "")
    if not re.match(r"^[0-9]{16}$", digits) or (text != digits and not re.match(
            r"^[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}$", text)):
        raise IsoError("volume_uuid %r is not an ISO 9660 UUID: write it as YYYY-MM-DD-hh-mm-ss-cc "
                       "(16 digits, e.g. 2024-05-01-12-00-00-00), the volume date blkid reports" % (value,))
    try:
        datetime.datetime(int(digits[0:4]), int(digits[4:6]), int(digits[6:8]),
                          int(digits[8:10]), int(digits[10:12]), int(digits[12:14]))
    except ValueError as exc:
        raise IsoError("volume_uuid %r is not a valid date (%s)" % (value, exc))
    canonical = "-".join([digits[0:4], digits[4:6], digits[6:8], digits[8:10],
                          digits[10:12], digits[12:14], digits[14:16]])
    return digits, canonical


def fat_serial(volume_uuid):
    """32-bit FAT serial number of efi.img, derived from the volume UUID (8 hex digits)."""
    return hashlib.sha256(volume_uuid.encode("ascii")).hexdigest()[:8].upper()


# ---------------------------------------------------------------- names


def normalize_volume_id(value):
    """Upper-case and validate a volume id: at most 32 d-characters (A-Z, 0-9, _)."""
    if value is None:
        raise IsoError("volume_id is required")
    vid = str(value).upper()
    if vid == "":
        raise IsoError("volume_id is empty; give 1 to 32 characters from A-Z, 0-9 and _")
    problems = []
    if len(vid) > MAX_VOLUME_ID:
        problems.append("it is %d characters long after upper-casing, at most %d are allowed"
                        % (len(vid), MAX_VOLUME_ID))
    bad = sorted(set(ch for ch in vid if ch not in D_CHARACTERS))
    if bad:
        problems.append("it contains %s, only A-Z, 0-9 and _ (ISO 9660 d-characters) are allowed"
                        % ", ".join(repr(ch) for ch in bad))
    if problems:
        raise IsoError("volume_id %r is invalid: %s" % (value, "; ".join(problems)))
    return vid


def split_dest(dest, what):
    """'/a/b/c' -> ('a', 'b', 'c'); '/' -> (). Rejects '.', '..', empty components, NUL."""
    if not isinstance(dest, str) or dest == "":
        raise IsoError("%s: dest must be a non-empty path inside the image such as /boot/vmlinuz" % what)
    if "\0" in dest:
        raise IsoError("%s: dest %r contains a NUL byte" % (what, dest))
    parts = dest.strip("/").split("/") if dest.strip("/") else []
    for part in parts:
        if part in ("", ".", ".."):
            raise IsoError("%s: dest %r has an empty, '.' or '..' component; write a plain path such as /dir/file"
                           % (what, dest))
    return tuple(parts)


def _iso_name_problem(name, is_dir, level):
    upper = name.upper()
    if is_dir:
        base, ext = upper, None
        limit = 8 if level == 1 else 31
        if len(base) > limit:
            return "directory names at interchange_level %d have at most %d characters" % (level, limit)
    else:
        base, dot, ext = upper.rpartition(".")
        if not dot:
            base, ext = upper, ""
        if level == 1:
            if len(base) > 8 or len(ext) > 3:
                return "file names at interchange_level 1 are 8.3 (at most 8 characters, a dot, 3 characters)"
        elif len(base) + len(ext) + (1 if dot else 0) > 30:
            return "file names at interchange_level %d have at most 30 characters" % level
        if not base and not ext:
            return "the name is empty"
    bad = sorted(set(ch for ch in (base + (ext or "")) if ch not in D_CHARACTERS))
    if bad:
        return "ISO 9660 names allow only A-Z, 0-9, _ and one dot, not %s" % ", ".join(repr(c) for c in bad)
    return None


def name_problem(name, is_dir, level, rock_ridge, joliet):
    """Why a path component cannot be stored with these options, or None.

    Rock Ridge carries POSIX names (up to 255 bytes); without it Joliet names
    (64 UCS-2 characters, no * / : ; ? \\) or, with neither, the ISO 9660 names
    of the interchange level are the names a reader sees, so they are checked.
    """
    if rock_ridge:
        if len(name.encode("utf-8", "surrogateescape")) > MAX_RR_NAME:
            return "Rock Ridge names have at most %d bytes" % MAX_RR_NAME
        return None
    if joliet:
        if len(name.encode("utf-16-be", "surrogatepass")) // 2 > MAX_JOLIET_NAME:
            return "Joliet names have at most %d characters (turn rock_ridge on for longer names)" % MAX_JOLIET_NAME
        bad = sorted(set(ch for ch in name if ch in JOLIET_FORBIDDEN or ord(ch) < 32))
        if bad:
            return "Joliet names cannot contain %s" % ", ".join(repr(c) for c in bad)
        return None
    return _iso_name_problem(name, is_dir, level)


def _name_key(name, rock_ridge, joliet):
    """Two names that a reader cannot tell apart get the same key."""
    if rock_ridge:
        return name
    if joliet:
        return name
    return name.upper()


# ---------------------------------------------------------------- planning


class Entry(object):
    """One node of the planned image tree."""

    __slots__ = ("path", "kind", "src", "mode", "target", "data", "origin", "size")

    def __init__(self, path, kind, origin, src=None, mode=None, target=None, data=None, size=0):
        self.path = path          # tuple of components
        self.kind = kind          # 'dir', 'file', 'link'
        self.origin = origin      # human description of the input that produced it
        self.src = src            # file on disk (files), or None
        self.mode = mode          # permission bits
        self.target = target      # symlink target
        self.data = data          # bytes of generated files
        self.size = size

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


def _add(plan, entry, explicit):
    key = tuple(_name_key(p, plan.rock_ridge, plan.joliet) for p in entry.path)
    # parents
    for i in range(1, len(entry.path)):
        pkey = key[:i]
        parent = plan.entries.get(pkey)
        if parent is None:
            _check_name(plan, entry.path[i - 1], True, entry.origin, entry.path[:i])
            plan.entries[pkey] = Entry(entry.path[:i], "dir", entry.origin, mode=0o755)
        elif parent.kind != "dir":
            raise IsoError("%s and %s both map to %s: one needs it as a directory, the other as a %s"
                           % (entry.origin, parent.origin, parent.iso_path, parent.kind))
    if not entry.path:
        return  # the root itself
    _check_name(plan, entry.path[-1], entry.kind == "dir", entry.origin, entry.path)
    other = plan.entries.get(key)
    if other is not None:
        if other.kind == "dir" and entry.kind == "dir" and not explicit:
            return
        if other.kind == "dir" and entry.kind == "dir" and explicit and not other.src:
            other.mode, other.origin, other.src = entry.mode, entry.origin, entry.src
            return
        raise IsoError("%s and %s both map to the ISO path %s; give each entry its own dest"
                       % (other.origin, entry.origin, entry.iso_path))
    plan.entries[key] = entry


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


def _walk(plan, src, dest_parts, origin):
    """Add src (followed if it is a link) and, for a directory, everything below it in sorted order."""
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
    _add(plan, Entry(dest_parts, "dir", origin, src=src, mode=stat.S_IMODE(st.st_mode)), explicit=True)
    stack = [(src, dest_parts)]
    while stack:
        directory, parts = stack.pop()
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
            if _add_node(plan, child.path, cst, parts + (child.name,), origin):
                subdirs.append((child.path, parts + (child.name,)))
        stack.extend(reversed(subdirs))


def _add_node(plan, path, st, parts, origin):
    """Add one node; True when it is a directory to descend into."""
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFDIR:
        _add(plan, Entry(parts, "dir", origin, src=path, mode=stat.S_IMODE(st.st_mode)), explicit=True)
        return True
    if fmt == stat.S_IFREG:
        _add(plan, Entry(parts, "file", origin, src=path, mode=stat.S_IMODE(st.st_mode), size=st.st_size),
             explicit=True)
    elif fmt == stat.S_IFLNK:
        if not plan.rock_ridge:
            raise IsoError("%s: %s is a symbolic link; only Rock Ridge can store links, turn rock_ridge on"
                           % (origin, path))
        _add(plan, Entry(parts, "link", origin, src=path, mode=0o777, target=os.readlink(path)), explicit=True)
    else:
        raise IsoError("%s: %s is neither a regular file, a directory nor a symbolic link" % (origin, path))
    return False


def parse_mode(value, what):
    if value is None:
        return 0o644
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not re.match(r"^0?[0-7]{3,4}$", text):
            raise IsoError("%s: mode %r must be octal digits such as '0644'" % (what, value))
        mode = int(text, 8)
    if mode < 0 or mode > 0o7777:
        raise IsoError("%s: mode %r is out of range" % (what, value))
    return mode


def make_plan(files=None, content=None, volume_id=None, volume_uuid=None, source_date_epoch=None,
              rock_ridge=True, joliet=True, interchange_level=3, boot=None, cidata=None, environ=None):
    """Validate every input and return a Plan; raise IsoError before anything is written."""
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
        _walk(plan, src, parts, origin)
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

    if boot is not None:
        plan.boot = _plan_boot(plan, boot)
    return plan


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
    key = tuple(_name_key(p, plan.rock_ridge, plan.joliet) for p in parts)
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


# ---------------------------------------------------------------- cloud-init


def _yaml(data):
    if not HAS_YAML:
        raise IsoError("PyYAML is needed to write cloud-init data: %s" % YAML_IMPORT_ERROR)
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=True, allow_unicode=True)


def cidata_content(cidata):
    """content entries of a cloud-init NoCloud seed: user-data, meta-data, network-config."""
    if not isinstance(cidata, dict):
        raise IsoError("cidata must be a dictionary with user_data, meta_data and network_config")
    user = cidata.get("user_data")
    if user is None:
        user = {}
    if isinstance(user, (dict, list)):
        user_text = "#cloud-config\n" + _yaml(user)
    else:
        user_text = str(user)
        if not user_text.startswith("#"):
            raise IsoError("cidata.user_data given as text must start with a header such as #cloud-config "
                           "or #!/bin/sh; give a dictionary to have the #cloud-config document written for you")
    meta = cidata.get("meta_data")
    if meta is None:
        meta = {}
    if isinstance(meta, dict):
        meta = dict(meta)
        if "instance-id" not in meta:
            meta["instance-id"] = "iid-" + hashlib.sha256(user_text.encode("utf-8")).hexdigest()[:16]
        meta_text = _yaml(meta)
    else:
        meta_text = str(meta)
    entries = [
        {"dest": "/user-data", "content": user_text, "mode": "0644"},
        {"dest": "/meta-data", "content": meta_text, "mode": "0644"},
    ]
    network = cidata.get("network_config")
    if network is not None:
        text = _yaml(network) if isinstance(network, (dict, list)) else str(network)
        entries.append({"dest": "/network-config", "content": text, "mode": "0644"})
    return entries


# ---------------------------------------------------------------- the xorriso command


def early_grub_config(plan):
    """Config embedded in the GRUB images: find this ISO, then load its grub.cfg."""
    cfg = plan.boot["grub_config"]
    prefix = cfg.rsplit("/", 1)[0] or "/"
    return (
        "search --no-floppy --fs-uuid --set=root %s\n"
        "if [ -z \"$root\" ]; then search --no-floppy --file --set=root %s; fi\n"
        "set prefix=($root)%s\n"
        "configfile ($root)%s\n"
    ) % (plan.volume_uuid, cfg, prefix, cfg)


def xorriso_command(plan, out_path, staging, xorriso="xorriso"):
    """argv that writes the planned image to out_path.

    staging maps the ISO path of each generated file (content entries and boot
    images) to the file on disk that holds its bytes.
    """
    compliance = "iso_9660_level=%d" % plan.level
    if plan.joliet:
        compliance += ":joliet_long_names" if plan.rock_ridge else ""
    argv = [
        xorriso, "-no_rc", "-report_about", "SORRY", "-abort_on", "FAILURE", "-return_with", "SORRY", "32",
        # Paths are data, never patterns: without this "-chmod 0600 /k*" changes every /k... file.
        "-iso_rr_pattern", "off", "-disk_pattern", "off",
        "-outdev", "stdio:" + out_path,
        "-follow", "param",
        "-compliance", compliance,
        "-rockridge", "on" if plan.rock_ridge else "off",
        "-joliet", "on" if plan.joliet else "off",
        "-acl", "off", "-xattr", "off", "-md5", "off", "-disk_dev_ino", "off", "-hardlinks", "off",
        "-uid", "0", "-gid", "0",  # every owner root, applied while writing (cheaper than -chown_r)
        "-volid", plan.volume_id,
        "-volset_id", "", "-publisher", "", "-application_id", "", "-system_id", "", "-preparer_id", "",
        "-volume_date", "c", plan.volume_digits,
        "-volume_date", "m", plan.volume_digits,
        "-volume_date", "uuid", plan.volume_digits,
        "-volume_date", "all_file_dates", "=%d" % plan.epoch,
        "-iso_nowtime", "=%d" % plan.epoch,
    ]
    for src, dest in plan.grafts:
        argv += ["-map", src, dest]
    for entry in sorted(plan.generated, key=lambda e: e.path):
        argv += ["-map", staging[entry.iso_path], entry.iso_path, "-chmod", "%04o" % entry.mode, entry.iso_path, "--"]
    if plan.boot:
        for path in plan.boot["images"]:
            argv += ["-map", staging[path], path, "-chmod", "0644", path, "--"]
    # Implicit parent directories get 0755 whatever xorriso's default.
    for key in sorted(plan.entries):
        e = plan.entries[key]
        if e.kind == "dir" and e.src is None:
            argv += ["-chmod", "0755", e.iso_path, "--"]
    if plan.boot:
        argv += boot_arguments(plan)
    argv += ["-commit", "-end"]
    return argv


def boot_arguments(plan):
    boot = plan.boot
    args = ["-boot_image", "any", "cat_path=" + BOOT_CATALOG]
    if boot["bios"]:
        args += [
            "-boot_image", "grub", "bin_path=" + BIOS_IMAGE,
            "-boot_image", "any", "platform_id=0x00",
            "-boot_image", "any", "emul_type=no_emulation",
            "-boot_image", "any", "load_size=2048",
            "-boot_image", "any", "boot_info_table=on",
            "-boot_image", "grub", "grub2_boot_info=on",
        ]
        if boot["hybrid"]:
            args += ["-boot_image", "grub", "grub2_mbr=" + os.path.join(GRUB_BIOS_DIR, "boot_hybrid.img"),
                     "-boot_image", "any", "partition_table=on"]
    if boot["efi"]:
        if boot["bios"]:
            args += ["-boot_image", "any", "next"]
        args += ["-boot_image", "any", "efi_path=" + EFI_IMAGE,
                 "-boot_image", "any", "platform_id=0xef",
                 "-boot_image", "any", "emul_type=no_emulation"]
        if boot["hybrid"]:
            args += ["-boot_image", "any", "efi_boot_part=--efi-boot-image",
                     "-boot_image", "any", "gpt_disk_guid=volume_date_uuid"]
    return args


# ---------------------------------------------------------------- the edge: running tools


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


def _check(run, argv, env, what):
    try:
        rc, out, err = run(argv, env=env)
    except OSError as exc:
        raise IsoError("%s: cannot run %s: %s" % (what, argv[0], exc))
    if rc != 0:
        raise IsoError("%s failed (exit %d): %s" % (what, rc, (err or out).strip()[-2000:]))
    return out, err


def build_grub_images(plan, workdir, run=default_run):
    """Write eltorito.img and/or efi.img for plan.boot into workdir; return {iso path: file}."""
    env = tool_env(plan.epoch)
    early = os.path.join(workdir, "early.cfg")
    with open(early, "w") as f:
        f.write(early_grub_config(plan))
    out = {}
    if plan.boot["bios"]:
        if not os.path.isdir(GRUB_BIOS_DIR):
            raise IsoError("boot.bios needs GRUB's i386-pc modules in %s (Debian: apt-get install grub-pc-bin)"
                           % GRUB_BIOS_DIR)
        img = os.path.join(workdir, "eltorito.img")
        _check(run, ["grub-mkimage", "-O", "i386-pc-eltorito", "-d", GRUB_BIOS_DIR, "-p", "/boot/grub",
                     "-c", early, "-o", img] + GRUB_MODULES_COMMON + GRUB_MODULES_BIOS, env, "grub-mkimage (BIOS)")
        out[BIOS_IMAGE] = img
    if plan.boot["efi"]:
        if not os.path.isdir(GRUB_EFI_DIR):
            raise IsoError("boot.efi needs GRUB's x86_64-efi modules in %s (Debian: apt-get install "
                           "grub-efi-amd64-bin)" % GRUB_EFI_DIR)
        loader = os.path.join(workdir, "BOOTX64.EFI")
        _check(run, ["grub-mkimage", "-O", "x86_64-efi", "-d", GRUB_EFI_DIR, "-p", "/boot/grub",
                     "-c", early, "-o", loader] + GRUB_MODULES_COMMON + GRUB_MODULES_EFI, env, "grub-mkimage (EFI)")
        img = os.path.join(workdir, "efi.img")
        make_fat_image(img, {"EFI/BOOT/BOOTX64.EFI": loader}, fat_serial(plan.volume_uuid), plan.epoch, run=run)
        out[EFI_IMAGE] = img
    return out


def make_fat_image(path, files, serial, epoch, label="EFIBOOT", run=default_run):
    """A FAT image holding files ({path inside: file on disk}), root-less (mkfs.fat + mtools)."""
    payload = sum(os.path.getsize(src) for src in files.values())
    kib = max(1440, ((payload * 11 // 10) // 1024 + 256 + 63) // 64 * 64)
    env = tool_env(epoch)
    env["SOURCE_DATE_EPOCH"] = str(max(int(epoch), FAT_EPOCH))  # mtools honours it; FAT starts in 1980
    _check(run, ["mkfs.fat", "-C", "--invariant", "-i", serial, "-n", label, path, str(kib)], env, "mkfs.fat")
    dirs = set()
    for inside in sorted(files):
        parts = inside.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    for d in sorted(dirs, key=lambda p: (p.count("/"), p)):
        _check(run, ["mmd", "-i", path, "::/" + d], env, "mmd")
    for inside in sorted(files):
        _check(run, ["mcopy", "-i", path, files[inside], "::/" + inside], env, "mcopy")
    return path


def write_staging(plan, workdir):
    """Write generated files (content entries) into workdir; return {iso path: file}."""
    out = {}
    for n, entry in enumerate(sorted(plan.generated, key=lambda e: e.path)):
        fn = os.path.join(workdir, "content-%05d" % n)
        with open(fn, "wb") as f:
            f.write(entry.data)
        os.chmod(fn, entry.mode & 0o777)
        out[entry.iso_path] = fn
    return out


class ImageSink(object):
    """Receives the image as a byte stream.

    It hashes the stream (sha256) and compares it with the image already at
    ``existing``. ``new_path`` is only created once the stream differs: the
    equal prefix is copied from the existing image, the rest comes from the
    stream. So an unchanged image costs no write at all, and with
    ``new_path=None`` (check mode) nothing is ever written.
    """

    def __init__(self, existing=None, new_path=None):
        self.hash = hashlib.sha256()
        self.size = 0
        self.new_path = new_path
        self.existing = open(existing, "rb") if existing and os.path.isfile(existing) else None
        self.same = self.existing is not None
        self.out = None
        if self.existing is None and new_path:
            self.out = open(new_path, "wb")

    def write(self, chunk):
        self.hash.update(chunk)
        if self.same:
            if self.existing.read(len(chunk)) == chunk:
                self.size += len(chunk)
                return
            self._diverge()
        if self.out is not None:
            self.out.write(chunk)
        self.size += len(chunk)

    def _diverge(self):
        self.same = False
        if self.new_path is None:
            return
        self.out = open(self.new_path, "wb")
        left, offset = self.size, 0
        src, dst = self.existing.fileno(), self.out.fileno()
        while left > 0:
            try:
                n = os.copy_file_range(src, dst, left, offset, offset)
            except (AttributeError, OSError):
                self.existing.seek(offset)
                block = self.existing.read(min(left, 1 << 20))
                n = len(block)
                self.out.write(block)
            if n <= 0:
                raise IsoError("could not copy the unchanged start of the existing image")
            left -= n
            offset += n
        self.out.seek(self.size)

    def close(self):
        """Finish; True when the stream equals the existing image byte for byte."""
        if self.same and self.existing.read(1) != b"":
            self._diverge()
        if self.existing is not None:
            self.existing.close()
        if self.out is not None:
            self.out.close()
        return self.same

    def discard(self):
        for f in (self.existing, self.out):
            if f is not None:
                f.close()
        if self.out is not None and self.new_path and os.path.exists(self.new_path):
            os.unlink(self.new_path)

    @property
    def sha256(self):
        return self.hash.hexdigest()


def stream(argv, fifo, sink, env, popen=_tools.spawn, stderr_path=None):
    """Run argv (which writes the image to the named pipe ``fifo``) and feed the bytes to sink."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        try:
            import fcntl
            fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer wake-ups
        except (ImportError, OSError):
            pass
        errf = open(stderr_path or os.devnull, "wb")
        try:
            proc = popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
        except OSError as exc:
            errf.close()
            raise IsoError("cannot run %s: %s" % (argv[0], exc))
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        while True:
            poller.poll(200)
            try:
                data = os.read(fd, 1 << 20)
            except BlockingIOError:
                continue
            if data:
                sink.write(data)
                continue
            if proc.poll() is not None:
                while True:  # whatever is still buffered
                    try:
                        data = os.read(fd, 1 << 20)
                    except BlockingIOError:
                        break
                    if not data:
                        break
                    sink.write(data)
                break
            time.sleep(0.02)  # no writer yet, or it has just closed the pipe and is finishing
        errf.close()
        return proc.returncode
    finally:
        os.close(fd)


def build(plan, sink, run=default_run, popen=_tools.spawn, xorriso="xorriso", tmpdir=None):
    """Stream the image described by plan into sink (see ImageSink); raise IsoError on failure."""
    if shutil.which(xorriso) is None and os.path.sep not in xorriso:
        raise IsoError("xorriso is not installed (Debian: apt-get install xorriso)")
    workdir = tempfile.mkdtemp(prefix="vmhost-iso-", dir=tmpdir)
    try:
        staging = write_staging(plan, workdir)
        if plan.boot:
            staging.update(build_grub_images(plan, workdir, run=run))
        fifo = os.path.join(workdir, "image.fifo")
        os.mkfifo(fifo, 0o600)
        errors = os.path.join(workdir, "xorriso.log")
        argv = xorriso_command(plan, fifo, staging, xorriso=xorriso)
        rc = stream(argv, fifo, sink, tool_env(plan.epoch), popen=popen, stderr_path=errors)
        if rc != 0:
            with open(errors, "rb") as f:
                msg = f.read().decode("utf-8", "replace").strip()
            lines = [ln for ln in msg.splitlines() if ": SORRY :" in ln or ": FAILURE :" in ln or "FATAL" in ln]
            raise IsoError("xorriso failed (exit %d): %s" % (rc, "\n".join(lines or msg.splitlines()[-10:])))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return sink


def build_file(plan, out_path, **kwargs):
    """Write the image to out_path (replaced); return its sha256."""
    sink = ImageSink(None, out_path)
    try:
        build(plan, sink, **kwargs)
    except BaseException:
        sink.discard()
        raise
    sink.close()
    return sink.sha256


# ---------------------------------------------------------------- comparing images


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


_LSDL = re.compile(r"^(\S+)\s+\d+\s+\S+\s+\S+\s+(\d+)\s+\w+\s+\d+\s+[\d:]+\s+'(.*?)'(?: -> '(.*)')?$")
_LBA = re.compile(r"^File data lba:\s*\d+\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*'(.*)'$")


def _unquote(text):
    return text.replace("'\"'\"'", "'")


def read_listing(image, run=default_run, xorriso="xorriso"):
    """{iso path: (type+mode string, size, link target, [(lba, blocks)])} of an existing image."""
    env = tool_env(1)
    argv = [xorriso, "-no_rc", "-report_about", "SORRY", "-indev", image,
            "-find", "/", "-exec", "lsdl", "--",
            "-find", "/", "-type", "f", "-exec", "report_lba", "--"]
    out = _check(run, argv, env, "xorriso (reading %s)" % image)[0]
    listing, extents = {}, {}
    for line in out.splitlines():
        m = _LSDL.match(line)
        if m:
            path = _unquote(m.group(3))
            listing[path] = (m.group(1), int(m.group(2)), _unquote(m.group(4)) if m.group(4) else None)
            continue
        m = _LBA.match(line)
        if m:
            extents.setdefault(_unquote(m.group(4)), []).append((int(m.group(1)), int(m.group(2))))
    return dict((p, v + (extents.get(p, []),)) for p, v in listing.items())


def _data_digest(image, extents, size):
    h = hashlib.sha256()
    left = size
    with open(image, "rb") as f:
        for lba, blocks in extents:
            f.seek(lba * 2048)
            want = min(left, blocks * 2048)
            h.update(f.read(want))
            left -= want
    return h.hexdigest()


def diff_images(before, after, run=default_run, xorriso="xorriso"):
    """Paths added, removed and changed (type, mode, size, link target or data) between two images."""
    old = read_listing(before, run=run, xorriso=xorriso) if before and os.path.exists(before) else {}
    new = read_listing(after, run=run, xorriso=xorriso)
    old.pop("/", None)
    new.pop("/", None)
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = []
    for path in sorted(set(old) & set(new)):
        o, n = old[path], new[path]
        if o[:3] != n[:3]:
            changed.append(path)
        elif n[0].startswith("-") and _data_digest(before, o[3], o[1]) != _data_digest(after, n[3], n[1]):
            changed.append(path)
    return {"added": added, "removed": removed, "changed": changed}


def format_listing(image, run=default_run, xorriso="xorriso"):
    """'mode size path [-> target]' lines of an image, for a readable diff."""
    if not image or not os.path.exists(image):
        return ""
    lines = []
    for path, (mode, size, target, _ext) in sorted(read_listing(image, run=run, xorriso=xorriso).items()):
        lines.append("%s %d %s%s" % (mode, size, path, (" -> " + target) if target else ""))
    return "\n".join(lines) + "\n"
