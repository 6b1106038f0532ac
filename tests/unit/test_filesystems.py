# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/filesystems.py (argv building, validation)."""
import os
import shutil
import subprocess

import pytest

from ansible_collections.vmhost.virt.plugins.module_utils import filesystems as fs
from ansible_collections.vmhost.virt.plugins.module_utils.qemu_img import ImageError


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, argv, env=None):
        self.calls.append((argv, env))
        return 0, "", ""


UUID = "0fc63daf-8483-4772-8e79-3d69d8477de4"


def test_ext_argv_reproducible():
    argv = fs.ext_argv("/i", 64 << 20, tree="/t", label="root", uuid=UUID.upper(),
                       source_date_epoch=1)
    assert argv[:5] == ["mkfs.ext4", "-q", "-F", "-b", "4096"]
    assert ["-L", "root"] == argv[5:7]
    assert ["-U", UUID] == argv[7:9]
    eopts = argv[argv.index("-E") + 1].split(",")
    assert "hash_seed=" + UUID in eopts and "root_owner=0:0" in eopts
    assert "lazy_itable_init=0" in eopts
    assert argv[-4:] == ["-d", "/t", "/i", "65536k"]


def test_ext_argv_small_uses_1k_blocks():
    assert fs.ext_argv("/i", 1 << 20)[3:5] == ["-b", "1024"]


@pytest.mark.parametrize("kwargs,match", [
    (dict(label="x" * 17), "at most 16 bytes"),
    (dict(label="é" * 9), "18 bytes"),
    (dict(uuid="not-a-uuid"), "not a UUID"),
    (dict(fs="xfs"), "not an ext"),
])
def test_ext_argv_rejects(kwargs, match):
    args = dict(image_path="/i", size=8 << 20)
    args.update(kwargs)
    with pytest.raises(ImageError, match=match):
        fs.ext_argv(**args)


def test_make_ext4_runs_mkfs_with_fake_time(tmp_path):
    rec = Recorder()
    out = tmp_path / "x.img"
    tree = tmp_path / "t"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "f").write_text("x")
    # the recorder writes no file system: the time pass says so instead of writing garbage
    with pytest.raises(ImageError, match="cannot set reproducible inode times .*no ext2/3/4 superblock"):
        fs.make_ext4(str(out), 8 << 20, tree=str(tree), uuid=UUID, source_date_epoch=1000, runner=rec)
    (mkfs,) = rec.calls
    assert mkfs[0][0] == "mkfs.ext4"
    assert mkfs[1]["E2FSPROGS_FAKE_TIME"] == "1000"
    assert out.stat().st_size == 8 << 20
    assert fs.make_ext4(str(out), 8 << 20, tree=str(tree), uuid=UUID, runner=Recorder()) == \
        {"fs": "ext4", "size": 8 << 20, "label": None, "uuid": UUID}


def test_make_ext4_reproducible_needs_uuid(tmp_path):
    with pytest.raises(ImageError, match="needs a uuid"):
        fs.make_ext4(str(tmp_path / "x"), 8 << 20, source_date_epoch=1, runner=Recorder())


def test_make_ext4_missing_tree(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        fs.make_ext4(str(tmp_path / "x"), 8 << 20, tree=str(tmp_path / "no"), runner=Recorder())
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(shutil.which("mkfs.ext4") is None or shutil.which("debugfs") is None,
                    reason="e2fsprogs is not installed")
def test_reproducible_ext4_clamps_every_inode(tmp_path):
    tree = tmp_path / "t"
    for i in range(30):
        (tree / ("d%02d" % i)).mkdir(parents=True)
        (tree / ("d%02d" % i) / "f").write_text(str(i))
    os.link(str(tree / "d00" / "f"), str(tree / "hard"))
    os.symlink("d00/f", str(tree / "link"))
    os.utime(str(tree / "d01" / "f"), (5, 50))
    images = []
    for name in ("a.img", "b.img"):
        fs.make_ext4(str(tmp_path / name), 8 << 20, tree=str(tree), uuid=UUID, source_date_epoch=1000)
        images.append(str(tmp_path / name))
        os.utime(str(tree / "d02" / "f"))              # atime/ctime/mtime move between builds
    assert open(images[0], "rb").read() == open(images[1], "rb").read()
    out = subprocess.run(["debugfs", "-R", "stat /d01/f", images[0]], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, universal_newlines=True, check=True).stdout
    assert " mtime: 0x00000032" in out and " atime: 0x000003e8" in out and " ctime: 0x000003e8" in out
    for path in ("/d02/f", "/hard", "/link", "/d29"):
        out = subprocess.run(["debugfs", "-R", "stat " + path, images[0]], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True, check=True).stdout
        assert out.count("0x000003e8") == 4, (path, out)


@pytest.mark.parametrize("value,expected", [
    ("DEAD-BEEF", 0xDEADBEEF), ("deadbeef", 0xDEADBEEF),
    (UUID, 0x0FC63DAF),
])
def test_fat_volume_id(value, expected):
    assert fs.fat_volume_id(value) == expected
    assert fs.fat_uuid_string(expected) == "%04X-%04X" % (expected >> 16, expected & 0xFFFF)


def test_fat_volume_id_rejects():
    with pytest.raises(ImageError, match="neither"):
        fs.fat_volume_id("xyz")


@pytest.mark.parametrize("label,match", [("TWELVE_CHARS", "at most 11"), ("a*b", "characters")])
def test_fat_label_rejects(label, match):
    with pytest.raises(ImageError, match=match):
        fs.validate_label("vfat", label)


def test_fat_argv():
    argv = fs.fat_argv("/e", 64 << 20, label="ESP", uuid="1234-abcd")
    assert argv == ["mkfs.fat", "-F", "32", "-S", "512", "-n", "ESP", "-i", "1234ABCD",
                    "/e", str(64 << 10)]
    assert fs.fat_argv("/e", 16 << 20)[:3] == ["mkfs.fat", "-F", "16"]
    assert fs.fat_argv("/e", 1 << 20)[:3] == ["mkfs.fat", "-F", "12"]
    assert "-s" in fs.fat_argv("/e", 34 << 20, fs="fat32")
    assert "--invariant" in fs.fat_argv("/e", 1 << 20, source_date_epoch=1)
    argv = fs.fat_argv("/e", 1 << 20, uuid="1234-abcd", source_date_epoch=1)
    assert argv.index("--invariant") < argv.index("-i")


@pytest.mark.skipif(shutil.which("mkfs.fat") is None, reason="mkfs.fat is not installed")
@pytest.mark.parametrize("mib", [8, 9, 11, 12, 16])
def test_small_fat16_is_accepted_by_mkfs_fat(tmp_path, mib):
    """mkfs.fat refuses an 8 MiB FAT16 with its default 2 KiB clusters (too few of them)."""
    argv = fs.fat_argv(str(tmp_path / "f.img"), mib << 20)
    assert argv[:3] == ["mkfs.fat", "-F", "16"]
    with open(str(tmp_path / "f.img"), "wb") as handle:
        handle.truncate(mib << 20)
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    assert proc.returncode == 0, proc.stdout


def test_fat_copy_plan_sorted(tmp_path):
    (tmp_path / "EFI" / "BOOT").mkdir(parents=True)
    (tmp_path / "EFI" / "BOOT" / "b").write_text("b")
    (tmp_path / "EFI" / "BOOT" / "a").write_text("a")
    (tmp_path / "z").write_text("z")
    plan = fs.fat_copy_plan(str(tmp_path))
    assert plan[0] == ("mmd", ["::/EFI", "::/EFI/BOOT"])
    assert plan[1] == ("mcopy", "::/", [str(tmp_path / "z")])
    assert plan[2] == ("mcopy", "::/EFI/BOOT",
                       [str(tmp_path / "EFI/BOOT/a"), str(tmp_path / "EFI/BOOT/b")])


def test_fat_copy_plan_rejects_bad_names_and_specials(tmp_path):
    (tmp_path / "a:b").write_text("x")
    with pytest.raises(ImageError, match="FAT"):
        fs.fat_copy_plan(str(tmp_path))
    os.unlink(str(tmp_path / "a:b"))
    os.symlink("/nonexistent", str(tmp_path / "dangling"))
    with pytest.raises(ImageError, match="dangling"):
        fs.fat_copy_plan(str(tmp_path))


def test_make_fat_env(tmp_path):
    rec = Recorder()
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "f").write_text("x")
    res = fs.make_fat(str(tmp_path / "e"), 40 << 20, tree=str(tmp_path / "t"), label="ESP",
                      uuid=UUID, source_date_epoch=0, runner=rec)
    assert res["uuid"] == "0FC6-3DAF"
    assert [c[0][0] for c in rec.calls] == ["mkfs.fat", "mcopy"]
    assert rec.calls[1][1]["SOURCE_DATE_EPOCH"] == str(fs.FAT_EPOCH)
    assert "-m" not in rec.calls[1][0]


def test_tree_size(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 5000)
    os.link(str(tmp_path / "d" / "f"), str(tmp_path / "hard"))
    os.symlink("d/f", str(tmp_path / "s"))
    # two dirs + one 8 KiB file (hard link counted once) + symlink
    assert fs.tree_size(str(tmp_path)) == 4096 * 2 + 8192 + 4096


def test_make_filesystem_unknown():
    with pytest.raises(ImageError, match="unknown file system"):
        fs.make_filesystem("ntfs", "/x", 1 << 20, runner=Recorder())
