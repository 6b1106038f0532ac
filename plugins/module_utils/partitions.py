# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""MBR and GPT partition tables in pure Python: layout planning, byte-exact
writing and reading back (our own tables and those other tools write).

Private to vmhost.virt: other collections must not import this module.

Layout facts (UEFI 2.x chapter 5, and the reference image builder): 512-byte
logical sectors; the first partition starts at 1 MiB and every start is
aligned to 1 MiB; GPT keeps 128 entries of 128 bytes (LBA 2-33 and the last 33
sectors before the backup header at the last LBA); the protective MBR holds a
single 0xEE partition covering the disk.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import hashlib
import json
import struct
import uuid as uuidlib

from ansible_collections.vmhost.virt.plugins.module_utils.qemu_img import (
    ImageError,
    human_size,
    parse_size,
)
from ansible_collections.vmhost.virt.plugins.module_utils.filesystems import (
    FAT_TYPES,
    FS_TYPES,
    fat_uuid_string,
    fat_volume_id,
    normalize_uuid,
    validate_label,
    validate_uuid,
)

SECTOR = 512
MIB = 1024 * 1024
ALIGN = MIB
GPT_ENTRIES = 128
GPT_ENTRY_SIZE = 128
GPT_ENTRY_SECTORS = GPT_ENTRIES * GPT_ENTRY_SIZE // SECTOR  # 32
GPT_HEADER_SIZE = 92
GPT_SIGNATURE = b"EFI PART"
GPT_REVISION = 0x00010000
MBR_MAX_PRIMARY = 4
LABELS = ("gpt", "msdos")
FLAGS = ("boot", "esp", "bios_grub", "legacy_boot")

# GPT partition type GUIDs by name (UEFI spec; Discoverable Partitions Spec).
GPT_TYPES = {
    "linux": "0fc63daf-8483-4772-8e79-3d69d8477de4",
    "esp": "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
    "bios_boot": "21686148-6449-6e6f-744e-656564454649",
    "swap": "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f",
    "linux-root-x86-64": "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
    "linux-root-x86": "44479540-f297-41b2-9af7-d131d5f0458a",
    "linux-root-arm64": "b921b045-1df0-41c3-af44-4c6f280d3fae",
    "linux-usr-x86-64": "8484680c-9521-48c6-9c11-b0720656f69e",
    "linux-home": "933ac7e1-2eb4-4f13-b844-0e14e2aef915",
    "linux-srv": "3b8f8425-20e0-4f3b-907f-1a25a76f98e8",
    "linux-var": "4d21b016-b534-45c2-a9fb-5c16e091fd2d",
    "linux-var-tmp": "7ec6f557-3bc5-4aca-b293-16ef5df639d1",
    "linux-lvm": "e6d6d379-f507-44c2-a23c-238f2a3df928",
    "linux-raid": "a19d880f-05fc-4d3b-a006-743f0f84911e",
    "xbootldr": "bc13c2ff-59e6-4262-a352-b275fd6f7172",
    "microsoft-basic-data": "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7",
}
GPT_TYPE_NAMES = dict((v, k) for k, v in GPT_TYPES.items())

# MBR partition type bytes.
MBR_LINUX = 0x83
MBR_SWAP = 0x82
MBR_FAT12 = 0x01
MBR_FAT16_LBA = 0x0E
MBR_FAT32_LBA = 0x0C
MBR_ESP = 0xEF
MBR_GPT_PROTECTIVE = 0xEE
MBR_EXTENDED = (0x05, 0x0F, 0x85)

# GPT attribute bits.
ATTR_REQUIRED = 1 << 0
ATTR_LEGACY_BIOS_BOOTABLE = 1 << 2

# Namespace for GUIDs derived from the inputs (reproducible builds).
DERIVE_NAMESPACE = uuidlib.UUID("5b1d9a0e-6c8f-4d6a-9f3e-6a7669727420")


# ---------------------------------------------------------------------------
# small helpers
def crc32(data):
    return binascii.crc32(data) & 0xFFFFFFFF


def align_up(value, multiple=ALIGN):
    return -(-value // multiple) * multiple


def align_down(value, multiple=ALIGN):
    return value // multiple * multiple


def derive_guid(seed, role):
    """A GUID derived from ``seed`` (a string) and ``role`` (e.g. ``part-1``)."""
    return str(uuidlib.uuid5(DERIVE_NAMESPACE, "%s/%s" % (seed, role)))


def layout_seed(request):
    """Stable seed string from the request (JSON of the inputs that shape the image)."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str)
                          .encode("utf-8")).hexdigest()


def resolve_gpt_type(value):
    """GUID (lower case) for a GPT type name or GUID string."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in GPT_TYPES:
        return GPT_TYPES[text]
    try:
        return str(uuidlib.UUID(text))
    except ValueError:
        raise ImageError("GPT partition type %r is neither a known name (%s) nor a GUID"
                         % (value, ", ".join(sorted(GPT_TYPES))))


def resolve_mbr_type(value):
    """An MBR type byte from ``0x83``, ``83``, ``ef`` or an int."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip().lower()
        if text.startswith("0x"):
            text = text[2:]
        try:
            number = int(text, 16)
        except ValueError:
            raise ImageError("msdos partition type %r is not a hex byte such as 0x83" % (value,))
    if not 0 < number < 256 or number == MBR_GPT_PROTECTIVE or number in MBR_EXTENDED:
        raise ImageError("msdos partition type %r is not usable here (1-255, not 0xEE or "
                         "an extended partition type)" % (value,))
    return number


def gpt_type_name(guid):
    return GPT_TYPE_NAMES.get(guid, guid)


# ---------------------------------------------------------------------------
# planning
def plan(label, disk_size, partitions, disk_guid=None, seed=None, first_offset=MIB):
    """Validate a request and return the full layout (pure).

    ``partitions`` is a list of dicts with ``size`` (bytes, units, or
    ``rest``), optional ``start``, ``fs``, ``label``, ``uuid``, ``flags``,
    ``type``, ``name``, ``part_uuid``, ``contents``.  Missing GUIDs and
    file-system UUIDs are derived from ``seed`` when given, random otherwise
    (flagged ``derived``/``random`` so comparisons can ignore them).
    Raises :class:`ImageError` with a message naming the partition at fault.
    """
    if label not in LABELS:
        raise ImageError("label %r is not one of %s" % (label, ", ".join(LABELS)))
    disk_size = parse_size(disk_size)
    if disk_size % SECTOR:
        raise ImageError("disk size %d is not a multiple of %d bytes" % (disk_size, SECTOR))
    sectors = disk_size // SECTOR
    if label == "gpt":
        first_usable = 2 + GPT_ENTRY_SECTORS
        last_usable = sectors - 2 - GPT_ENTRY_SECTORS
    else:
        first_usable = 1
        last_usable = sectors - 1
    if last_usable < first_usable or disk_size < 2 * MIB:
        raise ImageError("a disk of %d bytes is too small for a %s table and a partition"
                         % (disk_size, label))
    if not isinstance(partitions, list):
        raise ImageError("partitions must be a list")
    if label == "msdos" and len(partitions) > MBR_MAX_PRIMARY:
        raise ImageError("an msdos table holds at most %d primary partitions; %d were asked "
                         "(use label gpt)" % (MBR_MAX_PRIMARY, len(partitions)))
    if label == "gpt" and len(partitions) > GPT_ENTRIES:
        raise ImageError("a GPT holds at most %d partitions" % GPT_ENTRIES)

    def rnd(role):
        return derive_guid(seed, role) if seed is not None else str(uuidlib.uuid4())

    result = []
    cursor = align_up(max(first_offset, first_usable * SECTOR))
    for index, part in enumerate(partitions, 1):
        where = "partition %d" % index
        if not isinstance(part, dict):
            raise ImageError("%s must be a dict" % where)
        fs = part.get("fs") or "none"
        if fs not in FS_TYPES:
            raise ImageError("%s: unknown fs %r; choose one of %s"
                             % (where, fs, ", ".join(FS_TYPES)))
        flags = list(part.get("flags") or [])
        for flag in flags:
            if flag not in FLAGS:
                raise ImageError("%s: unknown flag %r; choose from %s"
                                 % (where, flag, ", ".join(FLAGS)))
        if label == "msdos" and ("bios_grub" in flags or "legacy_boot" in flags):
            raise ImageError("%s: flags bios_grub and legacy_boot are GPT-only" % where)
        if part.get("label") is not None:
            try:
                validate_label(fs, part["label"])
            except ImageError as exc:
                raise ImageError("%s: %s" % (where, exc))
            if fs == "none":
                raise ImageError("%s: a file system label needs an fs" % where)
        fs_uuid = part.get("uuid")
        uuid_given = fs_uuid is not None
        if uuid_given:
            if fs == "none":
                raise ImageError("%s: a file system uuid needs an fs" % where)
            try:
                fs_uuid = validate_uuid(fs, fs_uuid)
            except ImageError as exc:
                raise ImageError("%s: %s" % (where, exc))
        elif fs != "none":
            fs_uuid = rnd("fs-%d" % index)
            if fs in FAT_TYPES:
                fs_uuid = fat_uuid_string(fat_volume_id(fs_uuid))
        name = part.get("name")
        if name is not None:
            if label == "msdos":
                raise ImageError("%s: a partition name needs label gpt" % where)
            if len(name.encode("utf-16-le")) > 72:
                raise ImageError("%s: GPT name %r is longer than 36 UTF-16 units" % (where, name))
        if part.get("contents") is not None and fs in ("none", "swap"):
            raise ImageError("%s: contents need an ext or FAT fs, not %s" % (where, fs))

        # type
        ptype = part.get("type")
        if label == "gpt":
            try:
                type_guid = resolve_gpt_type(ptype)
            except ImageError as exc:
                raise ImageError("%s: %s" % (where, exc))
            if type_guid is None:
                if "esp" in flags:
                    type_guid = GPT_TYPES["esp"]
                elif "bios_grub" in flags:
                    type_guid = GPT_TYPES["bios_boot"]
                elif fs == "swap":
                    type_guid = GPT_TYPES["swap"]
                else:
                    type_guid = GPT_TYPES["linux"]
            if "esp" in flags and type_guid != GPT_TYPES["esp"]:
                raise ImageError("%s: flag esp conflicts with type %s" % (where, ptype))
            if "bios_grub" in flags and type_guid != GPT_TYPES["bios_boot"]:
                raise ImageError("%s: flag bios_grub conflicts with type %s" % (where, ptype))
            # the type implies the flag (that is how a table reads back)
            if type_guid == GPT_TYPES["esp"]:
                flags.append("esp")
            if type_guid == GPT_TYPES["bios_boot"]:
                flags.append("bios_grub")
            part_uuid = part.get("part_uuid")
            part_uuid_given = part_uuid is not None
            part_uuid = normalize_uuid(part_uuid, "%s part_uuid" % where) if part_uuid_given \
                else rnd("part-%d" % index)
            attributes = ATTR_LEGACY_BIOS_BOOTABLE if (
                "boot" in flags or "legacy_boot" in flags) else 0
            ptype_value = type_guid
        else:
            if part.get("part_uuid") is not None:
                raise ImageError("%s: part_uuid needs label gpt" % where)
            part_uuid = part_uuid_given = None
            attributes = 0
            if ptype is not None:
                try:
                    ptype_value = resolve_mbr_type(ptype)
                except ImageError as exc:
                    raise ImageError("%s: %s" % (where, exc))
            elif "esp" in flags:
                ptype_value = MBR_ESP
            elif fs == "swap":
                ptype_value = MBR_SWAP
            elif fs in FAT_TYPES:
                ptype_value = MBR_FAT32_LBA
            else:
                ptype_value = MBR_LINUX
            if "esp" in flags and ptype_value != MBR_ESP:
                raise ImageError("%s: flag esp conflicts with type %s" % (where, ptype))
            if ptype_value == MBR_ESP:
                flags.append("esp")

        # geometry
        start = part.get("start")
        if start is not None:
            start = parse_size(start)
            if start % ALIGN:
                raise ImageError("%s: start %d is not aligned to 1 MiB" % (where, start))
            if start < cursor:
                raise ImageError("%s: start %s overlaps the previous partition or the table "
                                 "(first free byte is %d)" % (where, start, cursor))
        else:
            start = cursor
        size = part.get("size")
        if size is None:
            raise ImageError("%s: size is required (bytes, units such as 512MiB, or rest)"
                             % where)
        end_limit = (last_usable + 1) * SECTOR
        if size == "rest":
            if index != len(partitions):
                raise ImageError("%s: size rest is only allowed on the last partition" % where)
            size = align_down(end_limit - start)
            if size <= 0:
                raise ImageError("%s: no space left for size rest (disk %s)"
                                 % (where, human_size(disk_size)))
            rest = True
        else:
            try:
                size = parse_size(size)
            except ImageError as exc:
                raise ImageError("%s: %s" % (where, exc))
            if size <= 0:
                raise ImageError("%s: size must be positive" % where)
            size = align_up(size, SECTOR)
            rest = False
        if start + size > end_limit:
            raise ImageError("%s: ends at byte %d, beyond the last usable byte %d of the %s disk "
                             "(partitions larger than the disk)"
                             % (where, start + size, end_limit, human_size(disk_size)))
        if label == "msdos" and (start // SECTOR > 0xFFFFFFFF or size // SECTOR > 0xFFFFFFFF):
            raise ImageError("%s: beyond 2 TiB; msdos cannot address it, use gpt" % where)
        cursor = align_up(start + size)
        result.append({
            "number": index, "start": start, "size": size, "end": start + size - 1,
            "rest": rest, "fs": fs, "label": part.get("label"), "uuid": fs_uuid,
            "uuid_given": uuid_given, "flags": sorted(set(flags)), "type": ptype_value,
            "name": name, "part_uuid": part_uuid, "part_uuid_given": part_uuid_given,
            "attributes": attributes, "contents": part.get("contents"),
        })

    if label == "gpt":
        disk_guid_given = disk_guid is not None
        disk_id = normalize_uuid(disk_guid, "disk_guid") if disk_guid_given else rnd("disk")
    else:
        disk_guid_given = disk_guid is not None
        source = disk_guid if disk_guid_given else rnd("disk")
        text = str(source).strip().lower()
        if text.startswith("0x"):
            text = text[2:].rjust(8, "0")
        try:
            disk_id = "0x%08x" % fat_volume_id(text)
        except ImageError:
            raise ImageError("disk_guid %r is neither a GUID nor a 32-bit msdos disk id "
                             "(0x1234abcd)" % (disk_guid,))
    return {"label": label, "size": disk_size, "sectors": sectors, "id": disk_id,
            "id_given": disk_guid_given, "first_usable": first_usable,
            "last_usable": last_usable, "partitions": result}


# ---------------------------------------------------------------------------
# writing
def _chs(lba):
    """CHS triple bytes for an LBA with 255 heads and 63 sectors per track."""
    heads, spt = 255, 63
    cylinder = lba // (heads * spt)
    if cylinder > 1023:
        return b"\xfe\xff\xff"
    head = (lba // spt) % heads
    sector = lba % spt + 1
    return struct.pack("<BBB", head, ((cylinder >> 2) & 0xC0) | sector, cylinder & 0xFF)


def _mbr_entry(status, ptype, first_lba, count):
    if count == 0:
        return b"\0" * 16
    return (struct.pack("<B", status) + _chs(first_lba) + struct.pack("<B", ptype)
            + _chs(first_lba + count - 1) + struct.pack("<II", first_lba, count))


def mbr_bytes(layout):
    """The 512-byte MBR (sector 0) of ``layout``: partition table or protective MBR."""
    entries = []
    if layout["label"] == "gpt":
        count = min(layout["sectors"] - 1, 0xFFFFFFFF)
        entries.append(_mbr_entry(0, MBR_GPT_PROTECTIVE, 1, count))
        signature = 0
    else:
        for part in layout["partitions"]:
            status = 0x80 if "boot" in part["flags"] else 0
            entries.append(_mbr_entry(status, part["type"], part["start"] // SECTOR,
                                      part["size"] // SECTOR))
        signature = int(layout["id"], 16)
    while len(entries) < 4:
        entries.append(b"\0" * 16)
    return (b"\0" * 440 + struct.pack("<I", signature) + b"\0\0" + b"".join(entries)
            + b"\x55\xaa")


def gpt_entries_bytes(layout):
    out = []
    for part in layout["partitions"]:
        name = (part.get("name") or "").encode("utf-16-le")
        out.append(uuidlib.UUID(part["type"]).bytes_le
                   + uuidlib.UUID(part["part_uuid"]).bytes_le
                   + struct.pack("<QQQ", part["start"] // SECTOR,
                                 (part["start"] + part["size"]) // SECTOR - 1,
                                 part["attributes"])
                   + name.ljust(72, b"\0"))
    data = b"".join(out)
    return data.ljust(GPT_ENTRIES * GPT_ENTRY_SIZE, b"\0")


def gpt_header_bytes(layout, entries_crc, backup=False):
    last = layout["sectors"] - 1
    my_lba, alt_lba = (last, 1) if backup else (1, last)
    entries_lba = last - GPT_ENTRY_SECTORS if backup else 2
    fields = [GPT_SIGNATURE, GPT_REVISION, GPT_HEADER_SIZE, 0, 0, my_lba, alt_lba,
              layout["first_usable"], layout["last_usable"],
              uuidlib.UUID(layout["id"]).bytes_le, entries_lba, GPT_ENTRIES, GPT_ENTRY_SIZE,
              entries_crc]
    fmt = "<8sIIIIQQQQ16sQIII"
    header = struct.pack(fmt, *fields)
    fields[3] = crc32(header)
    return struct.pack(fmt, *fields).ljust(SECTOR, b"\0")


def table_writes(layout):
    """``[(offset, bytes), ...]`` that write ``layout``'s table(s) (pure)."""
    writes = [(0, mbr_bytes(layout))]
    if layout["label"] == "gpt":
        entries = gpt_entries_bytes(layout)
        ecrc = crc32(entries)
        last = layout["sectors"] - 1
        writes.append((SECTOR, gpt_header_bytes(layout, ecrc) + entries))
        writes.append(((last - GPT_ENTRY_SECTORS) * SECTOR, entries
                       + gpt_header_bytes(layout, ecrc, backup=True)))
    return writes


def write_table(handle, layout):
    """Write ``layout``'s table(s) to the open binary file ``handle``."""
    for offset, data in table_writes(layout):
        handle.seek(offset)
        handle.write(data)


# ---------------------------------------------------------------------------
# reading
def _parse_mbr(sector):
    if len(sector) < SECTOR or sector[510:512] != b"\x55\xaa":
        return None
    parts = []
    for i in range(4):
        raw = sector[446 + 16 * i:446 + 16 * (i + 1)]
        status, ptype = raw[0], raw[4]
        first, count = struct.unpack("<II", raw[8:16])
        if ptype == 0 or count == 0:
            continue
        parts.append({"slot": i + 1, "status": status, "type": ptype, "first": first,
                      "count": count})
    return {"signature": struct.unpack("<I", sector[440:444])[0], "entries": parts}


def _parse_gpt_header(data):
    if data[:8] != GPT_SIGNATURE:
        return None
    (sig, rev, hsize, hcrc, _res, my_lba, alt_lba, first, last, guid, entries_lba,
     count, esize, ecrc) = struct.unpack("<8sIIIIQQQQ16sQIII", data[:GPT_HEADER_SIZE])
    if hsize < GPT_HEADER_SIZE or hsize > SECTOR:
        return None
    check = bytearray(data[:hsize])
    check[16:20] = b"\0\0\0\0"
    if crc32(bytes(check)) != hcrc:
        return None
    return {"my_lba": my_lba, "alt_lba": alt_lba, "first_usable": first, "last_usable": last,
            "guid": str(uuidlib.UUID(bytes_le=guid)), "entries_lba": entries_lba,
            "count": count, "entry_size": esize, "entries_crc": ecrc}


# A hostile image must not make read_table loop or allocate without bound.
MAX_GPT_ENTRIES = 16384
MAX_GPT_ENTRY_SIZE = 4096
MAX_GPT_ARRAY = 4 * 1024 * 1024


def check_gpt_bounds(header, sectors):
    """Raise :class:`ImageError` unless the GPT header's entry array is plausible."""
    size, count, lba = header["entry_size"], header["count"], header["entries_lba"]
    if size < GPT_ENTRY_SIZE or size > MAX_GPT_ENTRY_SIZE or size % GPT_ENTRY_SIZE:
        raise ImageError("GPT entry size %d is invalid (a multiple of %d up to %d)"
                         % (size, GPT_ENTRY_SIZE, MAX_GPT_ENTRY_SIZE))
    if count > MAX_GPT_ENTRIES or count * size > MAX_GPT_ARRAY:
        raise ImageError("GPT header claims %d entries of %d bytes; at most %d entries and %d "
                         "bytes are read" % (count, size, MAX_GPT_ENTRIES, MAX_GPT_ARRAY))
    if lba < 1 or lba >= max(sectors, 1):
        raise ImageError("GPT entry array at sector %d is outside the image's %d sectors"
                         % (lba, sectors))


def read_table(handle, size=None):
    """Read the partition table of the open binary file ``handle``.

    Returns ``None`` when there is none, else a dict like :func:`plan`'s
    result with ``label``, ``size``, ``id``, ``partitions`` (``number``,
    ``start``, ``size``, ``type``, ``flags``, ``name``, ``part_uuid``,
    ``attributes``) and ``problems`` (list of strings: bad backup header, CRC
    mismatch...).  Raises :class:`ImageError` for a GPT whose primary and
    backup headers are both unreadable.
    """
    if size is None:
        handle.seek(0, 2)
        size = handle.tell()
    handle.seek(0)
    first = handle.read(SECTOR * 2)
    mbr = _parse_mbr(first[:SECTOR])
    if mbr is None:
        return None
    sectors = size // SECTOR
    problems = []
    if any(e["type"] == MBR_GPT_PROTECTIVE for e in mbr["entries"]):
        header = _parse_gpt_header(first[SECTOR:SECTOR * 2])
        backup = None
        if sectors:
            handle.seek((sectors - 1) * SECTOR)
            backup = _parse_gpt_header(handle.read(SECTOR))
        if header is None and backup is None:
            raise ImageError("protective MBR found but neither GPT header is valid")
        if header is None:
            problems.append("primary GPT header is invalid")
            header = backup
        elif backup is None:
            problems.append("backup GPT header is missing or invalid")
        elif backup["my_lba"] != sectors - 1:
            problems.append("backup GPT header is not at the last sector")
        check_gpt_bounds(header, sectors)
        handle.seek(header["entries_lba"] * SECTOR)
        raw = handle.read(header["count"] * header["entry_size"])
        if crc32(raw) != header["entries_crc"]:
            problems.append("GPT partition entries CRC mismatch")
        parts = []
        for i in range(min(header["count"], len(raw) // header["entry_size"])):
            entry = raw[i * header["entry_size"]:i * header["entry_size"] + GPT_ENTRY_SIZE]
            if len(entry) < GPT_ENTRY_SIZE or entry[:16] == b"\0" * 16:
                continue
            first_lba, last_lba, attrs = struct.unpack("<QQQ", entry[32:56])
            if first_lba > last_lba or last_lba >= sectors:
                raise ImageError("GPT entry %d spans sectors %d-%d, outside the image's %d "
                                 "sectors" % (i + 1, first_lba, last_lba, sectors))
            name = entry[56:128].decode("utf-16-le", "replace").split("\0", 1)[0]
            type_guid = str(uuidlib.UUID(bytes_le=entry[:16]))
            flags = []
            if attrs & ATTR_LEGACY_BIOS_BOOTABLE:
                flags.append("legacy_boot")
            if type_guid == GPT_TYPES["esp"]:
                flags.append("esp")
            if type_guid == GPT_TYPES["bios_boot"]:
                flags.append("bios_grub")
            parts.append({"number": i + 1, "start": first_lba * SECTOR,
                          "size": (last_lba - first_lba + 1) * SECTOR,
                          "end": (last_lba + 1) * SECTOR - 1,
                          "type": type_guid, "part_uuid": str(uuidlib.UUID(bytes_le=entry[16:32])),
                          "attributes": attrs, "name": name or None, "flags": sorted(flags)})
        return {"label": "gpt", "size": size, "sectors": sectors, "id": header["guid"],
                "first_usable": header["first_usable"], "last_usable": header["last_usable"],
                "partitions": parts, "problems": problems}
    parts = []
    for entry in mbr["entries"]:
        flags = []
        if entry["status"] & 0x80:
            flags.append("boot")
        if entry["type"] == MBR_ESP:
            flags.append("esp")
        parts.append({"number": entry["slot"], "start": entry["first"] * SECTOR,
                      "size": entry["count"] * SECTOR,
                      "end": (entry["first"] + entry["count"]) * SECTOR - 1,
                      "type": entry["type"], "part_uuid": None, "attributes": 0, "name": None,
                      "flags": sorted(flags)})
        if entry["type"] in MBR_EXTENDED:
            problems.append("partition %d is an extended partition; logical partitions "
                            "are not read" % entry["slot"])
    return {"label": "msdos", "size": size, "sectors": sectors,
            "id": "0x%08x" % mbr["signature"], "partitions": parts, "problems": problems}


# ---------------------------------------------------------------------------
# file-system signatures (to compare an existing image without mounting it)
def probe_filesystem(handle, offset):
    """Identify the file system at byte ``offset``: dict ``fs``, ``uuid``,
    ``label`` or None.  Knows ext2/3/4, FAT12/16/32 and swap."""
    handle.seek(offset)
    head = handle.read(4096 + 1024)
    if len(head) >= 2048 and head[1024 + 56:1024 + 58] == b"\x53\xef":
        sb = head[1024:2048]
        compat, incompat = struct.unpack("<II", sb[0x5C:0x64])
        if incompat & (0x40 | 0x80 | 0x200):
            fs = "ext4"
        elif compat & 0x4:
            fs = "ext3"
        else:
            fs = "ext2"
        label = sb[0x78:0x88].split(b"\0", 1)[0].decode("utf-8", "replace")
        return {"fs": fs, "uuid": str(uuidlib.UUID(bytes=sb[0x68:0x78])), "label": label or None}
    if len(head) >= 4096 and head[4096 - 10:4096] == b"SWAPSPACE2":
        label = head[0x41C:0x42C].split(b"\0", 1)[0].decode("utf-8", "replace")
        return {"fs": "swap", "uuid": str(uuidlib.UUID(bytes=head[0x40C:0x41C])),
                "label": label or None}
    if len(head) >= 512 and head[510:512] == b"\x55\xaa":
        if head[0x52:0x5A] == b"FAT32   ":
            vid, lab = 0x43, 0x47
            fs = "fat32"
        elif head[0x36:0x3E] in (b"FAT16   ", b"FAT12   ", b"FAT     "):
            vid, lab = 0x27, 0x2B
            fs = "fat16" if head[0x36:0x3E] == b"FAT16   " else "fat12"
        else:
            return None
        label = head[lab:lab + 11].decode("ascii", "replace").rstrip()
        if label == "NO NAME":
            label = ""
        return {"fs": fs, "uuid": fat_uuid_string(struct.unpack("<I", head[vid:vid + 4])[0]),
                "label": label or None}
    return None


# ---------------------------------------------------------------------------
# comparing and presenting
def type_text(label, value):
    if label == "gpt":
        return gpt_type_name(value)
    return "0x%02x" % value


def flags_for_compare(label, part):
    flags = set(part["flags"])
    if label == "gpt" and "boot" in flags:
        flags.discard("boot")
        flags.add("legacy_boot")
    return sorted(flags)


def summary(layout):
    """Human-oriented view of a layout (for diff and results)."""
    parts = []
    for p in layout["partitions"]:
        item = {"number": p["number"], "start": p["start"], "size": p["size"],
                "type": type_text(layout["label"], p["type"]),
                "flags": flags_for_compare(layout["label"], p)}
        for key in ("name", "part_uuid", "fs", "label", "uuid"):
            if p.get(key) is not None:
                item[key] = p[key]
        parts.append(item)
    return {"label": layout["label"], "size": layout["size"], "id": layout["id"],
            "partitions": parts}


def _fs_equal(fs_a, fs_b):
    if fs_a == fs_b:
        return True
    fat = set(FAT_TYPES)
    return fs_a in fat and fs_b in fat and "vfat" in (fs_a, fs_b)


def differences(wanted, existing):
    """List of readable differences between a planned layout and one read back
    (with ``fs``/``uuid``/``label`` probed).  Values that were not asked for
    (random or derived GUIDs) are not compared unless given explicitly."""
    if existing is None:
        return ["no partition table"]
    diffs = []
    if wanted["label"] != existing["label"]:
        return ["table is %s, wanted %s" % (existing["label"], wanted["label"])]
    if wanted["size"] != existing["size"]:
        diffs.append("disk size is %d, wanted %d" % (existing["size"], wanted["size"]))
    if wanted["id_given"] and wanted["id"] != existing["id"]:
        diffs.append("disk id is %s, wanted %s" % (existing["id"], wanted["id"]))
    if len(wanted["partitions"]) != len(existing["partitions"]):
        diffs.append("%d partitions, wanted %d" % (len(existing["partitions"]),
                                                   len(wanted["partitions"])))
        return diffs
    for w, e in zip(wanted["partitions"], existing["partitions"]):
        n = w["number"]
        for key in ("start", "size", "type", "name"):
            if w.get(key) != e.get(key):
                diffs.append("partition %d %s is %r, wanted %r" % (n, key, e.get(key), w.get(key)))
        if flags_for_compare(wanted["label"], w) != flags_for_compare(wanted["label"], e):
            diffs.append("partition %d flags are %s, wanted %s"
                         % (n, e["flags"], flags_for_compare(wanted["label"], w)))
        if w.get("part_uuid_given") and w["part_uuid"] != e.get("part_uuid"):
            diffs.append("partition %d part_uuid is %s, wanted %s" % (n, e.get("part_uuid"),
                                                                      w["part_uuid"]))
        if w["fs"] not in ("none",):
            if not e.get("fs"):
                diffs.append("partition %d has no %s file system" % (n, w["fs"]))
                continue
            if not _fs_equal(w["fs"], e["fs"]):
                diffs.append("partition %d fs is %s, wanted %s" % (n, e["fs"], w["fs"]))
            if (w.get("label") or None) != e.get("label"):
                diffs.append("partition %d label is %r, wanted %r" % (n, e.get("label"),
                                                                      w.get("label")))
            if w.get("uuid_given") and w["uuid"].lower() != (e.get("uuid") or "").lower():
                diffs.append("partition %d uuid is %s, wanted %s" % (n, e.get("uuid"), w["uuid"]))
    return diffs


def estimate(tree_bytes, overhead=1.25, minimum=MIB):
    """Partition size for contents of ``tree_bytes``: +25% (like the
    reference), rounded up to 1 MiB."""
    return align_up(max(int(round(tree_bytes * overhead)), minimum))
