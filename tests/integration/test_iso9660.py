"""vmhost.virt.iso9660 through Ansible against the real xorriso: tree, dates, reproducibility,
idempotence, check mode, diff, cidata and bad inputs."""
import os
import shutil
import subprocess

import pytest
import yaml

from iso9660_helpers import extract, lsdl, pvd, run_module, run_ok
from images_common import module_result, sha256_of, sigkill_rounds, start_module

pytestmark = pytest.mark.skipif(shutil.which("xorriso") is None, reason="xorriso is not installed")

LONG = "a-long-file-name-with-Mixed-Case-spaces and-unicode-\u00e9t\u00e9-" + "x" * 120 + ".txt"
EPOCH = 1714564800  # 2024-05-01 12:00:00 UTC


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "etc" / "deep" / "deeper" / "deepest" / "d5" / "d6" / "d7" / "d8" / "d9").mkdir(parents=True)
    (root / "etc" / "deep" / "deeper" / "deepest" / "d5" / "d6" / "d7" / "d8" / "d9" / "bottom.txt").write_text("b\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    os.chmod(root / "bin" / "tool", 0o755)
    (root / "etc" / "secret").write_text("s\n")
    os.chmod(root / "etc" / "secret", 0o600)
    (root / "etc" / "setgid-dir").mkdir()
    os.chmod(root / "etc" / "setgid-dir", 0o2750)
    (root / LONG).write_text("long\n")
    os.symlink("bin/tool", root / "tool-link")
    os.symlink("/nonexistent/target", root / "etc" / "dangling")
    for p in list(root.rglob("*")) + [root]:
        os.utime(p, (1234567890, 1234567890), follow_symlinks=False)
    return root


def expected_tree():
    return {
        "/data": ("drwxr-xr-x", None),
        "/data/bin": ("drwxr-xr-x", None),
        "/data/bin/tool": ("-rwxr-xr-x", None),
        "/data/etc": ("drwxr-xr-x", None),
        "/data/etc/dangling": ("lrwxrwxrwx", "/nonexistent/target"),
        "/data/etc/deep": ("drwxr-xr-x", None),
        "/data/etc/deep/deeper": ("drwxr-xr-x", None),
        "/data/etc/deep/deeper/deepest": ("drwxr-xr-x", None),
        "/data/etc/deep/deeper/deepest/d5": ("drwxr-xr-x", None),
        "/data/etc/deep/deeper/deepest/d5/d6": ("drwxr-xr-x", None),
        "/data/etc/deep/deeper/deepest/d5/d6/d7": ("drwxr-xr-x", None),
        "/data/etc/deep/deeper/deepest/d5/d6/d7/d8": ("drwxr-xr-x", None),
        "/data/etc/deep/deeper/deepest/d5/d6/d7/d8/d9": ("drwxr-xr-x", None),
        "/data/etc/deep/deeper/deepest/d5/d6/d7/d8/d9/bottom.txt": ("-rw-r--r--", None),
        "/data/etc/secret": ("-rw-------", None),
        "/data/etc/setgid-dir": ("drwxr-s---", None),
        "/data/" + LONG: ("-rw-r--r--", None),
        "/data/tool-link": ("lrwxrwxrwx", "bin/tool"),
        "/motd": ("-rw-r-----", None),
        "/": ("drwxr-xr-x", None),
    }


def args_for(tree, path, **extra):
    args = {"path": str(path), "files": [{"src": str(tree), "dest": "/data"}],
            "content": [{"dest": "/motd", "content": "hello\n", "mode": "0640"}],
            "volume_id": "test_volume", "source_date_epoch": EPOCH}
    args.update(extra)
    return args


def test_tree_modes_names_links_dates(tree, tmp_path):
    image = tmp_path / "out.iso"
    args = args_for(tree, image, volume_uuid="2023-02-03-04-05-06-07")

    result, failed = run_module(args, check=True)
    assert not failed, result
    assert result["changed"] and not image.exists()
    predicted = result["sha256"]

    result, failed = run_module(args)
    assert not failed and result["changed"], result
    assert result["sha256"] == predicted == sha256_of(image)
    assert result["volume_id"] == "TEST_VOLUME" and result["volume_uuid"] == "2023-02-03-04-05-06-07"

    result, failed = run_module(args, check=True)
    assert not failed and not result["changed"], result
    result, failed = run_module(args)
    assert not failed and not result["changed"], result
    assert oct(os.stat(image).st_mode & 0o777) == "0o600"  # new images are private (finding 10)
    assert [p for p in os.listdir(tmp_path) if p.startswith(".iso9660-")] == []

    listing = lsdl(str(image))
    assert {p: (v[0], v[2]) for p, v in listing.items()} == expected_tree()
    assert all(v[3] == "May 1 2024" for v in listing.values()), listing
    assert listing["/motd"][1] == 6
    assert extract(str(image), "/data/" + LONG, tmp_path) == b"long\n"

    info = pvd(str(image))
    assert info["Volume Id"] == "TEST_VOLUME"
    assert info["Creation Time"] == info["Modif. Time"] == "2023020304050607"
    blkid = subprocess.run(["blkid", "-p", "-o", "export", str(image)], stdout=subprocess.PIPE, text=True, check=False)
    if blkid.returncode == 0:
        assert "UUID=2023-02-03-04-05-06-07" in blkid.stdout
    # Joliet tree carries the long name too (truncated only beyond 103 UCS-2 characters).
    joliet = subprocess.run(["isoinfo", "-J", "-f", "-i", str(image)], stdout=subprocess.PIPE, text=True, check=True)
    assert "/data/bin/tool" in joliet.stdout


def test_volume_dates_default_to_the_epoch(tree, tmp_path):
    image = tmp_path / "o.iso"
    result, failed = run_module(args_for(tree, image))
    assert not failed, result
    assert pvd(str(image))["Creation Time"] == "2024050112000000"
    assert result["volume_uuid"] == "2024-05-01-12-00-00-00"


def test_same_sha256_under_other_time_zones_and_clocks(tree, tmp_path):
    a, b, c = tmp_path / "a.iso", tmp_path / "b.iso", tmp_path / "c.iso"
    ra = run_ok(args_for(tree, a), env={"TZ": "UTC"})
    rb = run_ok(args_for(tree, b), env={"TZ": "Asia/Tokyo"}, prefix=["faketime", "2031-02-03 04:05:06"])
    for p in tree.rglob("*"):
        os.utime(p, None, follow_symlinks=False)   # the source tree's own dates must not matter either
    rc = run_ok(args_for(tree, c), env={"TZ": "America/Los_Angeles"}, prefix=["faketime", "2001-09-09 01:46:40"])
    assert sha256_of(a) == sha256_of(b) == sha256_of(c) == ra["sha256"] == rb["sha256"] == rc["sha256"]


def test_environment_epoch_and_default(tree, tmp_path):
    args = args_for(tree, tmp_path / "e.iso")
    del args["source_date_epoch"]
    result = run_ok(args, env={"SOURCE_DATE_EPOCH": str(EPOCH)})
    assert result["source_date_epoch"] == EPOCH
    result = run_ok(dict(args, path=str(tmp_path / "d.iso")))
    assert result["source_date_epoch"] == 1
    assert all(v[3] == "Jan 1 1970" for v in lsdl(str(tmp_path / "d.iso")).values())


def test_diff_reports_added_removed_changed(tree, tmp_path):
    image = tmp_path / "diff.iso"
    run_ok(args_for(tree, image))
    (tree / "etc" / "secret").write_text("t\n")   # same size, other bytes
    (tree / "bin" / "tool").unlink()
    (tree / "new.txt").write_text("new\n")
    result, failed = run_module(args_for(tree, image), check=True, diff=True)
    assert not failed and result["changed"]
    assert result["changes"] == {"added": ["/data/new.txt"], "removed": ["/data/bin/tool"],
                                 "changed": ["/data/etc/secret"]}
    before = sha256_of(image)
    assert before != result["sha256"]
    result2 = run_ok(args_for(tree, image), diff=True)
    assert result2["changes"] == result["changes"] and sha256_of(image) == result["sha256"]


def test_mode_change_only(tree, tmp_path):
    image = tmp_path / "m.iso"
    run_ok(args_for(tree, image))
    result = run_ok(args_for(tree, image, mode="0640"))
    assert result["changed"] and oct(os.stat(image).st_mode & 0o777) == "0o640"
    result = run_ok(args_for(tree, image, mode="0640"))
    assert not result["changed"]


def _stamp(path):
    st = os.stat(str(path))
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def test_checksum_sources_sees_a_byte_change_that_keeps_size_and_mtime(tree, tmp_path):
    """checksum_sources: an unchanged run touches nothing (no xorriso: the image's inode, mtime
    and ctime stay; a build that compared equal would rewrite the record and move the ctime),
    and a source rewritten with the same size and mtime is rebuilt, check mode predicting it."""
    image = tmp_path / "sum.iso"
    plain = run_ok(args_for(tree, image))
    try:
        os.getxattr(str(image), "user.vmhost.built-from")
    except OSError:
        pytest.skip("this file system keeps no extended attributes")
    args = args_for(tree, image, checksum_sources=True)
    # the option turned on: the plan differs, the image is built, compares equal, keeps its bytes
    result = run_ok(args)
    assert not result["changed"] and result["sha256"] == plain["sha256"] == sha256_of(image)
    before = _stamp(image)
    assert not run_ok(args, check=True)["changed"]
    assert not run_ok(args)["changed"]
    assert _stamp(image) == before
    # same size, the old mtime put back: only the bytes tell
    secret = tree / "etc" / "secret"
    old = os.stat(str(secret))
    secret.write_text("t\n")
    os.utime(str(secret), ns=(old.st_atime_ns, old.st_mtime_ns))
    assert (os.stat(str(secret)).st_size, os.stat(str(secret)).st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    predicted = run_ok(args, check=True)
    assert predicted["changed"] and predicted["sha256"] != plain["sha256"] and _stamp(image) == before
    result = run_ok(args)
    assert result["changed"] and result["sha256"] == predicted["sha256"] == sha256_of(image)
    assert extract(str(image), "/data/etc/secret", tmp_path) == b"t\n"
    after = _stamp(image)
    assert not run_ok(args, check=True)["changed"] and not run_ok(args)["changed"]
    assert _stamp(image) == after


def test_cidata_seed(tmp_path):
    image = tmp_path / "seed.iso"
    user = {"users": [{"name": "alice", "ssh_authorized_keys": ["ssh-ed25519 AAAAC3Nz alice@example"]}]}
    net = {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}
    result, failed = run_module({"path": str(image), "cidata": {"user_data": user,
                                                                "meta_data": {"local-hostname": "vm1"},
                                                                "network_config": net}})
    assert not failed, result
    assert result["volume_id"] == "CIDATA"
    assert set(lsdl(str(image))) == {"/", "/user-data", "/meta-data", "/network-config"}
    data = extract(str(image), "/user-data", tmp_path).decode()
    assert data.startswith("#cloud-config\n") and yaml.safe_load(data) == user
    meta = yaml.safe_load(extract(str(image), "/meta-data", tmp_path))
    assert meta["local-hostname"] == "vm1" and meta["instance-id"].startswith("iid-")
    assert yaml.safe_load(extract(str(image), "/network-config", tmp_path)) == net
    blkid = subprocess.run(["blkid", "-p", "-o", "export", str(image)], stdout=subprocess.PIPE, text=True, check=False)
    if blkid.returncode == 0:
        assert "LABEL=CIDATA" in blkid.stdout


def test_plain_iso_level_1(tmp_path):
    image = tmp_path / "l1.iso"
    result, failed = run_module({"path": str(image), "rock_ridge": False, "joliet": False, "interchange_level": 1,
                                 "content": [{"dest": "/DIR/README.TXT", "content": "r"}]})
    assert not failed, result
    listing = subprocess.run(["isoinfo", "-f", "-i", str(image)], stdout=subprocess.PIPE, text=True, check=True)
    assert "/DIR/README.TXT;1" in listing.stdout


BAD = [
    ({"volume_id": "x" * 33}, "volume_id 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' is invalid: it is 33 characters long"),
    ({"volume_id": "my disk!"}, "only A-Z, 0-9 and _"),
    ({"files": [{"src": "/nonexistent/src", "dest": "/x"}]}, "files[1] (/nonexistent/src): src /nonexistent/src does not exist"),
    ({"content": [{"dest": "/data/tool-link", "content": "x"}]}, "both map to the ISO path /data/tool-link"),
    ({"rock_ridge": False, "joliet": False, "interchange_level": 1}, "cannot be stored"),
    ({"boot": {"grub_config": "/boot/grub/grub.cfg"}}, "GRUB configuration /boot/grub/grub.cfg is not in the image"),
    ({"volume_uuid": "not-a-date"}, "volume_uuid 'not-a-date' is not an ISO 9660 UUID"),
    ({"mode": "rw-r--r--"}, "must be octal digits"),
    ({"content": [{"dest": "/x", "content": "x", "mode": "9999"}]}, "must be octal digits"),
    ({"volume_id": "abc", "cidata": {"user_data": {"a": 1}}}, "must be labelled CIDATA"),
    ({"interchange_level": 4}, "value of interchange_level must be one of"),
]


BAD_IDS = ["vid-long", "vid-chars", "src-missing", "clash", "level", "boot-file", "uuid",
           "mode", "content-mode", "cidata-label", "level-4"]


@pytest.mark.parametrize("extra, message", BAD, ids=BAD_IDS)
def test_bad_inputs_fail_clearly_and_write_nothing(tree, tmp_path, extra, message):
    image = tmp_path / "bad.iso"
    args = args_for(tree, image)
    extra = dict(extra)
    if "files" in extra:
        args["files"] = args["files"] + extra.pop("files")
    args.update(extra)
    result, failed = run_module(args)
    assert failed and message in result["msg"], result
    assert "Traceback" not in result.get("msg", "")
    assert sorted(os.listdir(tmp_path)) == ["tree"]
    # an existing image is left alone too
    good = run_ok(args_for(tree, image))
    before = sha256_of(image)
    result, failed = run_module(args)
    assert failed and sha256_of(image) == before == good["sha256"]
    assert sorted(os.listdir(tmp_path)) == ["bad.iso", "tree"]


# -- security findings 9 and 10 (docs/security.md) ---------------------------
def test_finding9_dest_wildcards_are_not_expanded(tmp_path):
    image = tmp_path / "w.iso"
    src = tmp_path / "key"
    src.write_text("private\n")
    os.chmod(str(src), 0o600)
    run_ok({"path": str(image), "source_date_epoch": EPOCH,
            "files": [{"src": str(src), "dest": "/key"}],
            "content": [{"dest": "/k*", "content": "pattern\n", "mode": "0644"}]})
    listing = lsdl(str(image))
    assert listing["/key"][0] == "-rw-------", listing
    assert listing["/k*"][0] == "-rw-r--r--", listing


def test_finding10_private_by_default_and_no_leftovers(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    image = out / "seed.iso"
    stale = out / (".seed.iso.iso9660.%d.dead00" % 2 ** 22)
    stale.mkdir()
    (stale / "seed.iso").write_bytes(b"partial")
    args = {"path": str(image), "source_date_epoch": EPOCH,
            "content": [{"dest": "/a.txt", "content": "a\n"}]}
    result = run_ok(args)
    assert result["changed"] and oct(os.stat(str(image)).st_mode & 0o777) == "0o600"
    assert sorted(os.listdir(str(out))) == ["seed.iso"]
    result = run_ok(dict(args, mode="0640", group="root"))
    assert result["changed"] and oct(os.stat(str(image)).st_mode & 0o777) == "0o640"
    result = run_ok(dict(args, content=[{"dest": "/a.txt", "content": "b\n"}]))
    assert result["changed"] and oct(os.stat(str(image)).st_mode & 0o777) == "0o640"
    assert not run_ok(dict(args, content=[{"dest": "/a.txt", "content": "b\n"}]))["changed"]


def test_finding2_symlink_path_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    link = tmp_path / "seed.iso"
    os.symlink(str(victim), str(link))
    result, failed = run_module({"path": str(link), "content": [{"dest": "/a", "content": "a"}]})
    assert failed and "symbolic link" in result["msg"]
    assert victim.read_text() == "keep\n" and os.path.islink(str(link))


def test_sigkill_30_rounds_image_old_or_new_and_no_leftovers(tmp_path):
    """SIGKILL the module at random points 30 times: the image is the old or the new one, never
    partial; the next run leaves no temporary directory behind."""
    import time
    data = tmp_path / "data"
    data.mkdir()
    for index in range(12):
        (data / ("blob%02d" % index)).write_bytes(os.urandom(2 << 20))
    out = tmp_path / "out"
    out.mkdir()
    image = out / "big.iso"

    def args_for_version(version, path=image):
        return {"path": str(path), "source_date_epoch": EPOCH,
                "files": [{"src": str(data), "dest": "/data"}],
                "content": [{"dest": "/version", "content": version}]}

    def run(version, path=image):
        return module_result(start_module("iso9660", args_for_version(version, path), tmp_path))

    # the complete images each version gives (the image bytes do not depend on its path)
    known = {}
    for version in ("v0", "v1", "v2"):
        ref = tmp_path / ("ref-%s.iso" % version)
        assert run(version, ref)["changed"]
        known[sha256_of(ref)] = version
    assert run("v0")["changed"]
    # every round replaces an existing image: time such a run (caches warm by now)
    begin = time.monotonic()
    assert run("v1")["changed"]
    full = time.monotonic() - begin

    def check(round_):
        assert sha256_of(image) in known, "round %d left an image that no complete run writes" % round_

    def start(round_):
        # always the version the image does not hold, so that every round has work (a round
        # after a killed one would otherwise find its version there and finish at once)
        version = "v2" if known.get(sha256_of(image)) == "v1" else "v1"
        return start_module("iso9660", args_for_version(version), tmp_path)

    kills = sigkill_rounds(start, check, full)
    assert kills >= 10, "only %d of 30 runs were killed mid-way" % kills
    assert not run("v1").get("failed")
    assert sorted(os.listdir(str(out))) == ["big.iso"] and known[sha256_of(image)] == "v1"
