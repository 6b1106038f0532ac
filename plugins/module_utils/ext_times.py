# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Set the inode times of a freshly made ext2/3/4 file system to a fixed epoch, in one pass.

Private to vmhost.virt: other collections must not import this module.

``mkfs.ext4 -d`` copies each file's atime and ctime from the tree (which every read or
``chmod`` moves) and its mtime; a reproducible image needs them fixed.  :func:`clamp_inode_times`
reads the inode tables straight from the image and sets, for the root directory and every
inode in use from the first non-reserved one on:

* ``atime``, ``ctime`` and (where the inode has room) ``crtime`` to ``epoch``;
* ``mtime`` to ``min(mtime, epoch)``;

each with zero nanoseconds, the way ``debugfs sif`` sets them (the tests compare the bytes
with a ``debugfs`` run).  With ``metadata_csum`` the inode checksum is updated without
reading the inode again: CRC-32C is linear, so the change of the checksum is the CRC of the
changed bytes alone, taken from tables built once per inode size (:func:`_delta_tables`).
Only inode table blocks are written; block and inode bitmaps, group descriptors and the
superblock stay as mkfs wrote them.

Pure Python, no ext2fs library: a 20 000-inode tree takes a few hundredths of a second
where a ``debugfs`` script of ``sif`` commands took a second.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import struct

_CRC32C_POLY = 0x82F63B78      # Castagnoli, reflected
_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _k in range(8):
        _c = (_c >> 1) ^ _CRC32C_POLY if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)
del _n, _c, _k

EXT_MAGIC = 0xEF53
SUPERBLOCK = 1024
GOOD_OLD_INODE_SIZE = 128
ROOT_INO = 2

INCOMPAT_META_BG = 0x10
INCOMPAT_64BIT = 0x80
INCOMPAT_CSUM_SEED = 0x2000
RO_COMPAT_GDT_CSUM = 0x10
RO_COMPAT_METADATA_CSUM = 0x400
BG_INODE_UNINIT = 0x1

# (seconds field, extra field): offsets in the inode
ATIME = (0x08, 0x8C)
CTIME = (0x0C, 0x84)
MTIME = (0x10, 0x88)
CRTIME = (0x90, 0x94)
CSUM_LO = 0x7C      # l_i_checksum_lo (16 bits)
CSUM_HI = 0x82      # i_checksum_hi (16 bits, when i_extra_isize reaches it)
EXTRA_ISIZE = 0x80


class ExtTimesError(Exception):
    """The image is not an ext file system this pass can rewrite; the message says why."""


def crc32c(data, crc=0xFFFFFFFF):
    """Raw CRC-32C update as ext4 uses it (no final inversion); pure Python, for checks."""
    table = _CRC_TABLE
    for byte in bytearray(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


_DELTA_CACHE = {}


def _delta_tables(inode_size):
    """``{offset: [crc of byte v at offset, zeros after it up to inode_size]}`` for the bytes
    of the time fields: the CRC change a byte change ``v`` at ``offset`` causes."""
    if inode_size in _DELTA_CACHE:
        return _DELTA_CACHE[inode_size]
    wanted = set()
    for seconds, extra in (ATIME, CTIME, MTIME, CRTIME):
        for field in (seconds, extra):
            if field + 4 <= inode_size:
                wanted.update(range(field, field + 4))
    table = _CRC_TABLE
    tables = {}
    cur = list(table)            # crc(0, byte v) at the last offset, then shifted by zero bytes
    for offset in range(inode_size - 1, min(wanted) - 1, -1):
        if offset in wanted:
            tables[offset] = cur
        cur = [table[c & 0xFF] ^ (c >> 8) for c in cur]
    _DELTA_CACHE[inode_size] = tables
    return tables


def _encode_time(seconds):
    """(32-bit seconds field, extra field) of ``seconds`` with zero nanoseconds."""
    low = seconds & 0xFFFFFFFF
    signed = low - (1 << 32) if low & 0x80000000 else low
    return low, ((seconds - signed) >> 32) & 0x3


def _decode_time(low, extra):
    signed = low - (1 << 32) if low & 0x80000000 else low
    if extra is None:
        return signed
    return signed + ((extra & 0x3) << 32)


class _Layout(object):
    """What the superblock says about where the inodes are."""

    def __init__(self, sb):
        if len(sb) < 1024 or struct.unpack_from("<H", sb, 0x38)[0] != EXT_MAGIC:
            raise ExtTimesError("no ext2/3/4 superblock (magic 0xEF53) at the expected place")
        (self.inodes_count, blocks_lo, _reserved, _free_blocks, _free_inodes, self.first_data_block,
         log_block_size, _log_cluster, self.blocks_per_group, _clusters, self.inodes_per_group) = \
            struct.unpack_from("<11I", sb, 0)
        rev_level = struct.unpack_from("<I", sb, 0x4C)[0]
        if rev_level >= 1:
            self.first_ino, self.inode_size = struct.unpack_from("<IH", sb, 0x54)
        else:
            self.first_ino, self.inode_size = 11, GOOD_OLD_INODE_SIZE
        self.incompat, self.ro_compat = struct.unpack_from("<I", sb, 0x60)[0], struct.unpack_from("<I", sb, 0x64)[0]
        if log_block_size > 6:
            raise ExtTimesError("implausible block size (2^%d KiB)" % log_block_size)
        self.block_size = 1024 << log_block_size
        self.desc_size = 32
        if self.incompat & INCOMPAT_64BIT:
            self.desc_size = struct.unpack_from("<H", sb, 0xFE)[0]
            blocks_hi = struct.unpack_from("<I", sb, 0x150)[0]
        else:
            blocks_hi = 0
        self.blocks_count = blocks_lo | (blocks_hi << 32)
        if (self.inode_size < GOOD_OLD_INODE_SIZE or self.inode_size > self.block_size
                or self.inode_size & (self.inode_size - 1)):
            raise ExtTimesError("implausible inode size %d" % self.inode_size)
        if self.desc_size < 32 or self.desc_size > 1024 or self.desc_size & (self.desc_size - 1):
            raise ExtTimesError("implausible group descriptor size %d" % self.desc_size)
        if not self.inodes_per_group or not self.blocks_per_group or self.inodes_count % self.inodes_per_group:
            raise ExtTimesError("implausible inodes per group (%d of %d)"
                                % (self.inodes_per_group, self.inodes_count))
        if self.incompat & INCOMPAT_META_BG:
            raise ExtTimesError("the meta_bg layout is not supported for reproducible times")
        self.groups = self.inodes_count // self.inodes_per_group
        self.csum = bool(self.ro_compat & RO_COMPAT_METADATA_CSUM)
        self.uninit = bool(self.ro_compat & (RO_COMPAT_METADATA_CSUM | RO_COMPAT_GDT_CSUM))
        if self.csum:
            if self.incompat & INCOMPAT_CSUM_SEED:
                self.csum_seed = struct.unpack_from("<I", sb, 0x270)[0]
            else:
                self.csum_seed = crc32c(sb[0x68:0x78])

    def groups_used(self, table):
        """[(first inode, inodes in use at most, byte offset of its inode table)] per group."""
        out = []
        for group in range(self.groups):
            desc = table[group * self.desc_size:(group + 1) * self.desc_size]
            itable = struct.unpack_from("<I", desc, 0x08)[0]
            flags = struct.unpack_from("<H", desc, 0x12)[0]
            unused = struct.unpack_from("<H", desc, 0x1C)[0]
            if self.desc_size >= 64:
                itable |= struct.unpack_from("<I", desc, 0x28)[0] << 32
                unused |= struct.unpack_from("<H", desc, 0x32)[0] << 16
            count = self.inodes_per_group
            if self.uninit:
                if flags & BG_INODE_UNINIT:
                    continue
                count -= min(unused, count)
            if not itable or itable >= self.blocks_count:
                raise ExtTimesError("group %d names inode table block %d, outside the file system"
                                    % (group, itable))
            if count:
                out.append((group * self.inodes_per_group + 1, count, itable * self.block_size))
        return out


def _extra_end(buf, base, inode_size):
    """Where the fields of the inode at ``buf[base:]`` end: 128 plus its ``i_extra_isize``."""
    if inode_size <= GOOD_OLD_INODE_SIZE:
        return GOOD_OLD_INODE_SIZE
    return GOOD_OLD_INODE_SIZE + struct.unpack_from("<H", buf, base + EXTRA_ISIZE)[0]


def _clamp_one(buf, base, inode_size, epoch, all_fields, deltas):
    """Set the times of the inode at ``buf[base:base + inode_size]`` and, with ``deltas``
    (``metadata_csum``), its checksum; whether anything changed."""
    extra_end = _extra_end(buf, base, inode_size)
    fields = [ATIME, CTIME, MTIME, CRTIME] if all_fields else [ATIME, CTIME, CRTIME]
    if not all_fields:
        low = struct.unpack_from("<I", buf, base + MTIME[0])[0]
        extra = struct.unpack_from("<I", buf, base + MTIME[1])[0] if MTIME[1] + 4 <= extra_end else None
        if _decode_time(low, extra) > epoch:
            fields.append(MTIME)
    low_new, extra_bits = _encode_time(epoch)
    delta = 0
    changed = False
    for seconds, extra in fields:
        if seconds + 4 > extra_end:
            continue        # crtime: no room in this inode
        writes = [(seconds, low_new)]
        if extra + 4 <= extra_end:
            writes.append((extra, extra_bits))   # the epoch bits; nanoseconds 0
        for offset, value in writes:
            old = buf[base + offset:base + offset + 4]
            new = struct.pack("<I", value)
            if old == new:
                continue
            changed = True
            if deltas is not None:
                for i in range(4):
                    diff = old[i] ^ new[i]
                    if diff:
                        delta ^= deltas[offset + i][diff]
            buf[base + offset:base + offset + 4] = new
    if changed and deltas is not None:
        # the stored checksum is the CRC's low 16 bits, and its high 16 where the inode has room
        stored = struct.unpack_from("<H", buf, base + CSUM_LO)[0]
        if extra_end >= CSUM_HI + 2:
            stored |= struct.unpack_from("<H", buf, base + CSUM_HI)[0] << 16
            struct.pack_into("<H", buf, base + CSUM_HI, (stored ^ delta) >> 16)
        struct.pack_into("<H", buf, base + CSUM_LO, (stored ^ delta) & 0xFFFF)
    return changed


def clamp_inode_times(path, epoch, offset=0):
    """Clamp the inode times of the ext file system at byte ``offset`` of ``path`` (a file or a
    block device) to ``epoch`` (see the module); returns the number of inodes changed."""
    epoch = int(epoch)
    if epoch < 0 or epoch >= (1 << 34) - (1 << 31):      # signed 32 bits + 2 epoch bits: year 2446
        raise ExtTimesError("epoch %d cannot be stored in an ext inode" % epoch)
    fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    try:
        sb = os.pread(fd, 1024, offset + SUPERBLOCK)
        layout = _Layout(sb)
        gdt_block = layout.first_data_block + 1
        table = os.pread(fd, layout.groups * layout.desc_size, offset + gdt_block * layout.block_size)
        if len(table) < layout.groups * layout.desc_size:
            raise ExtTimesError("the group descriptor table is cut short")
        size = layout.inode_size
        deltas = _delta_tables(size) if layout.csum else None
        changed = 0
        for first, count, where in layout.groups_used(table):
            buf = bytearray(os.pread(fd, count * size, offset + where))
            if len(buf) < count * size:
                raise ExtTimesError("an inode table is cut short")
            dirty = False
            for index in range(count):
                ino = first + index
                if ino != ROOT_INO and ino < layout.first_ino:
                    continue
                base = index * size
                if not struct.unpack_from("<H", buf, base)[0]:      # i_mode 0: not in use
                    continue
                if _clamp_one(buf, base, size, epoch, ino == ROOT_INO, deltas):
                    changed += 1
                    dirty = True
            if dirty:
                os.pwrite(fd, bytes(buf), offset + where)
        return changed
    finally:
        os.close(fd)


def inode_checksum(inode, ino, seed):
    """The metadata_csum checksum of ``inode`` (its bytes) number ``ino``: full CRC-32C, for
    checks (pure Python, slow)."""
    data = bytearray(inode)
    gen = bytes(data[0x64:0x68])
    data[CSUM_LO:CSUM_LO + 2] = b"\0\0"
    if _extra_end(data, 0, len(data)) >= CSUM_HI + 2:
        data[CSUM_HI:CSUM_HI + 2] = b"\0\0"
    crc = crc32c(struct.pack("<I", ino), seed)
    crc = crc32c(gen, crc)
    return crc32c(bytes(data), crc)
