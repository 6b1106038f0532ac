# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/qemu_img.py (fake runner, no qemu-img)."""
import json
import os
import stat
import sys

import pytest

from ansible_collections.vmhost.virt.plugins.module_utils import qemu_img as q

# the forged guest image is shared with the disk_image integration tests
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "integration"))
from images_common import forged_raw  # noqa: E402


class FakeRunner:
    def __init__(self, results=None):
        self.calls = []
        self.results = list(results or [])

    def __call__(self, argv, env=None):
        self.calls.append((argv, env))
        if self.results:
            return self.results.pop(0)
        return 0, "", ""


INFO_JSON = json.dumps({
    "virtual-size": 10737418240, "filename": "a.qcow2", "cluster-size": 65536,
    "format": "qcow2", "actual-size": 200704, "dirty-flag": False,
    "backing-filename": "base.qcow2", "backing-filename-format": "qcow2",
    "full-backing-filename": "/x/base.qcow2",
})


@pytest.mark.parametrize("text,expected", [
    (0, 0), (512, 512), ("1048576", 1048576), ("10G", 10 << 30), ("512MiB", 512 << 20),
    ("1.5 TiB", 3 << 39), ("100MB", 100 * 10 ** 6), ("1k", 1024), ("2 GiB", 2 << 30),
    ("1.5K", 1536), ("7b", 7), (" 3 M ", 3 << 20),
])
def test_parse_size(text, expected):
    assert q.parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "ten", "10Q", "-1", "1.3B", "1.0000001K", True, -4, 1.5])
def test_parse_size_rejects(bad):
    with pytest.raises(q.ImageError):
        q.parse_size(bad)


def test_human_size():
    assert q.human_size(512) == "512 B"
    assert q.human_size(3 << 29) == "1.5 GiB"
    assert q.human_size(1 << 20) == "1 MiB"


def test_parse_info_normalises():
    parsed = q.parse_info(INFO_JSON)
    assert parsed["format"] == "qcow2"
    assert parsed["virtual_size"] == 10737418240
    assert parsed["actual_size"] == 200704
    assert parsed["backing_file"] == "base.qcow2"
    assert parsed["backing_format"] == "qcow2"
    assert parsed["raw"]["cluster-size"] == 65536


@pytest.mark.parametrize("bad", ["not json", "[]", "{}"])
def test_parse_info_rejects(bad):
    with pytest.raises(q.ImageError):
        q.parse_info(bad)


def test_info_runs_qemu_img(tmp_path):
    img = tmp_path / "a.qcow2"
    img.write_bytes(b"")
    runner = FakeRunner([(0, INFO_JSON, "")])
    data = q.info(str(img), runner=runner)
    assert runner.calls[0][0] == ["qemu-img", "info", "--output=json", "-U", str(img)]
    assert data["virtual_size"] == 10737418240
    assert data["virtual-size"] == 10737418240


def test_info_missing_file(tmp_path):
    with pytest.raises(q.ImageError, match="does not exist"):
        q.info(str(tmp_path / "nope"), runner=FakeRunner())


def test_failure_message_carries_stderr(tmp_path):
    img = tmp_path / "a"
    img.write_bytes(b"")
    runner = FakeRunner([(1, "", "qemu-img: Could not open 'a': boom\n")])
    with pytest.raises(q.ImageError, match="exit 1.*boom"):
        q.info(str(img), runner=runner)


def test_create_argv():
    assert q.create_argv("/i.qcow2", "qcow2", "10G") == [
        "qemu-img", "create", "-q", "-f", "qcow2", "/i.qcow2", str(10 << 30)]
    assert q.create_argv("/i.raw", "raw", 1024, preallocation="falloc") == [
        "qemu-img", "create", "-q", "-f", "raw", "-o", "preallocation=falloc", "/i.raw", "1024"]
    assert q.create_argv("/o.qcow2", "qcow2", backing_file="b.qcow2", backing_format="qcow2") == [
        "qemu-img", "create", "-q", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "/o.qcow2"]


@pytest.mark.parametrize("kwargs,match", [
    (dict(fmt="vmdk", size=1), "not supported"),
    (dict(fmt="qcow2"), "needs a size"),
    (dict(fmt="raw", size=1, backing_file="b", backing_format="qcow2"), "needs format qcow2"),
    (dict(fmt="qcow2", size=1, backing_file="b"), "backing_format is required"),
    (dict(fmt="qcow2", size=1, preallocation="lots"), "preallocation"),
    (dict(fmt="qcow2", size=1, backing_file="b", backing_format="raw", preallocation="full"),
     "cannot be used with a backing"),
])
def test_create_argv_rejects(kwargs, match):
    with pytest.raises(q.ImageError, match=match):
        q.create_argv("/x", **kwargs)


def test_create_uses_runner():
    runner = FakeRunner()
    q.create("/x.qcow2", "qcow2", "1M", runner=runner)
    assert runner.calls[0][0][-1] == str(1 << 20)


def test_convert_argv():
    # finding 1: qemu-img never probes the format of what it converts
    with pytest.raises(q.ImageError, match="needs its format"):
        q.convert_argv("a.raw", "b.qcow2")
    assert q.convert_argv("a", "b", "qcow2", "raw", True) == [
        "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", "-c", "a", "b"]
    with pytest.raises(q.ImageError, match="compression"):
        q.convert_argv("a", "b", "raw", compress=True)


def test_convert_missing_source(tmp_path):
    with pytest.raises(q.ImageError, match="source image"):
        q.convert(str(tmp_path / "none"), str(tmp_path / "out"), runner=FakeRunner())


def test_resize_argv():
    assert q.resize_argv("a", "2G", fmt="qcow2", shrink=True) == [
        "qemu-img", "resize", "-q", "-f", "qcow2", "--shrink", "a", str(2 << 30)]


def test_atomic_convert_cleans_up_on_failure(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"x")
    dst = tmp_path / "dst"
    dst.write_bytes(b"old")

    def runner(argv, env=None):
        open(argv[-1], "wb").write(b"partial")
        return 1, "", "disk full"

    with pytest.raises(q.ImageError):
        q.atomic_convert(str(src), str(dst), runner=runner)
    assert dst.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "src"]


def test_format_of_refuses_guessed_qcow2_with_backing(tmp_path):
    raw, secret = forged_raw(tmp_path)
    with pytest.raises(q.ImageError, match="backing file %s" % secret):
        q.format_of(str(raw))
    assert q.format_of(str(raw), "raw") == "raw"
    with pytest.raises(q.ImageError, match="backing file"):
        q.convert(str(raw), str(tmp_path / "out.qcow2"))
    assert not (tmp_path / "out.qcow2").exists()


def test_info_with_format_does_not_probe(tmp_path):
    raw, _secret = forged_raw(tmp_path)
    assert q.info(str(raw))["format"] == "qcow2"          # what probing would believe
    data = q.info(str(raw), fmt="raw")
    assert data["format"] == "raw" and data["backing_file"] is None


def test_looks_like_disk(tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_bytes(b"listen = 0.0.0.0\n" * 32)    # 544 bytes of text
    assert "not a multiple" in q.looks_like_disk(str(conf))
    conf.write_bytes(b"x = 1\n" * 1024)             # 6144 bytes, text
    assert "text" in q.looks_like_disk(str(conf))
    disk = tmp_path / "d.raw"
    disk.write_bytes(b"\0" * 4096)
    assert q.looks_like_disk(str(disk)) is None


def test_atomic_create_refuses_device(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("creating a device node needs root")
    dev = tmp_path / "dev-null"       # a private device node, never the real /dev/null
    os.mknod(str(dev), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    with pytest.raises(Exception, match="character device"):
        q.atomic_create(str(dev), "raw", "1M")
    assert stat.S_ISCHR(os.lstat(str(dev)).st_mode)


# -- the disk_image backend on the shared module base (no Ansible) ----------------------
class _Tools(object):
    """What the backend needs from the module: qemu-img's path and mode/owner/group."""

    def __init__(self, differ=False):
        self.differ = differ
        self.set = []

    def get_bin_path(self, name):
        return "/usr/bin/" + name

    def attributes_differ(self, path):
        return self.differ

    def set_attributes(self, path):
        self.set.append(path)
        return self.differ

    def warn(self, msg):
        raise AssertionError(msg)


def _disk_params(path, **extra):
    params = dict(path=str(path), state="present", format="qcow2", size="1M", backing_file=None,
                  backing_format=None, preallocation=None, source=None, source_format=None,
                  compress=False, resize=True, shrink=False, force=False, mode=None)
    params.update(extra)
    return params


def test_disk_image_backend_check_mode_plans_and_writes_nothing(tmp_path):
    from ansible_collections.vmhost.virt.plugins.module_utils._disk_image import DiskImage
    result = DiskImage(_disk_params(tmp_path / "d.qcow2"), check_mode=True, tools=_Tools()).execute(diff=True)
    assert result["changed"] and result["actions"] == ["create"]
    assert result["diff"] == {"before": None, "after": {"format": "qcow2", "virtual_size": 1 << 20,
                                                        "backing_file": None}}
    assert list(tmp_path.iterdir()) == []


def test_disk_image_backend_applies_then_is_idempotent_and_sets_attributes(tmp_path):
    from ansible_collections.vmhost.virt.plugins.module_utils._disk_image import DiskImage
    path = tmp_path / "d.qcow2"
    tools = _Tools()
    result = DiskImage(_disk_params(path), tools=tools).execute()
    assert result["changed"] and result["actions"] == ["create"] and result["virtual_size"] == 1 << 20
    assert q.sniff(str(path)) == "qcow2" and len(tools.set) == 1     # on the temp file, before rename
    assert DiskImage(_disk_params(path), tools=_Tools()).execute()["changed"] is False
    tools = _Tools(differ=True)
    result = DiskImage(_disk_params(path), tools=tools).execute()
    assert result["changed"] and result["actions"] == ["attributes"] and tools.set == [str(path)]


def test_disk_image_backend_refusal_is_a_module_failure_and_writes_nothing(tmp_path):
    from ansible_collections.vmhost.virt.plugins.module_utils._disk_image import DiskImage
    from ansible_collections.vmhost.virt.plugins.module_utils._module import ModuleFailure
    conf = tmp_path / "app.conf"
    conf.write_text("password = hunter2\n")
    with pytest.raises(ModuleFailure) as err:
        DiskImage(_disk_params(conf, state="absent"), tools=_Tools()).execute()
    assert "does not look like a disk image" in err.value.msg and err.value.result["changed"] is False
    assert conf.read_text() == "password = hunter2\n"
