# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build one file system inside a plain file: no loop device, no mount.

Private to vmhost.virt: other collections must not import this module.

* ext2/ext3/ext4 with ``mkfs.ext* -d TREE`` (e2fsprogs populates the file
  system from a directory itself);
* FAT12/16/32 with ``mkfs.fat`` and ``mmd``/``mcopy`` from mtools;
* swap with ``mkswap``.

With ``source_date_epoch`` the result is byte-reproducible: e2fsprogs' fake
time (``E2FSPROGS_FAKE_TIME``), a fixed directory hash seed and UUID, inode
times clamped in one pass over the inode tables (:mod:`.ext_times`); FAT gets its serial from the UUID, its
timestamps from ``SOURCE_DATE_EPOCH`` and its files in sorted order.

Every function takes ``runner`` (see :mod:`qemu_img`) so tests can inject
fakes.  Failures raise :class:`ImageError`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import stat
import struct
import tempfile
import uuid as uuidlib

from ansible_collections.vmhost.virt.plugins.module_utils import _io
from ansible_collections.vmhost.virt.plugins.module_utils._tools import FAT_EPOCH
from ansible_collections.vmhost.virt.plugins.module_utils.ext_times import ExtTimesError, clamp_inode_times

from ansible_collections.vmhost.virt.plugins.module_utils.qemu_img import (
    ImageError,
    run,
)

EXT_TYPES = ("ext2", "ext3", "ext4")
FAT_TYPES = ("vfat", "fat16", "fat32", "fat12")
FS_TYPES = EXT_TYPES + FAT_TYPES + ("swap", "none")

EXT_LABEL_MAX = 16   # bytes
FAT_LABEL_MAX = 11   # characters (8.3 volume label)
SWAP_LABEL_MAX = 16

# FAT dates start in 1980; a clamp below that would be refused by mtools.

_FAT_LABEL_OK = re.compile(r"^[A-Za-z0-9 !#$%&'()\-@^_`{}~]*$")
_FAT_BAD_CHARS = '"*/:<>?\\|'
_FAT_ID_RE = re.compile(r"^([0-9A-Fa-f]{4})-?([0-9A-Fa-f]{4})$")


# ---------------------------------------------------------------------------
# validation (pure)
def normalize_uuid(value, what="uuid"):
    """Canonical lower-case 8-4-4-4-12 form of ``value`` or ImageError."""
    try:
        return str(uuidlib.UUID(str(value)))
    except ValueError:
        raise ImageError("%s %r is not a UUID (expected 8-4-4-4-12 hex digits, "
                         "e.g. 0fc63daf-8483-4772-8e79-3d69d8477de4)" % (what, value))


def fat_volume_id(value):
    """FAT volume serial (int) from ``XXXX-XXXX``, ``XXXXXXXX`` or a full UUID.

    A full UUID gives its first 32 bits.  blkid shows the serial as
    ``XXXX-XXXX`` (see :func:`fat_uuid_string`).
    """
    text = str(value).strip()
    match = _FAT_ID_RE.match(text)
    if match:
        return int(match.group(1) + match.group(2), 16)
    try:
        return int(uuidlib.UUID(text).hex[:8], 16)
    except ValueError:
        raise ImageError("FAT uuid %r is neither a volume id (XXXX-XXXX hex) nor a UUID"
                         % (value,))


def fat_uuid_string(volume_id):
    """The ``XXXX-XXXX`` form blkid reports for a FAT serial."""
    return "%04X-%04X" % (volume_id >> 16, volume_id & 0xFFFF)


def validate_label(fs, label):
    """Raise ImageError when ``label`` does not fit file system ``fs``."""
    if label is None:
        return
    if fs in EXT_TYPES:
        if len(label.encode("utf-8")) > EXT_LABEL_MAX:
            raise ImageError("%s label %r is %d bytes; ext labels hold at most %d bytes"
                             % (fs, label, len(label.encode("utf-8")), EXT_LABEL_MAX))
    elif fs in FAT_TYPES:
        if len(label) > FAT_LABEL_MAX:
            raise ImageError("FAT label %r is %d characters; FAT labels hold at most %d"
                             % (label, len(label), FAT_LABEL_MAX))
        if not _FAT_LABEL_OK.match(label):
            raise ImageError("FAT label %r has characters FAT does not allow "
                             "(use letters, digits, space and !#$%%&'()-@^_`{}~)" % (label,))
    elif fs == "swap":
        if len(label.encode("utf-8")) > SWAP_LABEL_MAX:
            raise ImageError("swap label %r is longer than %d bytes" % (label, SWAP_LABEL_MAX))


def validate_uuid(fs, value):
    """Return the canonical UUID string for ``fs`` (FAT: ``XXXX-XXXX``)."""
    if value is None:
        return None
    if fs in FAT_TYPES:
        return fat_uuid_string(fat_volume_id(value))
    return normalize_uuid(value, "%s uuid" % fs)


def tree_size(tree):
    """Bytes a directory tree occupies: file sizes rounded to 4 KiB blocks,
    plus one block per directory, symlink and special file (as du does)."""
    if not os.path.isdir(tree):
        raise ImageError("contents directory %s does not exist" % tree)
    total = 0
    seen = set()
    for root, dirs, files in os.walk(tree):
        total += 4096
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            st = os.lstat(os.path.join(root, name))
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1:
                if key in seen:
                    continue
                seen.add(key)
            if stat.S_ISREG(st.st_mode):
                total += -(-st.st_size // 4096) * 4096
            else:
                total += 4096
    return total


def _prepare_file(image_path, size, offset=0):
    """Create or truncate ``image_path`` to exactly ``size`` bytes (sparse).

    With an ``offset`` the file system goes inside an existing image (a disk
    image file or a block device), which must already hold ``offset + size``
    bytes; nothing is truncated.
    """
    if offset:
        if offset % 512:
            raise ImageError("offset %d is not a multiple of 512" % offset)
        try:
            with open(image_path, "rb") as handle:
                handle.seek(0, 2)
                have = handle.tell()
        except (IOError, OSError) as exc:
            raise ImageError("cannot open %s: %s" % (image_path, exc))
        if have < offset + size:
            raise ImageError("%s holds %d bytes, too small for a %d-byte file system at "
                             "offset %d" % (image_path, have, size, offset))
        return
    with open(image_path, "wb") as handle:
        handle.truncate(size)


def ext_device(image_path, offset=0):
    """The name e2fsprogs tools (debugfs, e2fsck, dumpe2fs) open for a file
    system at ``offset`` in ``image_path`` (the ``?offset=`` I/O option)."""
    return "%s?offset=%d" % (image_path, offset) if offset else image_path


# ---------------------------------------------------------------------------
# ext*
def ext_argv(image_path, size, tree=None, label=None, uuid=None,
             source_date_epoch=None, fs="ext4", hash_seed=None, extra=None, offset=0):
    """The ``mkfs.ext*`` command line (pure)."""
    if fs not in EXT_TYPES:
        raise ImageError("%r is not an ext file system" % fs)
    validate_label(fs, label)
    if size < 64 * 1024:
        raise ImageError("an %s file system needs at least 64 KiB, not %d bytes" % (fs, size))
    argv = ["mkfs." + fs, "-q", "-F", "-b", "4096" if size >= 32 * 1024 * 1024 else "1024"]
    if label is not None:
        argv += ["-L", label]
    eopts = ["root_owner=0:0"]
    if uuid is not None:
        argv += ["-U", normalize_uuid(uuid, "%s uuid" % fs)]
    if hash_seed is None and source_date_epoch is not None and uuid is not None:
        hash_seed = uuid
    if hash_seed is not None:
        eopts.append("hash_seed=" + normalize_uuid(hash_seed, "hash seed"))
    if offset:
        eopts += ["offset=%d" % offset, "nodiscard"]
    if source_date_epoch is not None:
        # lazy_itable_init leaves tables uninitialised; write them (zeros, reproducible).
        eopts += ["lazy_itable_init=0", "lazy_journal_init=0"]
    argv += ["-E", ",".join(eopts)]
    if extra:
        argv += list(extra)
    if tree is not None:
        argv += ["-d", tree]
    blocks_k = size // 1024
    argv += [image_path, "%dk" % blocks_k]
    return argv


def make_ext4(image_path, size, tree=None, label=None, uuid=None, source_date_epoch=None,
              fs="ext4", runner=None, offset=0):
    """Build an ext4 (or ``fs``: ext2/ext3) file system of ``size`` bytes in the
    plain file ``image_path``, populated from directory ``tree`` by
    ``mkfs.ext4 -d``.  No loop device, no mount, no root needed.

    With ``source_date_epoch`` (int seconds) the file is byte-reproducible:
    superblock and new-inode times come from ``E2FSPROGS_FAKE_TIME``, the
    directory hash seed from the UUID (a UUID is then required), inode tables
    are written eagerly, and the inode times are clamped in one pass over the
    inode tables (:func:`.ext_times.clamp_inode_times`: atime/ctime/crtime =
    epoch, mtime = min(mtime, epoch)).
    With ``offset`` the file system is written at that byte offset of an
    existing image (a partition), which must be large enough.
    Returns a dict: ``size``, ``uuid``, ``label``, ``fs``.
    """
    size = int(size)
    if tree is not None and not os.path.isdir(tree):
        raise ImageError("contents directory %s does not exist" % tree)
    if source_date_epoch is not None:
        source_date_epoch = int(source_date_epoch)
        if uuid is None:
            raise ImageError("a reproducible ext file system needs a uuid")
    argv = ext_argv(image_path, size, tree, label, uuid, source_date_epoch, fs, offset=offset)
    env = {"MKE2FS_CONFIG": "/etc/mke2fs.conf"} if os.path.exists("/etc/mke2fs.conf") else {}
    if source_date_epoch is not None:
        env["E2FSPROGS_FAKE_TIME"] = str(source_date_epoch)
    _prepare_file(image_path, size, offset)
    try:
        run(argv, runner, env or None)
    except ImageError as exc:
        message = str(exc)
        if "Could not allocate" in message or "No space left" in message \
                or "Could not allocate block" in message:
            raise ImageError("the contents of %s do not fit in a %d-byte %s file system: %s"
                             % (tree, size, fs, message))
        raise
    if source_date_epoch is not None and tree is not None:
        try:
            clamp_inode_times(image_path, source_date_epoch, offset)
        except (ExtTimesError, OSError) as exc:
            raise ImageError("cannot set reproducible inode times in %s: %s" % (image_path, exc))
    return {"fs": fs, "size": size, "label": label,
            "uuid": normalize_uuid(uuid) if uuid else read_ext_uuid(image_path, runner, offset)}


def debugfs_script(image_path, commands, runner=None, offset=0, epoch=None):
    """Run ``debugfs -w`` with ``commands`` (a list of lines) on the ext file system at
    ``offset``; returns its output."""
    fd, cmd_file = tempfile.mkstemp(suffix=".debugfs")
    try:
        _io.write_all(fd, ("\n".join(commands) + "\n").encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)
    env = {"E2FSPROGS_FAKE_TIME": str(int(epoch))} if epoch is not None else None
    try:
        argv = ["debugfs", "-w", "-f", cmd_file, ext_device(image_path, offset)]
        return run(argv, runner, env)
    finally:
        os.unlink(cmd_file)


def read_ext_uuid(image_path, runner=None, offset=0):
    out = run(["dumpe2fs", "-h", ext_device(image_path, offset)], runner)
    for line in out.splitlines():
        if line.startswith("Filesystem UUID:"):
            return line.split(":", 1)[1].strip()
    raise ImageError("dumpe2fs did not report a UUID for %s" % image_path)


# ---------------------------------------------------------------------------
# FAT
def fat_bits(fs, size):
    """FAT width for ``fs`` and ``size``: vfat picks 12/16/32 by size."""
    if fs == "fat12":
        return 12
    if fs == "fat16":
        return 16
    if fs == "fat32":
        return 32
    # UEFI wants FAT32 for ESPs where it fits (>= 32 MiB with 512-byte sectors
    # and 1-sector clusters mkfs.fat accepts); smaller ones FAT16/12.
    if size >= 33 * 1024 * 1024:
        return 32
    if size >= 8 * 1024 * 1024:
        return 16
    return 12


def fat_argv(image_path, size, label=None, uuid=None, fs="vfat", source_date_epoch=None,
             offset=0):
    """The ``mkfs.fat`` command line (pure)."""
    validate_label(fs, label)
    if size < 64 * 1024:
        raise ImageError("a FAT file system needs at least 64 KiB, not %d bytes" % size)
    bits = fat_bits(fs, size)
    argv = ["mkfs.fat", "-F", str(bits), "-S", "512"]
    if (bits == 32 and size < 36 * 1024 * 1024) or (bits == 16 and size < 12 * 1024 * 1024):
        # mkfs.fat's default clusters leave too few of them (FAT16 needs 4085, so an 8 MiB
        # FAT16 with 2 KiB clusters is refused): one sector a cluster
        argv += ["-s", "1"]
    argv += ["-n", label if label is not None else "NO NAME"]
    if source_date_epoch is not None:
        # constant times (mkfs.fat ignores SOURCE_DATE_EPOCH for the label entry)
        # and serial; a later -i still sets the serial
        argv.append("--invariant")
    if uuid is not None:
        argv += ["-i", "%08X" % fat_volume_id(uuid)]
    if offset:
        argv.append("--offset=%d" % (offset // 512))
    argv += [image_path, str(size // 1024)]
    return argv


def _mtools_env(source_date_epoch):
    env = {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0", "TZ": "UTC"}
    if source_date_epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(max(int(source_date_epoch), FAT_EPOCH))
    return env


def fat_copy_plan(tree):
    """The mtools calls that copy ``tree`` into a FAT image, in sorted order:
    a list of ``("mmd", [dirs...])`` and ``("mcopy", target_dir, [files...])``."""
    plan = []
    dirs_to_make = []
    copies = []
    for root, dirs, files in os.walk(tree):
        dirs.sort()
        rel_root = os.path.relpath(root, tree)
        target = "::/" if rel_root == "." else "::/" + rel_root.replace(os.sep, "/")
        for name in dirs + files:
            if os.path.islink(os.path.join(root, name)):
                raise ImageError("%s is a symbolic link: FAT cannot store links, and the file "
                                 "it points at is not copied in its place (replace the link "
                                 "with the file itself)" % os.path.join(root, name))
            bad = set(name) & set(_FAT_BAD_CHARS)
            if bad or any(ord(c) < 32 for c in name):
                raise ImageError("%s cannot be stored on FAT: its name has characters FAT "
                                 "forbids (%s)" % (os.path.join(root, name),
                                                   "".join(sorted(bad)) or "control"))
        for name in dirs:
            dirs_to_make.append(target.rstrip("/") + "/" + name)
        regular = []
        for name in sorted(files):
            full = os.path.join(root, name)
            if stat.S_ISREG(os.lstat(full).st_mode):
                regular.append(full)
            else:
                raise ImageError("%s is not a regular file; FAT can only hold files and "
                                 "directories" % full)
        if regular:
            copies.append(("mcopy", target, regular))
    if dirs_to_make:
        plan.append(("mmd", dirs_to_make))
    plan.extend(copies)
    return plan


def copy_into(src, dst, offset, chunk=4 * 1024 * 1024):
    """Copy file ``src`` into ``dst`` at ``offset``, leaving all-zero chunks
    unwritten (``dst`` is fresh and sparse, or they are zero already)."""
    with open(src, "rb") as source, open(dst, "r+b") as target:
        position = offset
        while True:
            data = source.read(chunk)
            if not data:
                break
            if data.count(0) != len(data):
                target.seek(position)
                target.write(data)
            position += len(data)


def make_fat(image_path, size, tree=None, label=None, uuid=None, source_date_epoch=None,
             fs="vfat", runner=None, offset=0, workdir=None):
    """Build a FAT file system of ``size`` bytes in ``image_path`` with
    ``mkfs.fat`` and copy ``tree`` into it with mtools (no mount).

    ``uuid`` gives the volume serial (``XXXX-XXXX`` or a UUID, whose first 32
    bits are used).  With ``offset`` the FAT is built in a scratch file (in ``workdir``, a
    private directory the caller removes, when given) and copied in.
    With ``source_date_epoch`` every timestamp is that epoch
    (clamped to 1980, the FAT epoch) and the files go in in sorted order.
    Returns a dict: ``fs``, ``size``, ``label``, ``uuid`` (``XXXX-XXXX``).
    """
    size = int(size)
    if tree is not None and not os.path.isdir(tree):
        raise ImageError("contents directory %s does not exist" % tree)
    if offset:
        # mkfs.fat picks its geometry from the whole file when given --offset,
        # which mtools then misreads; build the small FAT alone and copy it in.
        _prepare_file(image_path, size, offset)
        if workdir is not None:
            handle, scratch = tempfile.mkstemp(suffix=".fat", dir=workdir)
            os.close(handle)
        elif os.path.isfile(image_path):
            scratch = _io.temp_path(image_path, "fat")
        else:
            handle, scratch = tempfile.mkstemp(suffix=".fat")
            os.close(handle)
        try:
            result = make_fat(scratch, size, tree, label, uuid, source_date_epoch, fs, runner)
            copy_into(scratch, image_path, offset)
        finally:
            if os.path.exists(scratch):
                os.unlink(scratch)
        return result
    argv = fat_argv(image_path, size, label, uuid, fs, source_date_epoch)
    plan = fat_copy_plan(tree) if tree is not None else []
    env = _mtools_env(source_date_epoch)
    _prepare_file(image_path, size)
    run(argv, runner, env)
    target = image_path
    for step in plan:
        if step[0] == "mmd":
            run(["mmd", "-i", target] + step[1], runner, env)
        else:
            argv = ["mcopy", "-i", target, "-o", "-Q"]
            if source_date_epoch is None:
                argv.append("-m")
            try:
                run(argv + step[2] + [step[1] + "/"], runner, env)
            except ImageError as exc:
                if "Disk full" in str(exc) or "No free" in str(exc) or "disk full" in str(exc):
                    raise ImageError("the contents of %s do not fit in a %d-byte FAT file "
                                     "system: %s" % (tree, size, exc))
                raise
    result_uuid = fat_uuid_string(fat_volume_id(uuid)) if uuid is not None else None
    return {"fs": fs, "size": size, "label": label, "uuid": result_uuid}


# ---------------------------------------------------------------------------
# swap
def swap_header(size, label=None, uuid=None, page_size=4096):
    """The first page of a Linux swap area (version 1), as mkswap writes it
    (pure): ``SWAPSPACE2`` at the end of the page, last page, UUID, label."""
    validate_label("swap", label)
    pages = size // page_size
    if pages < 10:
        raise ImageError("a swap area needs at least 10 pages (%d bytes)" % (10 * page_size))
    raw_uuid = uuidlib.UUID(normalize_uuid(uuid, "swap uuid")).bytes if uuid else b"\0" * 16
    header = bytearray(page_size)
    struct.pack_into("<III", header, 1024, 1, pages - 1, 0)
    header[1024 + 12:1024 + 28] = raw_uuid
    header[1024 + 28:1024 + 44] = (label or "").encode("utf-8").ljust(16, b"\0")
    header[page_size - 10:] = b"SWAPSPACE2"
    return bytes(header)


def make_swap(image_path, size, label=None, uuid=None, runner=None, offset=0):
    """A swap area of ``size`` bytes in ``image_path`` at ``offset`` (written
    here, byte for byte what ``mkswap`` writes; ``runner`` is unused)."""
    size = int(size)
    header = swap_header(size, label, uuid)
    _prepare_file(image_path, size, offset)
    with open(image_path, "r+b") as handle:
        handle.seek(offset)
        handle.write(header)
    return {"fs": "swap", "size": size, "label": label,
            "uuid": normalize_uuid(uuid) if uuid else None}


def make_filesystem(fs, image_path, size, tree=None, label=None, uuid=None,
                    source_date_epoch=None, runner=None, offset=0, workdir=None):
    """Dispatch to :func:`make_ext4`, :func:`make_fat` or :func:`make_swap`."""
    if fs in EXT_TYPES:
        return make_ext4(image_path, size, tree, label, uuid, source_date_epoch, fs=fs,
                         runner=runner, offset=offset)
    if fs in FAT_TYPES:
        return make_fat(image_path, size, tree, label, uuid, source_date_epoch, fs=fs,
                        runner=runner, offset=offset, workdir=workdir)
    if fs == "swap":
        if tree is not None:
            raise ImageError("a swap partition cannot have contents")
        return make_swap(image_path, size, label, uuid, runner, offset)
    raise ImageError("unknown file system %r; choose one of %s" % (fs, ", ".join(FS_TYPES)))
