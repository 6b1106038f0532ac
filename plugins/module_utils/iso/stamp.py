# -*- coding: utf-8 -*-
# Copyright (c) vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every node date of a written image set to one instant, in the image's own bytes.

Private to vmhost.virt: other collections must not import this module.

A reproducible image gives every file and directory the same dates (the epoch).  xorriso can do
that itself (``-alter_date_r`` then ``-find -exec set_to_mtime``), but it looks every node up
by its path: about 9 microseconds a node, 0.6 s for 65 000 files, spent before it writes the
first byte.  An ISO 9660 image keeps node dates in two places only:

- the recording date of every directory record (7 bytes at offset 18), in the ECMA-119 tree
  and in the Joliet tree, including the root records inside the volume descriptors;
- the times of the Rock Ridge ``TF`` entries in the system use area of the ECMA-119 records
  and in their continuation areas (``CE``).

:func:`stamp_dates` walks both trees from the volume descriptors and writes the epoch into
those fields, so the image is byte for byte the one xorriso's date pass gives (the tests build
both).  It reads the image from its start through :class:`ImageStart` as far as the directory
trees reach: xorriso writes them before any file data, so the walk needs the first few MiB of
a new image while xorriso is still writing the rest, and the caller hashes the stamped start
and goes on from there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct
import time

from ansible_collections.vmhost.virt.plugins.module_utils.iso.names import IsoError, timestring

SECTOR = 2048
FIRST_DESCRIPTOR = 16
MAX_DESCRIPTORS = 64        # ISO 9660 gives no limit; xorriso writes 3 to 5
JOLIET_ESCAPES = (b"%/@", b"%/C", b"%/E")
DIR_FLAG = 0x02
TF_LONG_FORM = 0x80


def record_date(epoch):
    """The 7-byte ISO 9660 date (years since 1900 ... seconds, GMT offset 0) of ``epoch``.
    Out of its range (1900 to 2155) it is clamped, as libisofs does."""
    tm = time.gmtime(epoch)
    year = tm.tm_year - 1900
    if year < 0:
        return bytes([0, 1, 1, 0, 0, 0, 0])
    if year > 255:
        return bytes([255, 12, 31, 23, 59, 59, 0])
    return bytes([year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, 0])


def long_date(epoch):
    """The 17-byte ISO 9660 date (the volume date digits of :func:`.names.timestring`, GMT
    offset 0) of ``epoch``."""
    return timestring(epoch).encode("ascii") + b"\x00"


class ImageStart(object):
    """The start of an image, read as far as it is needed.

    ``more()`` returns the next bytes of the image (any amount, in order), ``b""`` once it has
    ended.  ``data`` holds every byte read so far; the stamper changes them in place and notes
    the sectors it touched (:meth:`touched`), which :meth:`changed_runs` gives back to a caller
    that must also write them to the image's file."""

    def __init__(self, more):
        self.more = more
        self.data = bytearray()
        self.sectors = set()

    def need(self, end, what):
        while len(self.data) < end:
            chunk = self.more()
            if not chunk:
                raise IsoError("the image ends at byte %d, inside %s (up to byte %d): it is not a "
                               "complete ISO 9660 image" % (len(self.data), what, end))
            self.data += chunk

    def touched(self, start, end):
        """Note that bytes [start, end) may change (they are written back whole)."""
        self.sectors.update(range(start // SECTOR, (end - 1) // SECTOR + 1))

    def changed_runs(self):
        """(offset, bytes) of the changed sectors, neighbours joined: what to write back."""
        run = None
        for sector in sorted(self.sectors):
            if run is not None and sector == run[1]:
                run[1] += 1
                continue
            if run is not None:
                yield self._span(run)
            run = [sector, sector + 1]
        if run is not None:
            yield self._span(run)

    def _span(self, run):
        start, end = run[0] * SECTOR, min(run[1] * SECTOR, len(self.data))
        return start, bytes(self.data[start:end])


def stamp_dates(image, epoch):
    """Set every node date of the ISO 9660 image read through ``image`` (an
    :class:`ImageStart`) to ``epoch``; return how many directory records and continuation
    areas it stamped, ``(records, areas)``.

    Raises IsoError when the bytes are not the image this expects (no volume descriptors, a
    record or entry running past its sector or area, a loop in the tree)."""
    walker = _Walker(image, epoch)
    for offset, susp in walker.roots():
        walker.record(offset, susp, "the root directory record", root=True)
    walker.run()
    return walker.records, walker.areas_done


class _Walker(object):

    def __init__(self, image, epoch):
        self.image = image
        self.date7 = record_date(epoch)
        self.date17 = long_date(epoch)
        self.pending = []           # (offset, length, susp) of directory extents still to read
        self.areas = []             # (offset, length) of continuation areas still to read
        self.seen = set()
        self.records = 0
        self.areas_done = 0

    def roots(self):
        """Offsets of the root directory records: the primary descriptor's (Rock Ridge lives in
        its tree) and every Joliet descriptor's."""
        out = []
        for n in range(FIRST_DESCRIPTOR, FIRST_DESCRIPTOR + MAX_DESCRIPTORS):
            start = n * SECTOR
            self.image.need(start + SECTOR, "the volume descriptors")
            desc = self.image.data[start:start + SECTOR]
            if desc[1:6] != b"CD001":
                raise IsoError("sector %d is not an ISO 9660 volume descriptor" % n)
            kind = desc[0]
            if kind == 255:
                if not out:
                    raise IsoError("the image has no primary volume descriptor")
                return out
            if kind == 1:
                out.append((start + 156, True))
            elif kind == 2 and desc[88:91] in JOLIET_ESCAPES:
                out.append((start + 156, False))
            elif kind == 2:
                raise IsoError("the image has a supplementary volume descriptor that is not Joliet (sector %d)" % n)
        raise IsoError("no volume descriptor set terminator in the first %d descriptors" % MAX_DESCRIPTORS)

    def run(self):
        image = self.image
        while self.pending or self.areas:
            if self.areas:
                offset, length = self.areas.pop()
                image.need(offset + length, "a continuation area")
                image.touched(offset, offset + length)
                self.susp(offset, offset + length)
                self.areas_done += 1
                continue
            start, length, susp = self.pending.pop()
            image.need(start + length, "a directory")
            image.touched(start, start + length)
            data = image.data
            for sector in range(start, start + length, SECTOR):
                pos, end = sector, min(sector + SECTOR, start + length)
                while pos < end and data[pos]:
                    pos += self.record(pos, susp, "a directory", limit=end)

    def record(self, pos, susp, what, limit=None, root=False):
        """Stamp the directory record at ``pos``; queue the directory and continuation areas it
        points to; return its length.  (The caller notes the sectors it touches.)"""
        data = self.image.data
        if limit is None:
            self.image.need(pos + 34, what)
        length, name_len = data[pos], data[pos + 32]
        end = pos + length
        if length < 34 or 33 + name_len > length or (limit is not None and end > limit):
            raise IsoError("malformed directory record at byte %d of the image" % pos)
        if limit is None:
            self.image.need(end, what)
            self.image.touched(pos, end)
        data[pos + 18:pos + 25] = self.date7
        self.records += 1
        # a subdirectory (not "." or ".." of this one, names 0 and 1), or a tree's root
        if data[pos + 25] & DIR_FLAG and (root or name_len != 1 or data[pos + 33] > 1):
            extent, size = _TWO_WORDS.unpack_from(data, pos + 2)
            if extent in self.seen:
                raise IsoError("directory extent %d appears twice in the image's tree" % extent)
            self.seen.add(extent)
            if extent == 0 or size % SECTOR:
                raise IsoError("malformed directory extent (block %d, %d bytes) at byte %d" % (extent, size, pos))
            self.pending.append((extent * SECTOR, size, susp))
        if susp:
            self.susp(pos + 34 + name_len - name_len % 2, end)
        return length

    def susp(self, pos, end):
        """Stamp the TF entries of the system use entries in [pos, end); queue CE areas."""
        data = self.image.data
        while pos + 4 <= end:
            first, second, length = data[pos], data[pos + 1], data[pos + 2]
            if length < 4 or pos + length > end:
                raise IsoError("malformed system use entry %r at byte %d of the image"
                               % (bytes(data[pos:pos + 2]), pos))
            if first == 0x54 and second == 0x46:            # TF
                self.tf(pos, length)
            elif first == 0x43 and second == 0x45 and length >= 28:     # CE
                block, offset, size = (struct.unpack_from("<I", data, pos + at)[0] for at in (4, 12, 20))
                area = block * SECTOR + offset
                if area in self.seen:
                    raise IsoError("continuation area at byte %d appears twice in the image" % area)
                self.seen.add(area)
                self.areas.append((area, size))
            elif first == 0x53 and second == 0x54:          # ST: the end of the entries
                return
            pos += length

    def tf(self, pos, length):
        data = self.image.data
        flags = data[pos + 4]
        size = 17 if flags & TF_LONG_FORM else 7
        count = _BITS[flags & 0x7F]
        if length != 5 + count * size:
            raise IsoError("malformed Rock Ridge TF entry at byte %d of the image" % pos)
        date = self.date17 if size == 17 else self.date7
        for at in range(pos + 5, pos + 5 + count * size, size):
            data[at:at + size] = date


_TWO_WORDS = struct.Struct("<I4xI")        # extent (LE), skip its BE copy, size (LE)
_BITS = [bin(n).count("1") for n in range(128)]
