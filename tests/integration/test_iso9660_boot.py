"""A bootable ISO from vmhost.virt.iso9660, carrying the harness's kernel and initrd, boots under QEMU:
SeaBIOS from the CD (El Torito), OVMF from the CD (El Torito EFI), and SeaBIOS from the same file attached
as a hard disk (hybrid MBR). Success is the initrd's first message on the serial console."""
import os
import shutil
import subprocess
import time

import pytest

from iso9660_helpers import run_module

pytestmark = [pytest.mark.slow, pytest.mark.root,
              pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="QEMU is not installed")]

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS.fd"
# The Debian initramfs prints this before anything else it does; the kernel prints the other line as it
# hands over to the initrd's /init.
INITRD_MARKERS = ("Loading, please wait...", "Run /init as init process")
DEADLINE = 420

GRUB_CFG = """serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
echo "vmhost iso9660: GRUB loaded its configuration from the ISO"
menuentry "vmhost harness kernel" {
  linux /boot/vmlinuz console=ttyS0 panic=-1 root=/dev/nonexistent rootdelay=0
  initrd /boot/initrd.img
}
"""


@pytest.fixture(scope="module")
def bootable_iso(tmp_path_factory):
    from tests.harness import api  # the harness builds (or reuses) the Debian tree with its kernel and initrd

    image = api.build()
    out = tmp_path_factory.mktemp("boot") / "boot.iso"
    args = {
        "path": str(out), "volume_id": "vmhost_boot", "volume_uuid": "2024-05-01-12-00-00-00",
        "source_date_epoch": 1714564800,
        "files": [{"src": image["kernel"], "dest": "/boot/vmlinuz"},
                  {"src": image["initrd"], "dest": "/boot/initrd.img"}],
        "content": [{"dest": "/boot/grub/grub.cfg", "content": GRUB_CFG}],
        "boot": {},
    }
    result, failed = run_module(args)
    assert not failed, result
    again, failed = run_module(args)
    assert not failed and not again["changed"] and again["sha256"] == result["sha256"]
    return out


def boot_and_wait(tmp_path, argv, markers, deadline=DEADLINE):
    """Start QEMU (serial console to a file), wait for a marker, kill QEMU by its PID."""
    log = tmp_path / "console.log"
    argv = argv + ["-serial", "file:%s" % log]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    text = ""
    try:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if log.exists():
                text = log.read_bytes().decode("utf-8", "replace")
                found = [m for m in markers if m in text]
                if found:
                    return text
            if proc.poll() is not None:
                out = proc.stdout.read().decode("utf-8", "replace")
                pytest.fail("QEMU exited (%d) before the initrd spoke: %s\nconsole:\n%s"
                            % (proc.returncode, out, text[-3000:]))
            time.sleep(1)
        pytest.fail("no %s on the console within %d s; last console output:\n%s" % (markers, deadline, text[-3000:]))
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, 9)
            proc.wait()
    return text


def qemu_base(machine="pc"):
    return ["qemu-system-x86_64", "-machine", machine, "-accel", "tcg", "-m", "1024", "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]


def test_bios_cdrom(bootable_iso, tmp_path):
    text = boot_and_wait(tmp_path, qemu_base() + ["-cdrom", str(bootable_iso), "-boot", "d"], INITRD_MARKERS)
    assert "GRUB loaded its configuration" in text


@pytest.mark.skipif(not os.path.exists(OVMF_CODE), reason="OVMF is not installed")
def test_efi_cdrom(bootable_iso, tmp_path):
    vars_copy = tmp_path / "OVMF_VARS.fd"
    shutil.copyfile(OVMF_VARS, vars_copy)
    argv = qemu_base("q35") + [
        "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMF_CODE,
        "-drive", "if=pflash,format=raw,unit=1,file=%s" % vars_copy,
        "-drive", "file=%s,media=cdrom,if=ide,readonly=on" % bootable_iso,
    ]
    text = boot_and_wait(tmp_path, argv, INITRD_MARKERS)
    assert "GRUB loaded its configuration" in text


def test_bios_hybrid_disk(bootable_iso, tmp_path):
    argv = qemu_base() + ["-drive", "file=%s,format=raw,if=ide,media=disk,snapshot=on" % bootable_iso,
                          "-boot", "c"]
    text = boot_and_wait(tmp_path, argv, INITRD_MARKERS)
    assert "GRUB loaded its configuration" in text


@pytest.mark.skipif(not os.path.exists(OVMF_CODE), reason="OVMF is not installed")
def test_efi_hybrid_disk(bootable_iso, tmp_path):
    vars_copy = tmp_path / "OVMF_VARS.fd"
    shutil.copyfile(OVMF_VARS, vars_copy)
    argv = qemu_base("q35") + [
        "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMF_CODE,
        "-drive", "if=pflash,format=raw,unit=1,file=%s" % vars_copy,
        "-drive", "file=%s,format=raw,if=ide,media=disk,snapshot=on" % bootable_iso,
    ]
    text = boot_and_wait(tmp_path, argv, INITRD_MARKERS)
    assert "GRUB loaded its configuration" in text
