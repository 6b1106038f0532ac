# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Acceptance: a GPT image with an ESP and an ext4 root from the harness's real
Debian tree, built twice (same sha256), checked with sfdisk/blkid/e2fsck/fsck.fat,
then booted under QEMU with OVMF to a login prompt.  No loop device, no mount."""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from images_common import TOP, run_module  # noqa: E402
from test_partition_table import blkid_at, e2fsck, ext_cat, fat_list, fsck_fat, sfdisk_json  # noqa: E402

if TOP not in sys.path:
    sys.path.insert(0, TOP)

pytestmark = [pytest.mark.slow, pytest.mark.root]

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS.fd"
EPOCH = 1700000000
ROOT_UUID = "9b2f6a52-1d7e-4c55-8f0e-6d1c0a5e7b33"
BOOT_DEADLINE = 900


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def real_tree():
    from tests.harness import api
    return api.build()["tree"]


def image_args(path, tree, esp):
    return {"path": str(path), "size": "2560MiB", "label": "gpt", "bootloader": "efi",
            "source_date_epoch": EPOCH,
            # the harness tree's fstab names /dev/vda (its unpartitioned image)
            "kernel_cmdline": "rw console=ttyS0,115200n8 fsck.mode=skip",
            "partitions": [
                {"size": "64MiB", "fs": "vfat", "label": "ESP", "flags": ["esp"],
                 "contents": str(esp)},
                {"size": "rest", "fs": "ext4", "label": "root", "uuid": ROOT_UUID,
                 "type": "linux-root-x86-64", "flags": ["boot"], "contents": tree}]}


@pytest.fixture(scope="module")
def efi_image(real_tree, tmp_path_factory):
    work = tmp_path_factory.mktemp("efi")
    esp = work / "esp-tree"
    (esp / "vmhost").mkdir(parents=True)
    (esp / "vmhost" / "README.txt").write_text("built by vmhost.virt.partition_table\n")
    disk = work / "disk.raw"
    res = run_module("partition_table", image_args(disk, real_tree, esp))
    assert res["changed"], res
    yield disk, res, work
    shutil.rmtree(str(work), ignore_errors=True)


def test_real_tree_image_is_what_was_asked(efi_image, real_tree, tmp_path):
    disk, res, work = efi_image
    table = sfdisk_json(disk)
    assert table["label"] == "gpt"
    esp, root = table["partitions"]
    assert (esp["start"], esp["size"]) == (2048, 64 * 2048)
    assert esp["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    assert root["type"] == "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
    assert root["start"] == 65 * 2048
    assert root["attrs"] == "LegacyBIOSBootable"
    fat = blkid_at(disk, 1 << 20)
    assert fat["TYPE"] == "vfat" and fat["LABEL"] == "ESP"
    assert fat["UUID"] == res["table"]["partitions"][0]["uuid"]
    ext = blkid_at(disk, 65 << 20)
    assert (ext["TYPE"], ext["LABEL"], ext["UUID"]) == ("ext4", "root", ROOT_UUID)
    e2fsck(disk, 65 << 20)
    fsck_fat(disk, 1 << 20, 64 << 20, tmp_path)
    listing = fat_list(disk, 1 << 20)
    assert "::/EFI/BOOT/BOOTX64.EFI" in listing and "::/vmhost/README.txt" in listing
    with open(os.path.join(real_tree, "etc", "hostname"), "rb") as handle:
        assert ext_cat(disk, 65 << 20, "/etc/hostname") == handle.read()
    assert ROOT_UUID in ext_cat(disk, 65 << 20, "/boot/grub/grub.cfg").decode()


def test_real_tree_image_is_reproducible(efi_image, real_tree):
    disk, res, work = efi_image
    again = work / "again"
    again.mkdir()
    second = again / "disk.raw"
    esp = work / "esp-tree"
    assert run_module("partition_table", image_args(second, real_tree, esp))["changed"]
    try:
        assert sha256(second) == sha256(disk)
    finally:
        os.unlink(str(second))


def test_efi_image_boots_under_ovmf(efi_image):
    disk, res, work = efi_image
    if not os.path.exists(OVMF_CODE):
        pytest.fail("OVMF is missing: install the ovmf package (bindep.txt lists it)")
    vars_copy = work / "OVMF_VARS.fd"
    shutil.copyfile(OVMF_VARS, str(vars_copy))
    console = work / "console.log"
    argv = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "1024",
            "-smp", "2", "-display", "none", "-no-reboot",
            "-drive", "if=pflash,format=raw,readonly=on,file=" + OVMF_CODE,
            "-drive", "if=pflash,format=raw,file=%s" % vars_copy,
            "-drive", "if=virtio,format=raw,snapshot=on,file=%s" % disk,
            "-nic", "user,model=virtio-net-pci", "-serial", "file:%s" % console]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    seen = b""
    try:
        deadline = time.time() + BOOT_DEADLINE
        while time.time() < deadline:
            if proc.poll() is not None:
                break
            if console.exists():
                seen = console.read_bytes()
                if b" login:" in seen:
                    break
            time.sleep(2)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
    tail = seen[-3000:].decode("utf-8", "replace")
    assert b"GNU GRUB" in seen, "GRUB never started; console tail:\n" + tail
    assert b"Linux version" in seen or b"Booting" in seen or b"systemd" in seen, tail
    assert b" login:" in seen, "no login prompt within %d s; console tail:\n%s" % (
        BOOT_DEADLINE, tail)
