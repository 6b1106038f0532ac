"""The shared I/O layer (_io) and tool runner (_tools)."""
import os
import stat

import pytest

from ansible_collections.vmhost.virt.plugins.module_utils import _io, _tools


def test_atomic_write_private_by_default_and_no_temp_left(tmp_path):
    target = tmp_path / "f"
    _io.atomic_write(str(target), b"data")
    assert target.read_bytes() == b"data" and stat.S_IMODE(target.stat().st_mode) == 0o600
    _io.atomic_write(str(target), b"new", 0o644)
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(str(tmp_path)) == ["f"]


def test_refuses_links_devices_and_directories(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    os.symlink(str(victim), str(tmp_path / "link"))
    (tmp_path / "dir").mkdir()
    for path, words in ((str(tmp_path / "link"), "symbolic link"), ("/dev/null", "character device"),
                        (str(tmp_path / "dir"), "directory")):
        with pytest.raises(_io.IoError, match=words):
            _io.atomic_write(path, b"x")
    assert victim.read_bytes() == b"keep"
    with pytest.raises(_io.IoError, match="symbolic link"):
        _io.open_nofollow(str(tmp_path / "link"))


def test_temp_names_are_unpredictable_and_exclusive(tmp_path):
    target = str(tmp_path / "img")
    names = set()
    for dummy in range(20):
        fd, name = _io.make_temp(target, "tag")
        os.close(fd)
        names.add(name)
        assert os.path.basename(name).startswith(".img.tag.%d." % os.getpid())
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o600
    assert len(names) == 20


def test_clean_stale_removes_only_dead_runs_of_our_tag(tmp_path):
    target = str(tmp_path / "img")
    dead = tmp_path / (".img.tag.%d.abc" % (2 ** 22 + 1))
    dead.write_bytes(b"x")
    dead_dir = tmp_path / (".img.tag.%d.xyz" % (2 ** 22 + 2))
    dead_dir.mkdir()
    (dead_dir / "inner").write_bytes(b"y")
    alive = tmp_path / (".img.tag.%d.abc" % os.getppid())
    alive.write_bytes(b"x")
    other_tag = tmp_path / (".img.other.%d.abc" % (2 ** 22 + 1))
    other_tag.write_bytes(b"x")
    other_target = tmp_path / (".img2.tag.%d.abc" % (2 ** 22 + 1))
    other_target.write_bytes(b"x")
    removed = _io.clean_stale(target, "tag")
    assert sorted(removed) == sorted([str(dead), str(dead_dir)])
    assert alive.exists() and other_tag.exists() and other_target.exists()


def test_first_data_skips_holes(tmp_path):
    path = tmp_path / "sparse"
    with open(str(path), "wb") as handle:
        handle.truncate(8 << 20)
    with open(str(path), "rb") as handle:
        assert _io.first_data(handle) is None
    with open(str(path), "r+b") as handle:
        handle.seek((5 << 20) + 3)
        handle.write(b"\x01")
    with open(str(path), "rb") as handle:
        assert _io.first_data(handle) == (5 << 20) + 3


def test_run_command_argv_only_with_timeout():
    assert _tools.run_command(["sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, "out\n", "err\n")
    rc, _out, err = _tools.run_command(["/nonexistent/tool"])
    assert rc == 127 and "cannot run" in err
    rc, _out, err = _tools.run_command(["sleep", "5"], timeout=0.2)
    assert rc == 124 and "did not finish" in err
    assert _tools.run_command(["sh", "-c", "echo $X"], extra_env={"X": "y"})[1] == "y\n"
    with pytest.raises(TypeError):
        _tools.run_command("echo hi")
