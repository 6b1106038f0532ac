"""checksum_sources: the plan digests of iso9660 and partition_table cover the sources' bytes only
when asked, and read them safely (no symlink followed, no FIFO waited on, clear errors)."""
import hashlib
import json
import os
import signal
import stat

import pytest

from ansible_collections.vmhost.virt.plugins.module_utils import image_builder
from ansible_collections.vmhost.virt.plugins.module_utils._checksum import file_sha256
from ansible_collections.vmhost.virt.plugins.module_utils.iso import plan as isoplan
from ansible_collections.vmhost.virt.plugins.module_utils.iso.names import IsoError
from ansible_collections.vmhost.virt.plugins.module_utils.qemu_img import ImageError


class _Refused(Exception):
    pass


@pytest.fixture
def alarm():
    """Fail instead of hanging when a read blocks (a FIFO opened without O_NONBLOCK)."""
    def ring(signum, frame):
        raise AssertionError("the read blocked")
    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _ident(path):
    st = os.lstat(str(path))
    return st.st_dev, st.st_ino


# ------------------------------------------------------------------ file_sha256

def test_file_sha256_hashes_every_byte_across_chunks(tmp_path):
    data = os.urandom((1 << 20) * 2 + 12345)          # more than two 1 MiB reads
    path = tmp_path / "big"
    path.write_bytes(data)
    assert file_sha256(str(path), _ident(path), _Refused) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_sha256(str(empty), _ident(empty), _Refused) == hashlib.sha256(b"").hexdigest()


def test_file_sha256_never_follows_a_planted_symlink(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root's secret\n")
    path = tmp_path / "a"
    path.write_text("listed\n")
    ident = _ident(path)
    path.unlink()
    os.symlink(str(secret), str(path))
    with pytest.raises(_Refused, match="became a symbolic link.*not following it"):
        file_sha256(str(path), ident, _Refused, "files[0] (/src)")


def test_file_sha256_does_not_wait_on_a_fifo_swapped_in(tmp_path, alarm):
    path = tmp_path / "a"
    path.write_text("listed\n")
    ident = _ident(path)
    path.unlink()
    os.mkfifo(str(path))
    with pytest.raises(_Refused, match="is now a FIFO, no longer the regular file listed"):
        file_sha256(str(path), ident, _Refused)


def test_file_sha256_replaced_vanished_or_now_a_directory(tmp_path):
    path = tmp_path / "a"
    path.write_text("listed\n")
    ident = _ident(path)
    newer = tmp_path / "newer"                         # made while the listed file still exists:
    newer.write_text("another file, same name\n")     # another inode number
    os.replace(str(newer), str(path))
    with pytest.raises(_Refused, match="was replaced by another file"):
        file_sha256(str(path), ident, _Refused)
    path.unlink()
    with pytest.raises(_Refused, match="^origin: .*/a vanished after the sources were listed$"):
        file_sha256(str(path), ident, _Refused, "origin")
    path.mkdir()
    with pytest.raises(_Refused, match="is now a directory"):
        file_sha256(str(path), ident, _Refused)


# ------------------------------------------------------------------ iso9660 Plan.digest

def _legacy_iso_digest(plan, tools=()):
    """Plan.digest as releases without checksum_sources computed it (the formula of the
    records already on images)."""
    digest = hashlib.sha256()
    head = [1, plan.volume_id, plan.volume_digits, plan.epoch, plan.rock_ridge,
            plan.joliet, plan.level, plan.boot, plan.grafts]
    for tool in tools:
        try:
            st = os.stat(tool)
            head.append([tool, st.st_size, st.st_mtime_ns])
        except OSError:
            head.append([tool, None])
    digest.update(json.dumps(head, sort_keys=True).encode("utf-8", "surrogateescape"))
    for key in sorted(plan.entries):
        e = plan.entries[key]
        data = hashlib.sha256(e.data).hexdigest() if e.data is not None else None
        digest.update(repr((e.path, e.kind, e.mode, e.target, e.src, e.stamp, data)).encode(
            "utf-8", "surrogateescape"))
    return digest.hexdigest()


@pytest.fixture
def src_tree(tmp_path):
    tree = tmp_path / "src"
    (tree / "sub").mkdir(parents=True)
    (tree / "a").write_bytes(b"first\n")
    (tree / "sub" / "b").write_bytes(b"second\n")
    os.symlink("a", str(tree / "link"))
    single = tmp_path / "single"
    single.write_bytes(b"single\n")
    os.symlink(str(single), str(tmp_path / "single-link"))     # a src named by a link is followed
    return tree


def _iso_plan(tree):
    files = [{"src": str(tree), "dest": "/d"}, {"src": str(tree.parent / "single-link"), "dest": "/s"}]
    return isoplan.make_plan(files=files, content=[{"dest": "/motd", "content": "hi\n"}], source_date_epoch=7)


def test_iso_digest_without_checksum_is_the_recorded_formula(src_tree):
    plan = _iso_plan(src_tree)
    tools = [str(src_tree / "a"), str(src_tree / "missing-tool")]
    assert plan.digest() == plan.digest(checksum_sources=False) == _legacy_iso_digest(plan)
    assert plan.digest(tools) == _legacy_iso_digest(plan, tools)
    assert plan.digest(checksum_sources=True) not in (plan.digest(), _legacy_iso_digest(plan))


def test_iso_digest_with_checksum_sees_bytes_the_stamps_do_not(src_tree, tmp_path):
    """The same plan (same stamps: path, size, mtime, ctime as walked) over other bytes: equal
    digests without the option, different ones with it."""
    plan = _iso_plan(src_tree)
    before = (plan.digest(), plan.digest(checksum_sources=True))
    assert plan.digest(checksum_sources=True) == before[1]      # deterministic
    for path in (src_tree / "sub" / "b", tmp_path / "single"):   # a walked file, a followed src
        with open(str(path), "r+b") as handle:                   # same inode, same size
            handle.write(b"X")
        after = (plan.digest(), plan.digest(checksum_sources=True))
        assert after[0] == before[0] and after[1] != before[1]
        before = after


def test_iso_digest_with_checksum_refuses_a_swapped_source(src_tree, alarm):
    plan = _iso_plan(src_tree)
    victim = src_tree / "sub" / "b"
    victim.unlink()
    os.symlink("/etc/shadow", str(victim))
    with pytest.raises(IsoError, match=r"files\[0\] .*sub/b became a symbolic link"):
        plan.digest(checksum_sources=True)
    assert plan.digest() == _legacy_iso_digest(plan)          # the default never opens a source
    victim.unlink()
    os.mkfifo(str(victim))
    with pytest.raises(IsoError, match="sub/b is now a FIFO"):
        plan.digest(checksum_sources=True)
    victim.unlink()
    with pytest.raises(IsoError, match="sub/b vanished"):
        plan.digest(checksum_sources=True)


# ------------------------------------------------------------------ partition_table plan_digest

def _legacy_tree_lines(tree):
    for root, dirs, files in os.walk(str(tree)):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(root, name)
            st = os.lstat(full)
            target = os.readlink(full) if stat.S_ISLNK(st.st_mode) else ""
            yield "%s\0%o %d:%d %d %d %d\0%s\n" % (
                os.path.relpath(full, str(tree)), st.st_mode, st.st_uid, st.st_gid, st.st_size,
                st.st_mtime_ns, st.st_ctime_ns, target)


def _legacy_pt_digest(backend):
    digest = hashlib.sha256()
    tools = [image_builder.shutil.which(t) or t
             for t in ("mkfs.ext4", "mkfs.fat", "mcopy", "debugfs", "grub-mkimage")]
    stamps = []
    for tool in tools:
        try:
            st = os.stat(tool)
            stamps.append([tool, st.st_size, st.st_mtime_ns])
        except OSError:
            stamps.append([tool, None])
    request = dict((key, backend.params.get(key)) for key in (
        "label", "size", "disk_guid", "partitions", "bootloader", "kernel_cmdline"))
    head = [1, request, backend.epoch, stamps]
    digest.update(json.dumps(head, sort_keys=True, default=str).encode("utf-8", "surrogateescape"))
    for part in backend.layout["partitions"]:
        if part["contents"] is not None:
            digest.update(("\0partition %d\0" % part["number"]).encode("ascii"))
            for line in _legacy_tree_lines(part["contents"]):
                digest.update(line.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _pt(tmp_path, tree, **extra):
    params = dict(path=str(tmp_path / "disk.raw"), size="16MiB", label="gpt", disk_guid=None,
                  partitions=[{"size": "rest", "fs": "ext4", "contents": str(tree)}],
                  source_date_epoch=1700000000, bootloader="none", kernel_cmdline=None, force=False)
    params.update(extra)
    return image_builder.PartitionTable(params, environ={}).prepare()


def test_partition_table_digest_without_checksum_is_the_recorded_formula(src_tree, tmp_path):
    plain = _pt(tmp_path, src_tree)
    assert plain.plan_digest() == _legacy_pt_digest(plain)
    assert _pt(tmp_path, src_tree, checksum_sources=False).plan_digest() == _legacy_pt_digest(plain)
    assert list(image_builder.tree_stamps(str(src_tree))) == list(_legacy_tree_lines(src_tree))
    checked = _pt(tmp_path, src_tree, checksum_sources=True)
    assert checked.plan_digest() != plain.plan_digest()
    assert checked.plan_digest() == checked.plan_digest()


def test_partition_table_tree_lines_with_checksum_carry_each_regular_files_bytes(src_tree):
    """Each regular file's line is its stamp line plus the SHA-256 of its bytes; links and
    directories are not read."""
    legacy = list(_legacy_tree_lines(src_tree))
    checked = list(image_builder.tree_stamps(str(src_tree), checksum=True))
    assert len(checked) == len(legacy) == 4
    for old, new in zip(legacy, checked):
        name = old.split("\0", 1)[0]
        path = src_tree / name
        if path.is_symlink() or path.is_dir():
            assert new == old
        else:
            assert new == old[:-1] + "\0" + hashlib.sha256(path.read_bytes()).hexdigest() + "\n"


def test_partition_table_digest_with_checksum_refuses_a_swapped_file(src_tree, tmp_path, monkeypatch, alarm):
    backend = _pt(tmp_path, src_tree, checksum_sources=True)
    real_lstat = os.lstat
    victim = str(src_tree / "a")

    def swap_after_lstat(path, *args, **kwargs):
        st = real_lstat(path, *args, **kwargs)
        if path == victim and stat.S_ISREG(st.st_mode):     # the walk saw a file: a FIFO takes its place
            os.unlink(victim)
            os.mkfifo(victim)
        return st
    monkeypatch.setattr(image_builder.os, "lstat", swap_after_lstat)
    with pytest.raises(ImageError, match="partition 1 contents: .*/a is now a FIFO"):
        backend.plan_digest()
