# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vmhost.virt.disk_image through Ansible against the real qemu-img."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from images_common import run_module  # noqa: E402

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
])
def test_bad_inputs_fail_and_write_nothing(tmp_path, args, match):
    path = str(tmp_path / "x.qcow2")
    args = dict(args, path=path)
    res = run_module("disk_image", args)
    assert res.get("failed"), res
    assert match in res["msg"]
    assert list(tmp_path.iterdir()) == []
