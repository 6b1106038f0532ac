# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""filesystems.py against the real e2fsprogs/dosfstools/mtools: no loop, no mount."""
import hashlib
import os
import shutil
import subprocess
import time

import pytest

from ansible_collections.vmhost.virt.plugins.module_utils import filesystems as fs

UUID = "6f1e3c55-0bd0-4d3b-9a4e-0f6a6b2b8a11"


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("box\n")
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_bytes(os.urandom(70000))
    os.chmod(str(root / "usr" / "bin" / "tool"), 0o755)
    os.symlink("usr/bin", str(root / "bin"))
    return root


def blkid(path):
    out = subprocess.run(["blkid", "-p", "-o", "export", str(path)], check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_make_ext4_real_populated_and_reproducible(tmp_path, tree):
    first = tmp_path / "a.img"
    second = tmp_path / "b.img"
    fs.make_ext4(str(first), 32 << 20, tree=str(tree), label="root", uuid=UUID,
                 source_date_epoch=1700000000)
    # reading the tree again moves atimes; a later build must still be identical
    os.utime(str(tree / "etc" / "hostname"), (time.time() + 100,
                                              os.stat(str(tree / "etc" / "hostname")).st_mtime))
    time.sleep(1.1)
    fs.make_ext4(str(second), 32 << 20, tree=str(tree), label="root", uuid=UUID,
                 source_date_epoch=1700000000)
    assert sha256(first) == sha256(second)
    assert os.path.getsize(str(first)) == 32 << 20
    subprocess.run(["e2fsck", "-fn", str(first)], check=True, stdout=subprocess.PIPE)
    info = blkid(first)
    assert info["TYPE"] == "ext4" and info["LABEL"] == "root" and info["UUID"] == UUID
    cat = subprocess.run(["debugfs", "-R", "cat /etc/hostname", str(first)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         universal_newlines=True, check=False).stdout
    assert cat == "box\n"
    stat = subprocess.run(["debugfs", "-R", "stat /usr/bin/tool", str(first)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          universal_newlines=True, check=False).stdout
    assert "0x6553f100" in stat  # ctime/atime clamped to the epoch


def test_make_ext4_without_epoch_is_plain(tmp_path, tree):
    img = tmp_path / "x.img"
    res = fs.make_ext4(str(img), 16 << 20, tree=str(tree))
    assert blkid(img)["UUID"] == res["uuid"]


def test_make_ext4_too_small_for_contents(tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob").write_bytes(b"\1" * (3 << 20))
    with pytest.raises(fs.ImageError, match="do not fit|Could not allocate|No space"):
        fs.make_ext4(str(tmp_path / "x.img"), 1 << 20, tree=str(big))


def test_make_fat_real_populated_and_reproducible(tmp_path, tree):
    esp = tmp_path / "esp"
    (esp / "EFI" / "BOOT").mkdir(parents=True)
    (esp / "EFI" / "BOOT" / "BOOTX64.EFI").write_bytes(b"MZ" + os.urandom(4000))
    (esp / "readme.txt").write_text("hello")
    a, b = tmp_path / "a.fat", tmp_path / "b.fat"
    res = fs.make_fat(str(a), 40 << 20, tree=str(esp), label="ESP", uuid=UUID,
                      source_date_epoch=1700000000)
    time.sleep(1.1)
    fs.make_fat(str(b), 40 << 20, tree=str(esp), label="ESP", uuid=UUID,
                source_date_epoch=1700000000)
    if sha256(a) != sha256(b):
        subprocess.run("cmp -l %s %s | head -20 >&2" % (a, b), shell=True, check=False)
    assert sha256(a) == sha256(b)
    assert res["uuid"] == "6F1E-3C55"
    info = blkid(a)
    assert info["TYPE"] == "vfat" and info["LABEL"] == "ESP" and info["UUID"] == "6F1E-3C55"
    assert info["VERSION"] == "FAT32"
    subprocess.run(["fsck.fat", "-n", str(a)], check=True, stdout=subprocess.PIPE)
    out = subprocess.run(["mtype", "-i", str(a), "::/readme.txt"], stdout=subprocess.PIPE,
                         env=dict(os.environ, MTOOLS_SKIP_CHECK="1"),
                         universal_newlines=True, check=True).stdout
    assert out == "hello"
    listing = subprocess.run(["mdir", "-b", "-/", "-i", str(a), "::/"], stdout=subprocess.PIPE,
                             env=dict(os.environ, MTOOLS_SKIP_CHECK="1"),
                             universal_newlines=True, check=True).stdout
    assert "::/EFI/BOOT/BOOTX64.EFI" in listing


def test_make_fat_overflow(tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob").write_bytes(b"\1" * (3 << 20))
    with pytest.raises(fs.ImageError, match="do not fit|Disk full|full"):
        fs.make_fat(str(tmp_path / "x.fat"), 1 << 20, tree=str(big))


@pytest.mark.skipif(shutil.which("mkswap") is None, reason="mkswap not installed")
def test_make_swap(tmp_path):
    img = tmp_path / "swap"
    fs.make_swap(str(img), 4 << 20, label="sw", uuid=UUID)
    info = blkid(img)
    assert info["TYPE"] == "swap" and info["UUID"] == UUID and info["LABEL"] == "sw"
