# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu_img.py against the real qemu-img."""
import pytest

from ansible_collections.vmhost.virt.plugins.module_utils import qemu_img as q


def test_create_info_resize_convert(tmp_path):
    base = tmp_path / "base.raw"
    q.create(str(base), "raw", "16MiB")
    info = q.info(str(base))
    assert info["format"] == "raw" and info["virtual_size"] == 16 << 20
    q.resize(str(base), "32M", fmt="raw")
    assert q.info(str(base))["virtual_size"] == 32 << 20
    with pytest.raises(q.ImageError, match="shrink"):
        q.resize(str(base), "1M", fmt="raw")
    out = tmp_path / "out.qcow2"
    q.convert(str(base), str(out), "qcow2", src_format="raw", compress=True)
    assert q.info(str(out))["format"] == "qcow2"
    overlay = tmp_path / "overlay.qcow2"
    q.create(str(overlay), "qcow2", backing_file=str(out), backing_format="qcow2")
    info = q.info(str(overlay))
    assert info["backing_file"] == str(out)
    assert info["backing_format"] == "qcow2"
    assert info["virtual_size"] == 32 << 20


def test_info_of_garbage_fails_clearly(tmp_path):
    bad = tmp_path / "x.qcow2"
    q.create(str(bad), "qcow2", "1M")
    with open(str(bad), "r+b") as handle:
        handle.seek(20)   # cluster_bits: an impossible value
        handle.write(b"\x00\x00\x00\x02")
    with pytest.raises(q.ImageError, match="qemu-img info"):
        q.info(str(bad))
