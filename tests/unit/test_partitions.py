# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/partitions.py: planning, bytes, reading."""
import io
import struct
import uuid

import pytest

from ansible_collections.vmhost.virt.plugins.module_utils import partitions as P
from ansible_collections.vmhost.virt.plugins.module_utils.qemu_img import ImageError

MIB = 1 << 20


def image(layout):
    buf = io.BytesIO(b"\0" * layout["size"])
    P.write_table(buf, layout)
    return buf


def test_plan_defaults_and_alignment():
    lay = P.plan("gpt", 64 * MIB, [{"size": "1000000"}, {"size": "rest", "fs": "ext4"}], seed="s")
    one, two = lay["partitions"]
    assert one["start"] == MIB and one["size"] == 1000448  # rounded up to 512
    assert two["start"] == 2 * MIB                          # next 1 MiB boundary
    assert two["size"] == 61 * MIB                          # rest, aligned down
    assert one["type"] == P.GPT_TYPES["linux"]
    assert lay["first_usable"] == 34 and lay["last_usable"] == 64 * 2048 - 34


def test_plan_is_deterministic_with_seed_and_random_without():
    parts = [{"size": "8M", "fs": "ext4"}]
    a = P.plan("gpt", 32 * MIB, parts, seed="x")
    b = P.plan("gpt", 32 * MIB, parts, seed="x")
    c = P.plan("gpt", 32 * MIB, parts)
    assert a == b
    assert a["id"] != c["id"] and a["partitions"][0]["uuid"] != c["partitions"][0]["uuid"]
    assert a["partitions"][0]["uuid_given"] is False


@pytest.mark.parametrize("label,parts,match", [
    ("gpt", [{"size": "100M"}], "larger than the disk"),
    ("gpt", [{"size": "4M"}, {"size": "4M", "start": "2M"}], "overlaps"),
    ("gpt", [{"size": "4M", "start": "3000K"}], "not aligned"),
    ("gpt", [{"size": "rest"}, {"size": "1M"}], "only allowed on the last"),
    ("msdos", [{"size": "1M"}] * 5, "at most 4 primary"),
    ("gpt", [{"size": "1M", "fs": "zfs"}], "unknown fs"),
    ("gpt", [{"size": "1M", "flags": ["hidden"]}], "unknown flag"),
    ("msdos", [{"size": "1M", "flags": ["bios_grub"]}], "GPT-only"),
    ("gpt", [{"size": "1M", "fs": "vfat", "label": "ABCDEFGHIJKL"}], "at most 11"),
    ("gpt", [{"size": "1M", "fs": "ext4", "label": "x" * 17}], "at most 16 bytes"),
    ("gpt", [{"size": "1M", "fs": "ext4", "uuid": "zzzz"}], "not a UUID"),
    ("gpt", [{"size": "1M", "fs": "vfat", "uuid": "zz-zz"}], "neither"),
    ("gpt", [{"size": "1M", "type": "windows-95"}], "neither a known name"),
    ("msdos", [{"size": "1M", "type": "0xee"}], "not usable"),
    ("gpt", [{"size": "1M", "flags": ["esp"], "type": "linux"}], "conflicts"),
    ("gpt", [{"size": "1M", "fs": "swap", "contents": "/x"}], "contents need"),
    ("msdos", [{"size": "1M", "name": "x"}], "needs label gpt"),
    ("gpt", [{"size": "1M", "name": "n" * 37}], "36 UTF-16"),
    ("gpt", [{}], "size is required"),
    ("bsd", [], "label"),
])
def test_plan_rejects(label, parts, match):
    with pytest.raises(ImageError, match=match):
        P.plan(label, 32 * MIB, parts)


def test_protective_mbr_and_headers_bytes():
    lay = P.plan("gpt", 32 * MIB, [{"size": "rest", "fs": "ext4", "name": "root"}],
                 disk_guid="12345678-1234-5678-9abc-def012345678", seed="t")
    buf = image(lay)
    data = buf.getvalue()
    sectors = 32 * MIB // 512
    mbr = data[:512]
    assert mbr[510:] == b"\x55\xaa"
    assert mbr[446 + 4] == 0xEE
    assert struct.unpack("<II", mbr[446 + 8:446 + 16]) == (1, sectors - 1)
    assert mbr[446 + 16:510] == b"\0" * 48
    hdr = data[512:1024]
    assert hdr[:8] == b"EFI PART" and struct.unpack("<I", hdr[8:12])[0] == 0x10000
    my_lba, alt, first, last = struct.unpack("<QQQQ", hdr[24:56])
    assert (my_lba, alt, first, last) == (1, sectors - 1, 34, sectors - 34)
    assert uuid.UUID(bytes_le=hdr[56:72]) == uuid.UUID("12345678-1234-5678-9abc-def012345678")
    assert struct.unpack("<QIII", hdr[72:92]) == (2, 128, 128, P.crc32(data[1024:1024 + 16384]))
    check = bytearray(hdr[:92])
    check[16:20] = b"\0" * 4
    assert P.crc32(bytes(check)) == struct.unpack("<I", hdr[16:20])[0]
    backup = data[(sectors - 1) * 512:]
    assert backup[:8] == b"EFI PART"
    assert struct.unpack("<QQ", backup[24:40]) == (sectors - 1, 1)
    assert struct.unpack("<Q", backup[72:80])[0] == sectors - 33
    assert data[(sectors - 33) * 512:(sectors - 1) * 512] == data[1024:1024 + 16384]
    entry = data[1024:1024 + 128]
    assert uuid.UUID(bytes_le=entry[:16]) == uuid.UUID(P.GPT_TYPES["linux"])
    assert struct.unpack("<QQ", entry[32:48]) == (2048, 2048 + 30 * 2048 - 1)
    assert entry[56:64] == "root".encode("utf-16-le")


def test_mbr_bytes():
    parts = [{"size": "8M", "flags": ["boot"]}, {"size": "rest", "fs": "swap"}]
    lay = P.plan("msdos", 32 * MIB, parts, disk_guid="0xdeadbeef")
    data = image(lay).getvalue()
    assert data[440:444] == b"\xef\xbe\xad\xde"
    e1 = data[446:462]
    assert e1[0] == 0x80 and e1[4] == 0x83
    assert struct.unpack("<II", e1[8:16]) == (2048, 16384)
    assert e1[1:4] == bytes([32, 33, 0])  # CHS of LBA 2048 with 255/63
    e2 = data[462:478]
    assert e2[0] == 0 and e2[4] == 0x82
    assert struct.unpack("<II", e2[8:16]) == (18432, 32 * 2048 - 18432)


def test_chs_beyond_1024_cylinders():
    assert P._chs(1024 * 255 * 63) == b"\xfe\xff\xff"


def test_read_back_and_differences():
    parts = [{"size": "8M", "flags": ["esp"], "fs": "vfat"},
             {"size": "8M", "flags": ["boot"], "name": "b"},
             {"size": "rest", "type": "linux-home"}]
    lay = P.plan("gpt", 64 * MIB, parts, seed="r")
    table = P.read_table(image(lay))
    assert table["problems"] == []
    assert table["id"] == lay["id"]
    for want, got in zip(lay["partitions"], table["partitions"]):
        for key in ("start", "size", "type", "part_uuid", "name"):
            assert want[key] == got[key]
    assert table["partitions"][1]["flags"] == ["legacy_boot"]
    table["partitions"][0]["fs"] = "fat32"
    table["partitions"][0]["label"] = None
    table["partitions"][0]["uuid"] = "X"
    assert P.differences(lay, table) == []
    parts[0] = dict(parts[0], size="9M")
    other = P.plan("gpt", 64 * MIB, parts, seed="r")
    assert any("partition 1 size" in d for d in P.differences(other, table))


def test_reader_detects_damage_and_uses_backup():
    lay = P.plan("gpt", 16 * MIB, [{"size": "rest"}], seed="d")
    buf = image(lay)
    buf.seek(512 + 30)
    buf.write(b"\xff")          # corrupt the primary header
    table = P.read_table(buf)
    assert "primary GPT header is invalid" in table["problems"]
    assert table["partitions"][0]["start"] == MIB
    buf.seek(0)
    buf.write(b"\0" * 512)
    assert P.read_table(buf) is None


def test_probe_filesystems():
    from ansible_collections.vmhost.virt.plugins.module_utils import filesystems
    buf = io.BytesIO(b"\0" * (2 * MIB))
    buf.seek(MIB)
    buf.write(filesystems.swap_header(MIB, "sw", "6f1e3c55-0bd0-4d3b-9a4e-0f6a6b2b8a11"))
    found = P.probe_filesystem(buf, MIB)
    assert found == {"fs": "swap", "uuid": "6f1e3c55-0bd0-4d3b-9a4e-0f6a6b2b8a11",
                     "label": "sw"}
    assert P.probe_filesystem(buf, 0) is None


def test_estimate():
    assert P.estimate(0) == MIB
    assert P.estimate(100 * MIB) == 125 * MIB
    assert P.estimate(100 * MIB + 1) == 126 * MIB


def test_resolve_types():
    assert P.resolve_gpt_type("ESP") == P.GPT_TYPES["esp"]
    assert P.resolve_gpt_type("C12A7328-F81F-11D2-BA4B-00A0C93EC93B") == P.GPT_TYPES["esp"]
    assert P.resolve_mbr_type("0x83") == 0x83 and P.resolve_mbr_type("ef") == 0xEF
    with pytest.raises(ImageError):
        P.resolve_mbr_type("zz")


# -- finding 8: a hostile GPT header is refused quickly, without big allocations
def _forge_gpt(count, entry_size, entries_lba=2):
    """A valid protective MBR and primary GPT header whose entry array is (count, entry_size)."""
    import zlib
    lay = P.plan("gpt", 16 * MIB, [{"size": "rest"}], seed="h")
    buf = image(lay)
    buf.seek(512)
    head = bytearray(buf.read(92))
    struct.pack_into("<Q", head, 72, entries_lba)
    struct.pack_into("<II", head, 80, count, entry_size)
    head[16:20] = b"\0\0\0\0"
    struct.pack_into("<I", head, 16, zlib.crc32(bytes(head)) & 0xffffffff)
    buf.seek(512)
    buf.write(bytes(head))
    size = 16 * MIB
    buf.seek(size - 512)
    buf.write(b"\0" * 512)      # no backup header: the forged primary is what is read
    return buf


@pytest.mark.parametrize("count,entry_size,lba,match", [
    (2 ** 32 - 1, 128, 2, "claims 4294967295 entries"),
    (2 ** 20, 2 ** 31, 2, "entry size"),
    (128, 2 ** 32 - 128, 2, "entry size"),
    (128, 100, 2, "entry size"),
    (128, 128, 2 ** 63, "outside the image"),
    (128, 128, 0, "outside the image"),
])
def test_hostile_gpt_header_is_refused_fast(count, entry_size, lba, match):
    import time
    buf = _forge_gpt(count, entry_size, lba)
    started = time.process_time()
    with pytest.raises(ImageError, match=match):
        P.read_table(buf)
    assert time.process_time() - started < 1


def test_gpt_entry_outside_image_is_refused():
    import zlib
    lay = P.plan("gpt", 16 * MIB, [{"size": "rest"}], seed="o")
    buf = image(lay)
    buf.seek(1024 + 40)
    buf.write(struct.pack("<Q", 2 ** 64 - 1))    # last LBA of entry 1
    buf.seek(1024)
    array = buf.read(128 * 128)
    for at in (512, 16 * MIB - 512):
        buf.seek(at)
        head = bytearray(buf.read(92))
        struct.pack_into("<I", head, 88, zlib.crc32(array) & 0xffffffff)
        head[16:20] = b"\0\0\0\0"
        struct.pack_into("<I", head, 16, zlib.crc32(bytes(head)) & 0xffffffff)
        buf.seek(at)
        buf.write(bytes(head))
    with pytest.raises(ImageError, match="outside the image"):
        P.read_table(buf)


# -- the partition_table backend on the shared module base (no Ansible) ------------------
def _pt_params(path, **extra):
    params = dict(path=str(path), size="16MiB", label="gpt", disk_guid=None,
                  partitions=[{"size": "rest", "fs": "none"}], source_date_epoch=1700000000,
                  bootloader="none", kernel_cmdline=None, force=False)
    params.update(extra)
    return params


class _NoTools(object):
    def attributes_differ(self, path):
        return False

    def set_attributes(self, path):
        return False


def test_partition_table_backend_check_mode_writes_nothing_then_builds_once(tmp_path):
    from ansible_collections.vmhost.virt.plugins.module_utils.image_builder import PartitionTable
    disk = tmp_path / "disk.raw"
    result = PartitionTable(_pt_params(disk), check_mode=True, tools=_NoTools(), environ={}).execute(diff=True)
    assert result["changed"] and result["differences"] == ["%s does not exist" % disk]
    assert result["diff"]["before"] is None and "actions" not in result
    assert list(tmp_path.iterdir()) == []
    result = PartitionTable(_pt_params(disk), tools=_NoTools(), environ={}).execute()
    assert result["changed"] and result["table"]["label"] == "gpt" and disk.stat().st_size == 16 << 20
    again = PartitionTable(_pt_params(disk), tools=_NoTools(), environ={}).execute()
    assert again["changed"] is False and again["table"] == result["table"]


def test_partition_table_backend_needs_force_and_epoch_errors_are_module_failures(tmp_path):
    from ansible_collections.vmhost.virt.plugins.module_utils._module import ModuleFailure
    from ansible_collections.vmhost.virt.plugins.module_utils.image_builder import PartitionTable
    disk = tmp_path / "disk.raw"
    PartitionTable(_pt_params(disk), tools=_NoTools(), environ={}).execute()
    before = disk.read_bytes()
    with pytest.raises(ModuleFailure) as err:
        PartitionTable(_pt_params(disk, label="msdos"), tools=_NoTools(), environ={}).execute()
    assert "set force: true" in err.value.msg and err.value.result["changed"] is False
    assert err.value.result["differences"] and disk.read_bytes() == before
    with pytest.raises(ModuleFailure, match="SOURCE_DATE_EPOCH must be a whole number"):
        PartitionTable(_pt_params(disk, source_date_epoch=None), environ={"SOURCE_DATE_EPOCH": "now"}).execute()
    assert disk.read_bytes() == before


@pytest.mark.skipif(__import__("shutil").which("mkfs.ext4") is None, reason="e2fsprogs is not installed")
def test_partition_table_backend_rebuilds_its_own_image_when_contents_change(tmp_path):
    from ansible_collections.vmhost.virt.plugins.module_utils import _io
    from ansible_collections.vmhost.virt.plugins.module_utils.image_builder import PartitionTable
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_text("one\n")
    disk = tmp_path / "disk.raw"
    params = _pt_params(disk, partitions=[{"size": "rest", "fs": "ext4", "contents": str(tree)}])
    for epoch in (1700000000, None):          # reproducible or not (random UUIDs): same rule
        params["source_date_epoch"] = epoch
        if disk.exists():
            disk.unlink()
        first = PartitionTable(params, tools=_NoTools(), environ={}).execute()
        assert first["changed"]
        if _io.read_record(str(disk)) is None:
            pytest.skip("this file system keeps no extended attributes")
        assert PartitionTable(params, tools=_NoTools(), environ={}).execute()["changed"] is False
        (tree / "a").write_text("two, longer\n")          # contents changed: rebuilt, no force needed
        result = PartitionTable(params, tools=_NoTools(), environ={}).execute()
        assert result["changed"] and "contents or options changed" in result["differences"][0]
        assert PartitionTable(params, tools=_NoTools(), environ={}).execute()["changed"] is False
        # an image written since it was built (a guest ran on it) is data: its record no longer counts
        with open(str(disk), "r+b") as handle:
            handle.seek(3 << 20)
            handle.write(b"guest data")
        (tree / "a").write_text("three\n")
        assert PartitionTable(params, tools=_NoTools(), environ={}).execute()["changed"] is False
