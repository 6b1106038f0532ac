# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vmhost.virt.disk_image through Ansible against the real qemu-img."""
import os
import stat
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from images_common import forged_raw, module_result, run_module, sigkill_rounds, start_module  # noqa: E402

from ansible_collections.vmhost.virt.plugins.module_utils import qemu_img  # noqa: E402


def test_create_check_run_check_run(tmp_path):
    path = str(tmp_path / "disk.qcow2")
    args = {"path": path, "format": "qcow2", "size": "1GiB"}
    res = run_module("disk_image", args, check=True, diff=True)
    assert res["changed"] is True and res["actions"] == ["create"]
    assert res["diff"]["before"] is None and res["diff"]["after"]["virtual_size"] == 1 << 30
    assert not os.path.exists(path)
    res = run_module("disk_image", args)
    assert res["changed"] is True and res["virtual_size"] == 1 << 30 and res["format"] == "qcow2"
    assert res["actual_size"] > 0
    assert run_module("disk_image", args, check=True)["changed"] is False
    res = run_module("disk_image", args)
    assert res["changed"] is False and res["actions"] == []
    assert [p.name for p in tmp_path.iterdir()] == ["disk.qcow2"]


def test_grow_shrink_convert_absent(tmp_path):
    path = str(tmp_path / "d.img")
    run_module("disk_image", {"path": path, "format": "raw", "size": "16M"})
    res = run_module("disk_image", {"path": path, "format": "raw", "size": "32M"})
    assert res["actions"] == ["grow"] and res["virtual_size"] == 32 << 20
    res = run_module("disk_image", {"path": path, "format": "raw", "size": "8M"})
    assert res.get("failed") and "shrink: true" in res["msg"]
    assert qemu_img.info(path)["virtual_size"] == 32 << 20
    res = run_module("disk_image", {"path": path, "format": "raw", "size": "8M", "resize": False})
    assert res.get("failed") and "resize is false" in res["msg"]
    res = run_module("disk_image", {"path": path, "format": "raw", "size": "8M", "shrink": True})
    assert res["actions"] == ["shrink"] and res["virtual_size"] == 8 << 20
    with open(path, "r+b") as handle:
        handle.write(b"keep me")
    res = run_module("disk_image", {"path": path, "format": "qcow2"}, check=True)
    assert res["changed"] and res["actions"] == ["convert"]
    assert qemu_img.info(path)["format"] == "raw"
    res = run_module("disk_image", {"path": path, "format": "qcow2"})
    assert res["actions"] == ["convert"] and res["format"] == "qcow2"
    assert res["virtual_size"] == 8 << 20
    back = str(tmp_path / "back.raw")
    qemu_img.convert(path, back, "raw")
    with open(back, "rb") as handle:
        assert handle.read(7) == b"keep me"
    res = run_module("disk_image", {"path": path, "state": "absent"}, check=True)
    assert res["changed"] and os.path.exists(path)
    res = run_module("disk_image", {"path": path, "state": "absent"})
    assert res["changed"] and not os.path.exists(path)
    assert run_module("disk_image", {"path": path, "state": "absent"})["changed"] is False


def test_source_compressed_and_backing(tmp_path):
    raw = str(tmp_path / "src.raw")
    qemu_img.create(raw, "raw", "64M")
    with open(raw, "r+b") as handle:
        handle.write(b"A" * (1 << 20))
    out = str(tmp_path / "out.qcow2")
    res = run_module("disk_image", {"path": out, "source": raw, "source_format": "raw",
                                    "compress": True})
    assert res["changed"] and res["actions"] == ["create"] and res["virtual_size"] == 64 << 20
    assert res["actual_size"] < 1 << 20   # compressed
    assert run_module("disk_image", {"path": out, "source": raw})["changed"] is False
    overlay = str(tmp_path / "ov.qcow2")
    res = run_module("disk_image", {"path": overlay, "backing_file": out})
    assert res["backing_file"] == out and res["backing_format"] == "qcow2"
    assert res["virtual_size"] == 64 << 20
    assert run_module("disk_image", {"path": overlay, "backing_file": out})["changed"] is False
    other = str(tmp_path / "other.qcow2")
    qemu_img.create(other, "qcow2", "64M")
    res = run_module("disk_image", {"path": overlay, "backing_file": other})
    assert res.get("failed") and "force: true" in res["msg"]
    res = run_module("disk_image", {"path": overlay, "backing_file": other, "force": True})
    assert res["actions"] == ["recreate"] and res["backing_file"] == other


@pytest.mark.parametrize("args,match", [
    ({"size": "ten gigs"}, "not understood"),
    ({"size": "10Q"}, "unknown unit"),
    ({}, "give size"),
    ({"size": "1M", "format": "vmdk"}, "value of format"),
    ({"source": "/nonexistent/x.raw"}, "does not exist"),
    ({"size": "1M", "format": "raw", "backing_file": "/nonexistent/base.qcow2",
      "backing_format": "qcow2"}, "backing file /nonexistent/base.qcow2 does not exist"),
    ({"size": "1.5"}, "not a whole number"),
    ({"size": "1M", "preallocation": "sparse"}, "value of preallocation"),
    ({"size": "1M", "source": "/etc/hostname", "backing_file": "/etc/hostname"}, "mutually exclusive"),
    ({"size": "1M", "compress": True, "format": "raw", "source": "/nonexistent/x"}, "does not exist"),
    ({"size": "1M", "mode": "u=rwz"}, "mode"),
    ({"backing_file": "/nonexistent/base.qcow2"}, "does not exist"),
])
def test_bad_inputs_fail_and_write_nothing(tmp_path, args, match):
    path = str(tmp_path / "x.qcow2")
    args = dict(args, path=path)
    res = run_module("disk_image", args)
    assert res.get("failed"), res
    assert match in res["msg"]
    assert list(tmp_path.iterdir()) == []


# -- security findings 1, 2, 10 (docs/security.md) ---------------------------
def _read_as_raw(tmp_path, image):
    out = str(tmp_path / "readback.raw")
    qemu_img.convert(str(image), out, "raw", qemu_img.sniff(str(image)))
    with open(out, "rb") as handle:
        data = handle.read()
    os.unlink(out)
    return data


def test_finding1_guest_written_qcow2_header_reads_no_host_file(tmp_path):
    raw, _secret = forged_raw(tmp_path)
    # the image is declared raw: it stays raw, nothing is converted
    res = run_module("disk_image", {"path": str(raw), "format": "raw"})
    assert not res.get("failed"), res
    assert res["changed"] is False and res["format"] == "raw" and res["backing_file"] is None
    before = raw.read_bytes()
    # declared qcow2, its header names a backing file nobody asked for: refused
    res = run_module("disk_image", {"path": str(raw), "format": "qcow2", "size": "8M"})
    assert res.get("failed") and "was not given as backing_file" in res["msg"], res
    assert raw.read_bytes() == before
    # converting a copy that is a plain raw image reads it as raw (-f raw)
    plain = tmp_path / "plain.img"
    plain.write_bytes(b"\0" * 512 + b"GUESTDATA" + b"\0" * (4096 - 521))
    res = run_module("disk_image", {"path": str(plain), "format": "qcow2"})
    assert res["actions"] == ["convert"] and res["backing_file"] is None
    assert b"GUESTDATA" in _read_as_raw(tmp_path, plain)


def test_finding1_forged_source_not_followed(tmp_path):
    raw, _secret = forged_raw(tmp_path)
    dst = tmp_path / "new.qcow2"
    res = run_module("disk_image", {"path": str(dst), "source": str(raw)})
    assert res.get("failed") and "backing file" in res["msg"] and not dst.exists()
    res = run_module("disk_image", {"path": str(dst), "source": str(raw), "source_format": "raw"})
    assert not res.get("failed"), res
    assert b"HOSTSECRET" not in _read_as_raw(tmp_path, dst)


def test_finding2_config_file_not_converted_nor_removed(tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_text("password = hunter2\n")
    for args in ({"format": "qcow2"}, {"state": "absent"}, {"format": "raw", "size": "1M"}):
        res = run_module("disk_image", dict(args, path=str(conf)))
        assert res.get("failed") and "does not look like a disk image" in res["msg"], (args, res)
        assert conf.read_text() == "password = hunter2\n"
    res = run_module("disk_image", {"path": str(conf), "state": "absent", "force": True})
    assert res["changed"] and not conf.exists()


def test_finding2_device_nodes_never_replaced(tmp_path):
    # A private character device (the null device's numbers) rather than the real
    # /dev/null: a regression must not break the machine the tests run on.
    dev = tmp_path / "dev-null"
    os.mknod(str(dev), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    link = tmp_path / "null"
    os.symlink(str(dev), str(link))
    for args in ({"path": str(dev), "size": "1M"}, {"path": str(dev), "state": "absent"},
                 {"path": str(dev), "state": "absent", "force": True},
                 {"path": str(link), "size": "1M", "force": True}):
        res = run_module("disk_image", args)
        assert res.get("failed") and ("device" in res["msg"] or "symbolic link" in res["msg"]), res
    assert stat.S_ISCHR(os.lstat(str(dev)).st_mode) and os.path.islink(str(link))


def test_finding10_private_by_default_mode_owner_and_stale_temps(tmp_path):
    path = tmp_path / "new.qcow2"
    stale = tmp_path / (".new.qcow2.disk_image.%d.abc123" % 2 ** 22)
    stale.write_bytes(b"left by a killed run")
    foreign = tmp_path / ".new.qcow2.other.1.x"
    foreign.write_bytes(b"not ours")
    res = run_module("disk_image", {"path": str(path), "size": "1M"})
    assert res["changed"] and (os.stat(str(path)).st_mode & 0o777) == 0o600
    assert not stale.exists() and foreign.exists()
    res = run_module("disk_image", {"path": str(path), "size": "1M", "mode": "0640",
                                    "group": "root"})
    assert res["changed"] and (os.stat(str(path)).st_mode & 0o777) == 0o640
    assert run_module("disk_image", {"path": str(path), "size": "1M", "mode": "0640"})[
        "changed"] is False


def test_sigkill_30_rounds_target_old_or_new_and_no_temp_left(tmp_path):
    """SIGKILL the module at random points of a conversion, 30 times: the target is the old
    image or a complete new one, never partial; the next run removes every temp file."""
    import time
    src = tmp_path / "src.raw"
    with open(str(src), "wb") as handle:
        for dummy in range(48):
            handle.write(os.urandom(1 << 20))
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "disk.qcow2"
    args = {"path": str(dst), "source": str(src), "source_format": "raw", "format": "qcow2"}
    begin = time.monotonic()
    module_result(start_module("disk_image", dict(args, path=str(out / "timing.qcow2")), tmp_path))
    full = time.monotonic() - begin
    os.unlink(str(out / "timing.qcow2"))

    def start(round_):
        if round_ % 3 == 0 and dst.exists():
            os.unlink(str(dst))            # a first creation is killed too
        return start_module("disk_image", args, tmp_path)

    def check(round_):
        if dst.exists():
            info = qemu_img.info(str(dst), fmt="qcow2")
            assert info["virtual_size"] == 48 << 20, round_
            assert subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(src),
                                   str(dst)], capture_output=True, check=False).returncode == 0, round_

    kills = sigkill_rounds(start, check, full)
    assert kills >= 10, "only %d of 30 runs were killed mid-way" % kills
    if dst.exists():
        os.unlink(str(dst))
    assert module_result(start_module("disk_image", args, tmp_path))["changed"] is True
    assert sorted(os.listdir(str(out))) == ["disk.qcow2"]


def test_force_converts_the_source_again(tmp_path):
    """With source, an existing image is kept (not compared with its source) unless force
    is set: then the source is converted again, as the documentation says."""
    first, second = tmp_path / "first.raw", tmp_path / "second.raw"
    first.write_bytes(b"A" * 1024 * 1024)
    second.write_bytes(b"B" * 1024 * 1024)
    path, out = tmp_path / "disk.qcow2", tmp_path / "out.raw"
    base = {"path": str(path), "format": "qcow2", "source_format": "raw"}
    assert run_module("disk_image", dict(base, source=str(first)))["changed"]
    assert run_module("disk_image", dict(base, source=str(second)))["changed"] is False
    assert run_module("disk_image", dict(base, source=str(second), force=True))["changed"]
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(path), str(out)],
                   check=True)
    assert out.read_bytes() == second.read_bytes()
