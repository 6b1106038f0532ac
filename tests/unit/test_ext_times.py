# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/ext_times.py: the one-pass inode time clamp.

The oracle is e2fsprogs itself: the same image clamped with ``debugfs sif`` commands (what
earlier releases ran) must have the same bytes, but for the superblock's lifetime write
counter that debugfs moves; e2fsck must find every inode checksum right; and the checksums
are recomputed here from scratch with a plain CRC-32C.
"""
import os
import shutil
import struct
import subprocess

import pytest

from ansible_collections.vmhost.virt.plugins.module_utils import ext_times
from ansible_collections.vmhost.virt.plugins.module_utils.ext_times import ExtTimesError, clamp_inode_times

needs_e2fsprogs = pytest.mark.skipif(shutil.which("mkfs.ext4") is None or shutil.which("debugfs") is None,
                                     reason="e2fsprogs is not installed")

UUID = "0fc63daf-8483-4772-8e79-3d69d8477de4"
EPOCH = 1700000000
SB_KBYTES_WRITTEN = (1024 + 0x178, 1024 + 0x180)
SB_CHECKSUM = (1024 + 0x3FC, 1024 + 0x400)


def test_crc32c_check_value():
    # the CRC-32C check value of "123456789" (with the usual inversions around the raw update)
    assert ext_times.crc32c(b"123456789") ^ 0xFFFFFFFF == 0xE3069283


@pytest.mark.parametrize("seconds", [0, 1, 1700000000, (1 << 31) - 1, 1 << 31, 5000000000, (1 << 34) - (1 << 31) - 1])
def test_time_encoding_round_trips(seconds):
    low, extra = ext_times._encode_time(seconds)
    assert 0 <= low < 1 << 32 and 0 <= extra < 4
    assert ext_times._decode_time(low, extra) == seconds


def test_delta_tables_are_the_crc_of_a_lone_byte():
    tables = ext_times._delta_tables(256)
    for offset in (0x08, 0x13, 0x84, 0x97):
        for value in (1, 0x80, 0xFF):
            msg = bytearray(256)
            msg[offset] = value
            assert tables[offset][value] == ext_times.crc32c(bytes(msg), 0)


def make_tree(root):
    for i in range(40):
        (root / ("d%02d" % i)).mkdir(parents=True)
        (root / ("d%02d" % i) / "f").write_text(str(i))
    os.link(str(root / "d00" / "f"), str(root / "hard"))
    os.symlink("d00/f", str(root / "link"))
    (root / "new\nline").write_text("x")                 # debugfs scripts could not name this one
    os.utime(str(root / "d01" / "f"), (5, 50))           # older than the epoch: kept
    os.utime(str(root / "d02" / "f"), (5, EPOCH + 10 ** 6))   # newer: clamped
    os.utime(str(root / "d03"), (5, 6000000000))         # past 2038: clamped
    return root


def mkfs(image, tree, size=16 << 20, extra=()):
    with open(str(image), "wb") as handle:
        handle.truncate(size)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-U", UUID, "-E", "lazy_itable_init=0,hash_seed=" + UUID]
                   + list(extra) + ["-d", str(tree), str(image)], check=True,
                   env=dict(os.environ, E2FSPROGS_FAKE_TIME=str(EPOCH)))


def debugfs_clamp(image, tree):
    """The old way, one ``sif`` per field, by name (the oracle)."""
    cmds = []
    for top, dirs, files in os.walk(str(tree)):
        for name in dirs + files:
            full = os.path.join(top, name)
            if "\n" in full:
                continue
            rel = '"/%s"' % os.path.relpath(full, str(tree)).replace('"', '""')
            cmds += ["sif %s %s %d" % (rel, field, EPOCH) for field in ("atime", "ctime", "crtime")]
            if int(os.lstat(full).st_mtime) > EPOCH:
                cmds.append("sif %s mtime %d" % (rel, EPOCH))
    cmds += ["sif <2> %s %d" % (field, EPOCH) for field in ("atime", "ctime", "crtime", "mtime")]
    script = str(image) + ".cmds"
    with open(script, "w") as handle:
        handle.write("\n".join(cmds) + "\n")
    subprocess.run(["debugfs", "-w", "-f", script, str(image)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=dict(os.environ, E2FSPROGS_FAKE_TIME=str(EPOCH)))


def masked(image):
    data = bytearray(open(str(image), "rb").read())
    for start, end in (SB_KBYTES_WRITTEN, SB_CHECKSUM):
        data[start:end] = bytes(end - start)
    return bytes(data)


def stat(image, what):
    return subprocess.run(["debugfs", "-R", "stat " + what, str(image)], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, universal_newlines=True, check=True).stdout


def inodes(image):
    """(layout, [(number, bytes)]) of every inode in use."""
    data = open(str(image), "rb").read()
    layout = ext_times._Layout(data[1024:2048])
    table = data[(layout.first_data_block + 1) * layout.block_size:]
    found = []
    for first, count, where in layout.groups_used(table):
        for index in range(count):
            raw = data[where + index * layout.inode_size:where + (index + 1) * layout.inode_size]
            if struct.unpack_from("<H", raw, 0)[0]:
                found.append((first + index, raw))
    return layout, found


def all_checksums_right(image):
    """Recompute every in-use inode's checksum with the plain CRC; the number checked."""
    layout, found = inodes(image)
    for number, raw in found:
        stored = struct.unpack_from("<H", raw, ext_times.CSUM_LO)[0]
        full = ext_times.inode_checksum(raw, number, layout.csum_seed)
        if layout.inode_size > 128:
            stored |= struct.unpack_from("<H", raw, ext_times.CSUM_HI)[0] << 16
        else:
            full &= 0xFFFF
        assert stored == full, "inode %d" % number
    return len(found)


@needs_e2fsprogs
@pytest.mark.parametrize("extra", [(), ("-I", "128"), ("-O", "^metadata_csum"), ("-t", "ext2"),
                                   ("-b", "1024"), ("-O", "metadata_csum_seed")],
                         ids=["ext4", "128-byte-inodes", "no-csum", "ext2", "1k-blocks", "csum-seed"])
def test_same_inode_tables_as_debugfs(tmp_path, extra):
    tree = make_tree(tmp_path / "t")
    (tree / "new\nline").unlink()       # the oracle cannot name it
    ours, oracle = tmp_path / "ours.img", tmp_path / "oracle.img"
    mkfs(ours, tree, extra=extra)
    mkfs(oracle, tree, extra=extra)
    assert clamp_inode_times(str(ours), EPOCH) > 40
    debugfs_clamp(oracle, tree)
    assert masked(ours) == masked(oracle)
    subprocess.run(["e2fsck", "-fn", str(ours)], check=True, stdout=subprocess.PIPE)
    if "^metadata_csum" not in extra and "ext2" not in extra:
        assert all_checksums_right(ours) > 40
    assert clamp_inode_times(str(ours), EPOCH) == 0       # a second pass finds nothing to do


@needs_e2fsprogs
def test_times_set_and_kept(tmp_path):
    tree = make_tree(tmp_path / "t")
    image = tmp_path / "x.img"
    mkfs(image, tree)
    clamp_inode_times(str(image), EPOCH)
    epoch_hex = "0x%08x:00000000" % EPOCH
    older = stat(image, "/d01/f")
    assert " mtime: 0x00000032:00000000" in older and older.count(epoch_hex) == 3
    for what in ("/d02/f", "/d03", "/hard", "/link", "<2>"):
        assert stat(image, what).count(epoch_hex) == 4, what
    # every inode, the one named with a newline (which a debugfs script cannot name) too
    _layout, found = inodes(image)
    assert len(found) > 40
    for number, raw in found:
        if number == 2 or number >= 11:
            assert struct.unpack_from("<II", raw, 0x08) == (EPOCH, EPOCH), number     # atime, ctime
            assert struct.unpack_from("<I", raw, 0x90)[0] == EPOCH, number          # crtime
            assert struct.unpack_from("<I", raw, 0x10)[0] <= EPOCH, number          # mtime
    subprocess.run(["e2fsck", "-fn", str(image)], check=True, stdout=subprocess.PIPE)
    assert all_checksums_right(image) > 40


@needs_e2fsprogs
def test_nanoseconds_are_cleared(tmp_path):
    tree = make_tree(tmp_path / "t")
    image = tmp_path / "x.img"
    mkfs(image, tree)
    subprocess.run(["debugfs", "-w", "-R", "sif /d04/f atime_extra 400", str(image)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    clamp_inode_times(str(image), EPOCH)
    assert " atime: 0x%08x:00000000" % EPOCH in stat(image, "/d04/f")
    subprocess.run(["e2fsck", "-fn", str(image)], check=True, stdout=subprocess.PIPE)


@needs_e2fsprogs
def test_at_an_offset(tmp_path):
    tree = make_tree(tmp_path / "t")
    alone, disk = tmp_path / "fs.img", tmp_path / "disk.img"
    mkfs(alone, tree)
    offset = 1 << 20
    with open(str(disk), "wb") as out:
        out.truncate(offset)
        out.seek(offset)
        out.write(open(str(alone), "rb").read())
        out.write(b"\xAA" * 4096)                  # what follows the partition is not touched
    clamp_inode_times(str(alone), EPOCH)
    clamp_inode_times(str(disk), EPOCH, offset)
    data = open(str(disk), "rb").read()
    assert data[offset:offset + os.path.getsize(str(alone))] == open(str(alone), "rb").read()
    assert data[:offset] == bytes(offset) and data[-4096:] == b"\xAA" * 4096


@pytest.mark.parametrize("damage,match", [
    (lambda sb: sb, "no ext2/3/4 superblock"),
    (lambda sb: sb[:0x38] + b"\x53\xEF" + sb[0x3A:0x58] + b"\x07\x00" + sb[0x5A:], "implausible inode size"),
    (lambda sb: sb[:0x18] + struct.pack("<I", 40) + sb[0x1C:0x38] + b"\x53\xEF" + sb[0x3A:], "implausible block size"),
])
def test_hostile_or_foreign_images_fail_with_a_reason(tmp_path, damage, match):
    image = tmp_path / "x.img"
    sb = bytearray(1024)
    struct.pack_into("<IIIIIIIIIII", sb, 0, 64, 64, 0, 0, 0, 1, 0, 0, 8192, 8192, 64)
    struct.pack_into("<I", sb, 0x4C, 1)
    struct.pack_into("<IH", sb, 0x54, 11, 256)
    with open(str(image), "wb") as out:
        out.write(bytes(1024) + bytes(damage(bytes(sb))) + bytes(8192))
    with pytest.raises(ExtTimesError, match=match):
        clamp_inode_times(str(image), EPOCH)


def test_short_or_meta_bg_images_fail(tmp_path):
    image = tmp_path / "x.img"
    sb = bytearray(1024)
    struct.pack_into("<IIIIIIIIIII", sb, 0, 64, 64, 0, 0, 0, 1, 0, 0, 8192, 8192, 64)
    struct.pack_into("<H", sb, 0x38, 0xEF53)
    struct.pack_into("<I", sb, 0x4C, 1)
    struct.pack_into("<IH", sb, 0x54, 11, 256)
    with open(str(image), "wb") as out:
        out.write(bytes(1024) + bytes(sb))             # no group descriptors after it
    with pytest.raises(ExtTimesError, match="cut short"):
        clamp_inode_times(str(image), EPOCH)
    struct.pack_into("<I", sb, 0x60, ext_times.INCOMPAT_META_BG)
    with open(str(image), "wb") as out:
        out.write(bytes(1024) + bytes(sb) + bytes(8192))
    with pytest.raises(ExtTimesError, match="meta_bg"):
        clamp_inode_times(str(image), EPOCH)
    with pytest.raises(ExtTimesError, match="cannot be stored"):
        clamp_inode_times(str(image), -1)
    with pytest.raises(ExtTimesError, match="cannot be stored"):
        clamp_inode_times(str(image), (1 << 34) - (1 << 31))
