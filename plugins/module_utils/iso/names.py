# -*- coding: utf-8 -*-
# Copyright (c) vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ISO 9660 can hold: volume ids, volume dates and UUIDs, path components, modes (pure).

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import re

from ansible_collections.vmhost.virt.plugins.module_utils import _tools


class IsoError(Exception):
    """A bad input or a failed tool, with a message a person can act on."""


D_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
JOLIET_FORBIDDEN = frozenset("*/:;?\\")
MAX_VOLUME_ID = 32
MAX_RR_NAME = 255
MAX_JOLIET_NAME = 64
MAX_JOLIET_LONG = 103  # xorriso's joliet_long_names, used together with Rock Ridge
MAX_ISO_DEPTH = 8


# ---------------------------------------------------------------- dates


def resolve_epoch(option, environ=None):
    """source_date_epoch: the option, else SOURCE_DATE_EPOCH, else 1 (like the reference)."""
    try:
        return _tools.resolve_epoch(option, environ, default=1)
    except _tools.InputError as exc:
        raise IsoError(str(exc))


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


def iso9660_name_problem(name, is_dir, level):
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
    return iso9660_name_problem(name, is_dir, level)


def name_key(name, rock_ridge, joliet):
    """Two names that a reader cannot tell apart get the same key."""
    if rock_ridge or joliet:
        return name
    return name.upper()


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
