# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vmhost.virt.partition_table through Ansible: small trees, msdos and GPT,
idempotence, force, bad inputs, SIGKILL mid-build."""
import json
import os
import stat
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from images_common import module_result, run_module, sha256_of, sigkill_rounds, start_module  # noqa: E402

from ansible_collections.vmhost.virt.plugins.module_utils import partitions  # noqa: E402

EPOCH = 1700000000
ROOT_UUID = "3d1c8a36-4b0e-4f7b-9d3a-2a6a8d9b1c01"


def sfdisk_json(path):
    out = subprocess.run(["sfdisk", "--json", str(path)], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    return json.loads(out)["partitiontable"]


def blkid_at(path, offset):
    out = subprocess.run(["blkid", "-p", "-O", str(offset), "-o", "export", str(path)],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def e2fsck(path, offset):
    subprocess.run(["e2fsck", "-fn", "%s?offset=%d" % (path, offset)], check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def fsck_fat(path, offset, size, tmp_path):
    # fsck.fat has no offset option: check a copy of the partition's bytes
    part = str(tmp_path / "fat-part.img")
    with open(str(path), "rb") as src, open(part, "wb") as dst:
        src.seek(offset)
        dst.write(src.read(size))
    subprocess.run(["fsck.fat", "-n", part], check=True, stdout=subprocess.PIPE)
    os.unlink(part)


def ext_cat(path, offset, name):
    return subprocess.run(["debugfs", "-R", "cat " + name, "%s?offset=%d" % (path, offset)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False).stdout


def fat_list(path, offset):
    return subprocess.run(["mdir", "-/", "-b", "-i", "%s@@%d" % (path, offset), "::/"],
                          stdout=subprocess.PIPE, universal_newlines=True, check=True,
                          env=dict(os.environ, MTOOLS_SKIP_CHECK="1")).stdout


@pytest.fixture
def small_trees(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("imagehost\n")
    (root / "boot").mkdir()
    (root / "boot" / "vmlinuz-6.1.0-9-amd64").write_bytes(b"kernel" * 100)
    (root / "boot" / "initrd.img-6.1.0-9-amd64").write_bytes(b"initrd" * 100)
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "usr" / "lib" / "blob").write_bytes(os.urandom(300000))
    os.symlink("usr/lib", str(root / "lib"))
    esp = tmp_path / "esp"
    (esp / "loader").mkdir(parents=True)
    (esp / "loader" / "loader.conf").write_text("timeout 3\n")
    return root, esp


def gpt_args(path, root, esp, **extra):
    args = {"path": str(path), "size": "96MiB", "label": "gpt", "bootloader": "efi",
            "source_date_epoch": EPOCH,
            "partitions": [
                {"size": "34MiB", "fs": "vfat", "label": "ESP", "flags": ["esp"],
                 "uuid": "ABCD-1234", "contents": str(esp), "name": "EFI system"},
                {"size": "rest", "fs": "ext4", "label": "root", "uuid": ROOT_UUID,
                 "type": "linux-root-x86-64", "flags": ["boot"], "contents": str(root),
                 "name": "root"}]}
    args.update(extra)
    return args


def test_gpt_efi_image_check_run_check_run(tmp_path, small_trees):
    root, esp = small_trees
    disk = tmp_path / "disk.raw"
    args = gpt_args(disk, root, esp)
    res = run_module("partition_table", args, check=True, diff=True)
    assert res["changed"] is True and not disk.exists()
    assert res["diff"]["before"] is None
    assert [p["size"] for p in res["diff"]["after"]["partitions"]] == [34 << 20, 60 << 20]
    res = run_module("partition_table", args, diff=True)
    assert res["changed"] is True, res
    table = sfdisk_json(disk)
    assert table["label"] == "gpt" and table["firstlba"] == 34
    p1, p2 = table["partitions"]
    assert (p1["start"], p1["size"]) == (2048, 34 * 2048)
    assert (p2["start"], p2["size"]) == (35 * 2048, 60 * 2048)
    assert p1["type"] == partitions.GPT_TYPES["esp"].upper() and p1["name"] == "EFI system"
    assert p2["type"] == partitions.GPT_TYPES["linux-root-x86-64"].upper()
    assert p2["attrs"] == "LegacyBIOSBootable" and p2["name"] == "root"
    assert table["id"].lower() == res["table"]["disk_id"]
    fat = blkid_at(disk, 1 << 20)
    wanted = ("vfat", "ESP", "ABCD-1234", "FAT32")
    assert (fat["TYPE"], fat["LABEL"], fat["UUID"], fat["VERSION"]) == wanted
    ext = blkid_at(disk, 35 << 20)
    assert (ext["TYPE"], ext["LABEL"], ext["UUID"]) == ("ext4", "root", ROOT_UUID)
    e2fsck(disk, 35 << 20)
    fsck_fat(disk, 1 << 20, 34 << 20, tmp_path)
    listing = fat_list(disk, 1 << 20)
    assert "::/EFI/BOOT/BOOTX64.EFI" in listing and "::/loader/loader.conf" in listing
    assert ext_cat(disk, 35 << 20, "/etc/hostname") == b"imagehost\n"
    cfg = ext_cat(disk, 35 << 20, "/boot/grub/grub.cfg").decode()
    assert "search --no-floppy --fs-uuid --set=root %s" % ROOT_UUID in cfg
    assert "linux /boot/vmlinuz-6.1.0-9-amd64 root=UUID=%s" % ROOT_UUID in cfg
    assert "initrd /boot/initrd.img-6.1.0-9-amd64" in cfg
    first = sha256_of(disk)
    res = run_module("partition_table", args, check=True)
    assert res["changed"] is False
    res = run_module("partition_table", args)
    assert res["changed"] is False and res["differences"] == []
    assert sha256_of(disk) == first
    # a second build from scratch with the same inputs is byte-identical
    again = tmp_path / "again" / "disk.raw"
    again.parent.mkdir()
    time.sleep(1.1)
    assert run_module("partition_table", gpt_args(again, root, esp))["changed"]
    assert sha256_of(again) == first
    assert sorted(os.listdir(str(tmp_path))) == ["again", "disk.raw", "esp", "root"]


def _stamp(path):
    st = os.stat(str(path))
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def test_checksum_sources_sees_a_byte_change_that_keeps_size_and_mtime(tmp_path, small_trees):
    """checksum_sources: turning it on rebuilds the image once (another record); an unchanged
    run writes nothing (the image's inode, mtime and ctime stay: no mkfs ran); a contents file
    rewritten with the same size and mtime is rebuilt without force, check mode predicting it."""
    root, _esp = small_trees
    disk = tmp_path / "sum.raw"
    args = {"path": str(disk), "size": "32MiB", "label": "gpt", "source_date_epoch": EPOCH,
            "partitions": [{"size": "rest", "fs": "ext4", "label": "root", "uuid": ROOT_UUID,
                            "contents": str(root)}]}
    assert run_module("partition_table", args)["changed"]
    try:
        os.getxattr(str(disk), "user.vmhost.built-from")
    except OSError:
        pytest.skip("this file system keeps no extended attributes")
    args["checksum_sources"] = True
    res = run_module("partition_table", args)
    assert res["changed"] and "contents or options changed" in res["differences"][0], res
    before = _stamp(disk)
    assert run_module("partition_table", args, check=True)["changed"] is False
    assert run_module("partition_table", args)["changed"] is False
    assert _stamp(disk) == before
    # same size, the old mtime put back: only the bytes tell
    hostname = root / "etc" / "hostname"
    old = os.stat(str(hostname))
    hostname.write_text("otherhost\n")
    os.utime(str(hostname), ns=(old.st_atime_ns, old.st_mtime_ns))
    assert (os.stat(str(hostname)).st_size, os.stat(str(hostname)).st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    res = run_module("partition_table", args, check=True)
    assert res["changed"] and "contents or options changed" in res["differences"][0], res
    assert _stamp(disk) == before
    res = run_module("partition_table", args)
    assert res["changed"] and not res.get("failed"), res
    assert ext_cat(disk, 1 << 20, "/etc/hostname") == b"otherhost\n"
    e2fsck(disk, 1 << 20)
    after = _stamp(disk)
    assert after[0] != before[0]
    assert run_module("partition_table", args, check=True)["changed"] is False
    assert run_module("partition_table", args)["changed"] is False
    assert _stamp(disk) == after


def test_derived_guids_and_environment_epoch(tmp_path, small_trees):
    root, esp = small_trees
    args = gpt_args(tmp_path / "a.raw", root, esp)
    del args["source_date_epoch"]
    for part in args["partitions"]:
        del part["uuid"]
    res_a = run_module("partition_table", args, env={"SOURCE_DATE_EPOCH": str(EPOCH)})
    assert res_a["source_date_epoch"] == EPOCH
    args["path"] = str(tmp_path / "b.raw")
    res_b = run_module("partition_table", args, env={"SOURCE_DATE_EPOCH": str(EPOCH)})
    assert res_a["table"]["disk_id"] == res_b["table"]["disk_id"]
    assert sha256_of(tmp_path / "a.raw") == sha256_of(tmp_path / "b.raw")
    # without an epoch GUIDs are random, and a re-run still reports no change
    args["path"] = str(tmp_path / "c.raw")
    res_c = run_module("partition_table", args)
    assert res_c["source_date_epoch"] is None
    assert res_c["table"]["disk_id"] != res_a["table"]["disk_id"]
    assert run_module("partition_table", args)["changed"] is False


def test_msdos_image(tmp_path, small_trees):
    root, esp = small_trees
    disk = tmp_path / "msdos.raw"
    args = {"path": str(disk), "size": "64MiB", "label": "msdos", "disk_guid": "0x1234abcd",
            "partitions": [
                {"size": "16MiB", "fs": "vfat", "label": "DATA", "contents": str(esp)},
                {"size": "8MiB", "fs": "swap", "label": "swap"},
                {"estimate_size": True, "fs": "ext4", "label": "root", "flags": ["boot"],
                 "contents": str(root)},
                {"size": "rest", "fs": "ext2", "label": "spare"}]}
    res = run_module("partition_table", args)
    assert res["changed"], res
    est = res["estimated_sizes"]["3"]
    assert est % (1 << 20) == 0 and est >= 1 << 20
    table = sfdisk_json(disk)
    assert table["label"] == "dos" and table["id"] == "0x1234abcd"
    parts = table["partitions"]
    assert [p["type"] for p in parts] == ["c", "82", "83", "83"]
    assert [p.get("bootable", False) for p in parts] == [False, False, True, False]
    assert parts[0]["start"] == 2048 and parts[0]["size"] == 16 * 2048
    assert parts[2]["size"] * 512 == est
    assert (parts[3]["start"] + parts[3]["size"]) * 512 == 64 << 20
    assert blkid_at(disk, 1 << 20)["LABEL"] == "DATA"
    swap = blkid_at(disk, 17 << 20)
    assert swap["TYPE"] == "swap" and swap["LABEL"] == "swap"
    e2fsck(disk, parts[2]["start"] * 512)
    e2fsck(disk, parts[3]["start"] * 512)
    assert blkid_at(disk, parts[3]["start"] * 512)["TYPE"] == "ext2"
    fsck_fat(disk, 1 << 20, 16 << 20, tmp_path)
    assert "::/loader/loader.conf" in fat_list(disk, 1 << 20)
    assert ext_cat(disk, parts[2]["start"] * 512, "/etc/hostname") == b"imagehost\n"
    assert run_module("partition_table", args)["changed"] is False


def test_different_layout_refused_unless_force(tmp_path, small_trees):
    root, esp = small_trees
    disk = tmp_path / "disk.raw"
    args = gpt_args(disk, root, esp)
    run_module("partition_table", args)
    before = sha256_of(disk)
    changed = gpt_args(disk, root, esp)
    changed["partitions"][0]["size"] = "40MiB"
    res = run_module("partition_table", changed, check=True, diff=True)
    assert res.get("failed") and "force: true" in res["msg"]
    assert "partition 1 size" in res["msg"]
    res = run_module("partition_table", changed)
    assert res.get("failed") and sha256_of(disk) == before
    res = run_module("partition_table", dict(changed, force=True), check=True, diff=True)
    assert res["changed"] and sha256_of(disk) == before
    assert res["diff"]["before"]["partitions"][0]["size"] == 34 << 20
    assert res["diff"]["after"]["partitions"][0]["size"] == 40 << 20
    res = run_module("partition_table", dict(changed, force=True))
    assert res["changed"] and sfdisk_json(disk)["partitions"][0]["size"] == 40 * 2048
    assert run_module("partition_table", changed)["changed"] is False


def test_existing_data_without_table_needs_force(tmp_path):
    disk = tmp_path / "data.raw"
    with open(str(disk), "wb") as handle:
        handle.write(b"precious")
        handle.truncate(16 << 20)
    args = {"path": str(disk), "partitions": [{"size": "rest", "fs": "ext4"}]}
    res = run_module("partition_table", args)
    assert res.get("failed") and "holds data" in res["msg"]
    with open(str(disk), "rb") as handle:
        assert handle.read(8) == b"precious"


BAD = [
    ({"partitions": [{"size": "200MiB"}]}, "larger than the disk"),
    ({"partitions": [{"size": "8MiB"}, {"size": "8MiB", "start": "4MiB"}]}, "overlaps"),
    ({"partitions": [{"size": "8MiB", "fs": "vfat", "label": "TWELVE_CHARS"}]}, "at most 11"),
    ({"partitions": [{"size": "8MiB", "fs": "ext4", "label": "seventeen_bytes__"}]},
     "at most 16 bytes"),
    ({"partitions": [{"size": "8MiB", "fs": "ext4", "uuid": "1234-not-a-uuid"}]},
     "not a UUID"),
    ({"partitions": [{"size": "8MiB", "fs": "ntfs"}]}, "value of fs must be one of"),
    ({"partitions": [{"size": "8MiB", "flags": ["hidden"]}]}, "value of flags must be one or more of"),
    ({"partitions": [{"size": "rest"}, {"size": "8MiB"}]}, "only allowed on the last"),
    ({"label": "msdos", "partitions": [{"size": "4MiB"}] * 5}, "at most 4 primary"),
    ({"partitions": [{"size": "8MiB", "fs": "ext4", "contents": "/nonexistent/tree"}]},
     "is not a directory"),
    ({"partitions": [{"size": "2MiB", "fs": "ext4", "contents": "BIG"}]},
     "more than the partition"),
    ({"partitions": [{"size": "8MiB", "type": "no-such-type"}]}, "neither a known name"),
    ({"partitions": [{"size": "8MiB", "start": "1000KiB"}]}, "not aligned"),
    ({"partitions": [{"size": "8MiB", "fs": "ext4"}], "bootloader": "efi"}, "esp"),
    ({"size": "ten", "partitions": [{"size": "8MiB"}]}, "not understood"),
]


CASES = [(a, m, False) for a, m in BAD] + [(a, m, True) for a, m in BAD[:4] + BAD[9:11]]


@pytest.mark.parametrize("args,match,existing", CASES,
                         ids=["%s-%s" % ("existing" if e else "new", m) for dummy, m, e in CASES])
def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path, args, match, existing):
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob").write_bytes(b"\1" * (3 << 20))
    disk = tmp_path / "disk.raw"
    before = None
    if existing:
        run_module("partition_table", {"path": str(disk), "size": "64MiB",
                                       "partitions": [{"size": "rest", "fs": "ext4"}]})
        before = sha256_of(disk)
    args = json.loads(json.dumps(args).replace('"BIG"', json.dumps(str(big))))
    args = dict({"path": str(disk), "size": "64MiB"}, **args)
    res = run_module("partition_table", args)
    assert res.get("failed"), res
    assert match in res["msg"], res["msg"]
    assert "Traceback" not in res["msg"]
    if existing:
        assert sha256_of(disk) == before
    else:
        assert not disk.exists()
    assert sorted(os.listdir(str(tmp_path))) == sorted(["big"] + (["disk.raw"] if existing else []))


def _kill_mid_build(proc, directory, deadline=120):
    """Wait until the module is writing its temporary image, then SIGKILL its group."""
    end = time.time() + deadline
    while time.time() < end:
        temps = [n for n in os.listdir(directory) if ".partition_table" in n]
        if any(".%d." % proc.pid in n for n in temps) and \
                any("-work.%d." % proc.pid in n for n in temps):
            time.sleep(0.3)
            break
        if proc.poll() is not None:
            raise AssertionError("module finished before it could be killed: %s"
                                 % proc.stdout.read())
        time.sleep(0.01)
    else:
        raise AssertionError("module never started writing")
    assert proc.poll() is None, "module finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture
def bulky_tree(tmp_path):
    tree = tmp_path / "bulky"
    # big enough (~150 MB, 6000 files) that the build takes seconds even on a fast machine
    blob = os.urandom(25000)
    for i in range(100):
        d = tree / ("d%02d" % i)
        d.mkdir(parents=True)
        for j in range(60):
            (d / ("f%02d" % j)).write_bytes(blob + bytes([i, j]))
    return tree


def test_sigkill_mid_build_leaves_nothing(tmp_path, bulky_tree):
    out = tmp_path / "out"
    out.mkdir()
    disk = out / "disk.raw"
    args = {"path": str(disk), "size": "384MiB", "source_date_epoch": EPOCH,
            "partitions": [{"size": "rest", "fs": "ext4", "contents": str(bulky_tree)}]}
    proc = start_module("partition_table", args, tmp_path)
    _kill_mid_build(proc, str(out))
    assert not disk.exists()
    # the next run cleans the killed run's leftovers and builds the image
    res = run_module("partition_table", args)
    assert res["changed"], res
    assert os.listdir(str(out)) == ["disk.raw"]


def test_sigkill_mid_rebuild_keeps_old_image(tmp_path, bulky_tree):
    out = tmp_path / "out"
    out.mkdir()
    disk = out / "disk.raw"
    old = {"path": str(disk), "size": "384MiB", "partitions": [{"size": "rest", "fs": "ext4"}]}
    assert run_module("partition_table", old)["changed"]
    before = sha256_of(disk)
    new = {"path": str(disk), "size": "384MiB", "force": True, "source_date_epoch": EPOCH,
           "partitions": [{"size": "300MiB", "fs": "ext4", "contents": str(bulky_tree)}]}
    proc = start_module("partition_table", new, tmp_path)
    _kill_mid_build(proc, str(out))
    assert sha256_of(disk) == before
    assert run_module("partition_table", old)["changed"] is False


def test_sigkill_30_rounds_image_old_or_new_and_no_temp_left(tmp_path):
    """SIGKILL the module at random points of a build, 30 times, switching between two layouts
    (a first creation is killed too): the image is absent, the old or the new one, never partial;
    the next run removes every temporary file and directory of the killed runs."""
    import time
    tree = tmp_path / "tree"
    for i in range(40):
        (tree / ("d%02d" % i)).mkdir(parents=True)
        for j in range(25):
            (tree / ("d%02d" % i) / ("f%02d" % j)).write_bytes(os.urandom(12000))
    out = tmp_path / "out"
    out.mkdir()
    disk = out / "disk.raw"

    def args_for(version, path=disk):
        return {"path": str(path), "size": "96MiB", "force": True, "source_date_epoch": EPOCH,
                "partitions": [{"size": "8MiB", "fs": "vfat", "flags": ["esp"], "contents": str(tree / "d00")},
                               {"size": "rest", "fs": "ext4", "label": version, "contents": str(tree)}]}

    def run(version, path=disk):
        return module_result(start_module("partition_table", args_for(version, path), tmp_path))

    known = {}
    for version in ("v1", "v2"):
        ref = tmp_path / ("ref-%s.raw" % version)
        assert run(version, ref)["changed"]
        known[sha256_of(ref)] = version
    assert len(known) == 2
    begin = time.monotonic()
    assert run("v1")["changed"]
    full = time.monotonic() - begin

    def start(round_):
        if round_ % 5 == 0 and disk.exists():
            os.unlink(str(disk))
        return start_module("partition_table", args_for("v%d" % (round_ % 2 + 1)), tmp_path)

    def check(round_):
        if disk.exists():
            assert sha256_of(disk) in known, "round %d left an image no complete run writes" % round_

    kills = sigkill_rounds(start, check, full)
    assert kills >= 10, "only %d of 30 runs were killed mid-way" % kills
    assert not run("v2").get("failed")
    assert sorted(os.listdir(str(out))) == ["disk.raw"] and known[sha256_of(disk)] == "v2"


# -- security findings 2, 3, 6, 8, 10 (docs/security.md) ---------------------
def test_finding2_data_beyond_first_mib_needs_force(tmp_path):
    disk = tmp_path / "fs.raw"
    with open(str(disk), "wb") as handle:
        handle.truncate(16 << 20)
        handle.seek(2 << 20)
        handle.write(b"precious data at 2 MiB")
    before = sha256_of(disk)
    res = run_module("partition_table", {"path": str(disk),
                                         "partitions": [{"size": "rest", "fs": "none"}]})
    assert res.get("failed") and "holds data" in res["msg"], res
    assert sha256_of(disk) == before


def test_finding2_3_symlinks_and_devices_not_replaced(tmp_path):
    victim = tmp_path / "victim.conf"
    victim.write_text("keep\n")
    link = tmp_path / "disk.raw"
    os.symlink(str(victim), str(link))
    args = {"path": str(link), "size": "8MiB", "partitions": [{"size": "rest"}], "force": True}
    res = run_module("partition_table", args)
    assert res.get("failed") and "symbolic link" in res["msg"], res
    assert os.path.islink(str(link)) and victim.read_text() == "keep\n"
    dev = tmp_path / "dev-null"       # a private device node, never the real /dev/null
    os.mknod(str(dev), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    res = run_module("partition_table", dict(args, path=str(dev)))
    assert res.get("failed") and "character device" in res["msg"], res
    assert stat.S_ISCHR(os.lstat(str(dev)).st_mode)


def test_finding3_planted_temp_symlinks_are_not_followed(tmp_path):
    """Temp names are unpredictable now; plant links at every name the old code used."""
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"do not touch")
    disk = out / "disk.raw"
    pid_guesses = range(os.getpid(), os.getpid() + 400)
    for pid in pid_guesses:
        for name in (".disk.raw.partition_table.%d" % pid, "disk.raw.fat.%d" % pid,
                     "disk.raw.debugfs.%d" % pid):
            os.symlink(str(victim), str(out / name))
    args = {"path": str(disk), "size": "40MiB", "source_date_epoch": EPOCH,
            "partitions": [{"size": "16MiB", "fs": "vfat", "contents": str(tmp_path / "t")},
                           {"size": "rest", "fs": "ext4", "contents": str(tmp_path / "t")}]}
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "hello").write_text("hi\n")
    res = run_module("partition_table", args)
    assert res["changed"] and not res.get("failed"), res
    assert victim.read_bytes() == b"do not touch"
    assert os.path.getsize(str(victim)) == 12
    assert (os.stat(str(disk)).st_mode & 0o777) == 0o600       # finding 10


def test_finding6_fat_contents_refuse_symlinks(tmp_path):
    tree = tmp_path / "esp"
    tree.mkdir()
    secret = tmp_path / "host-key"
    secret.write_text("HOSTSECRET\n")
    os.symlink(str(secret), str(tree / "key"))
    disk = tmp_path / "disk.raw"
    res = run_module("partition_table", {"path": str(disk), "size": "16MiB", "partitions": [
        {"size": "rest", "fs": "vfat", "contents": str(tree)}]})
    assert res.get("failed") and "symbolic link" in res["msg"], res
    assert not disk.exists()
    os.unlink(str(tree / "key"))
    os.symlink(str(tmp_path), str(tree / "dir"))
    res = run_module("partition_table", {"path": str(disk), "size": "16MiB", "partitions": [
        {"size": "rest", "fs": "vfat", "contents": str(tree)}]})
    assert res.get("failed") and "symbolic link" in res["msg"], res


def test_finding8_hostile_gpt_becomes_fail_json(tmp_path):
    import struct
    import zlib
    disk = tmp_path / "hostile.raw"
    assert run_module("partition_table", {"path": str(disk), "size": "16MiB",
                                          "partitions": [{"size": "rest"}]})["changed"]
    with open(str(disk), "r+b") as handle:
        for at in (512, (16 << 20) - 512):
            handle.seek(at)
            head = bytearray(handle.read(92))
            struct.pack_into("<I", head, 80, 2 ** 32 - 1)
            head[16:20] = b"\0\0\0\0"
            struct.pack_into("<I", head, 16, zlib.crc32(bytes(head)) & 0xffffffff)
            handle.seek(at)
            handle.write(bytes(head))
    before = sha256_of(disk)
    started = time.time()
    res = run_module("partition_table", {"path": str(disk), "partitions": [{"size": "rest"}]})
    assert time.time() - started < 60
    assert res.get("failed") and "unreadable partition table" in res["msg"], res
    assert "4294967295 entries" in res["msg"] and sha256_of(disk) == before
