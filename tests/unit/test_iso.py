"""Unit tests of the plugins/module_utils/iso package: validation, planning, the xorriso command."""
import os
import re
import shutil
import subprocess

import pytest
import yaml
from hypothesis import given, strategies as st

from ansible_collections.vmhost.virt.plugins.module_utils._tools import FAT_EPOCH
from ansible_collections.vmhost.virt.plugins.module_utils.iso import grub, plan as isoplan, names, writer, xorriso


# ------------------------------------------------------------ volume id, dates, uuid

def test_volume_id_is_upper_cased():
    assert names.normalize_volume_id("guix_image") == "GUIX_IMAGE"


@pytest.mark.parametrize("vid, fragment", [
    ("a" * 33, "33 characters long after upper-casing, at most 32"),
    ("my-disk", "'-'"),
    ("two words", "' '"),
    ("", "empty"),
    ("été", "'É'"),
])
def test_volume_id_errors_say_what_is_wrong(vid, fragment):
    with pytest.raises(names.IsoError) as err:
        names.normalize_volume_id(vid)
    assert fragment in str(err.value)


def test_volume_id_reports_both_problems():
    with pytest.raises(names.IsoError) as err:
        names.normalize_volume_id("x-" * 20)
    assert "40 characters" in str(err.value) and "'-'" in str(err.value)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=32))
def test_valid_volume_ids_round_trip(vid):
    assert names.normalize_volume_id(vid) == vid.upper()


def test_epoch_precedence():
    assert names.resolve_epoch(5, {"SOURCE_DATE_EPOCH": "7"}) == 5
    assert names.resolve_epoch(None, {"SOURCE_DATE_EPOCH": "7"}) == 7
    assert names.resolve_epoch(None, {}) == 1
    assert names.resolve_epoch(None, {"SOURCE_DATE_EPOCH": ""}) == 1
    with pytest.raises(names.IsoError, match="SOURCE_DATE_EPOCH must be a whole number"):
        names.resolve_epoch(None, {"SOURCE_DATE_EPOCH": "yesterday"})
    with pytest.raises(names.IsoError, match="between 0 and"):
        names.resolve_epoch(-3, {})


def test_timestring_is_utc_whatever_tz(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert names.timestring(1) == "1970010100000100"
    assert names.timestring(1714564800) == "2024050112000000"


def test_volume_uuid_forms():
    assert names.parse_volume_uuid("2024-05-01-12-00-00-00") == ("2024050112000000", "2024-05-01-12-00-00-00")
    assert names.parse_volume_uuid("2024050112000000")[1] == "2024-05-01-12-00-00-00"
    for bad in ("2024-13-01-12-00-00-00", "1234", "2024-05-01T12:00:00", "2024-0501-12-00-00-00-0"):
        with pytest.raises(names.IsoError, match="volume_uuid"):
            names.parse_volume_uuid(bad)


def test_fat_serial_is_8_hex_digits_and_depends_on_uuid():
    a, b = names.fat_serial("2024-05-01-12-00-00-00"), names.fat_serial("2024-05-01-12-00-00-01")
    assert re.match(r"^[0-9A-F]{8}$", a) and a != b


# ------------------------------------------------------------ names

@pytest.mark.parametrize("name, is_dir, level, ok", [
    ("README.TXT", False, 1, True),
    ("readme.txt", False, 1, True),          # upper-cased like the volume id
    ("LONGNAME9.TXT", False, 1, False),
    ("FILE.HTML", False, 1, False),
    ("DIRECTORY", True, 1, False),
    ("DIRECTORY", True, 2, True),
    ("A" * 31, False, 2, False),
    ("A" * 30, False, 3, True),
    ("my-file", False, 3, False),
    ("two.dots.txt", False, 3, False),
])
def test_plain_iso_names_follow_the_level(name, is_dir, level, ok):
    problem = names.name_problem(name, is_dir, level, rock_ridge=False, joliet=False)
    assert (problem is None) == ok, problem


def test_rock_ridge_allows_long_names_up_to_255_bytes():
    assert names.name_problem("x" * 255, False, 1, True, True) is None
    assert "255 bytes" in names.name_problem("x" * 256, False, 1, True, True)


def test_joliet_without_rock_ridge_limits_names():
    assert names.name_problem("a b-c.txt", False, 1, False, True) is None
    assert "64 characters" in names.name_problem("x" * 65, False, 1, False, True)
    assert "':'" in names.name_problem("a:b", False, 1, False, True)


@pytest.mark.parametrize("dest", ["", "/a/../b", "/a//b", "./x"])
def test_bad_dest(dest):
    with pytest.raises(names.IsoError):
        names.split_dest(dest, "files[0]")


# ------------------------------------------------------------ planning

@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "deeper" / "file.txt").write_text("x")
    (root / "a-rather-long-name-with-MixedCase and spaces.txt").write_text("y")
    os.symlink("sub/deeper/file.txt", root / "link")
    os.chmod(root / "sub", 0o750)
    return root


def test_plan_walks_sorted_and_keeps_modes_and_links(tree):
    plan = isoplan.make_plan(files=[{"src": str(tree), "dest": "/data"}],
                             content=[{"dest": "/etc/motd", "content": "hi", "mode": "0600"}])
    assert plan.listing() == [
        "d 0755 /data",
        "f 0644 /data/a-rather-long-name-with-MixedCase and spaces.txt",
        "l 0777 /data/link -> sub/deeper/file.txt",
        "d 0750 /data/sub",
        "d 0755 /data/sub/deeper",
        "f 0644 /data/sub/deeper/file.txt",
        "d 0755 /etc",
        "f 0600 /etc/motd",
    ]
    assert plan.volume_id == "ISOIMAGE" and plan.epoch == 1
    assert plan.warnings == []


def test_joliet_truncation_is_a_warning():
    plan = isoplan.make_plan(content=[{"dest": "/" + "n" * 104, "content": "1"}])
    assert "shortens" in plan.warnings[0] and "103" in plan.warnings[0]


def test_missing_src(tmp_path):
    with pytest.raises(names.IsoError, match=r"files\[0\] .*does not exist"):
        isoplan.make_plan(files=[{"src": str(tmp_path / "nope"), "dest": "/x"}])


def test_two_entries_one_iso_path(tree):
    with pytest.raises(names.IsoError, match=r"both map to the ISO path /data/link"):
        isoplan.make_plan(files=[{"src": str(tree), "dest": "/data"}],
                          content=[{"dest": "/data/link", "content": "clash"}])
    with pytest.raises(names.IsoError, match=r"files\[0\].*files\[1\].*both map to the ISO path /x"):
        isoplan.make_plan(files=[{"src": str(tree / "sub/deeper/file.txt"), "dest": "/x"},
                                 {"src": str(tree / "link"), "dest": "/x"}])


def test_file_onto_the_root_is_refused(tree):
    with pytest.raises(names.IsoError, match="dest must name a file in the image such as /file.txt"):
        isoplan.make_plan(files=[{"src": str(tree / "sub/deeper/file.txt"), "dest": "/"}])


def test_file_under_a_file_is_a_clash(tree):
    with pytest.raises(names.IsoError, match="as a directory"):
        isoplan.make_plan(content=[{"dest": "/a", "content": "1"}, {"dest": "/a/b", "content": "2"}])


def test_directories_merge(tree):
    plan = isoplan.make_plan(files=[{"src": str(tree / "sub"), "dest": "/"}, {"src": str(tree / "sub"), "dest": "/"}]
                             [:1], content=[{"dest": "/deeper/new.txt", "content": "n"}])
    assert "f 0644 /deeper/new.txt" in plan.listing() and "f 0644 /deeper/file.txt" in plan.listing()


def test_upper_case_collision_without_rock_ridge_and_joliet():
    with pytest.raises(names.IsoError, match="both map"):
        isoplan.make_plan(content=[{"dest": "/readme.txt", "content": "1"}, {"dest": "/README.TXT", "content": "2"}],
                          rock_ridge=False, joliet=False)


def test_level_1_rejects_long_names():
    with pytest.raises(names.IsoError, match=r"component 'longfilename.txt' .*8\.3"):
        isoplan.make_plan(content=[{"dest": "/longfilename.txt", "content": "1"}], rock_ridge=False, joliet=False,
                          interchange_level=1)


def test_symlink_needs_rock_ridge(tree):
    with pytest.raises(names.IsoError, match="turn rock_ridge on"):
        isoplan.make_plan(files=[{"src": str(tree), "dest": "/"}], rock_ridge=False)


def test_deep_tree_needs_rock_ridge():
    dest = "/" + "/".join("D%d" % i for i in range(9)) + "/F.TXT"
    with pytest.raises(names.IsoError, match="directories deep"):
        isoplan.make_plan(content=[{"dest": dest, "content": "1"}], rock_ridge=False, joliet=False)
    isoplan.make_plan(content=[{"dest": dest, "content": "1"}])


def test_bad_mode():
    with pytest.raises(names.IsoError, match="octal"):
        isoplan.make_plan(content=[{"dest": "/x", "content": "1", "mode": "rw-r--r--"}])


def test_boot_needs_its_config_in_the_image():
    with pytest.raises(names.IsoError, match=r"GRUB configuration /boot/grub/grub.cfg is not in the image"):
        isoplan.make_plan(content=[{"dest": "/vmlinuz", "content": "k"}], boot={})
    plan = isoplan.make_plan(content=[{"dest": "/boot/grub/grub.cfg", "content": "c"}], boot={})
    assert plan.boot["images"] == [isoplan.BIOS_IMAGE, isoplan.EFI_IMAGE]
    with pytest.raises(names.IsoError, match="both map"):
        isoplan.make_plan(content=[{"dest": "/boot/grub/grub.cfg", "content": "c"},
                                   {"dest": "/boot/grub/efi.img", "content": "mine"}], boot={})
    with pytest.raises(names.IsoError, match="hybrid needs bios"):
        isoplan.make_plan(content=[{"dest": "/boot/grub/grub.cfg", "content": "c"}], boot={"bios": False})


def test_early_config_finds_the_image_by_uuid():
    plan = isoplan.make_plan(content=[{"dest": "/g.cfg", "content": "c"}], boot={"grub_config": "/g.cfg"},
                             volume_uuid="2024-05-01-12-00-00-00")
    text = grub.early_grub_config(plan)
    assert "--fs-uuid --set=root 2024-05-01-12-00-00-00" in text and "configfile ($root)/g.cfg" in text


# ------------------------------------------------------------ cidata

def test_cidata_writes_cloud_config():
    plan = isoplan.make_plan(cidata={"user_data": {"users": [{"name": "alice"}]},
                                     "network_config": {"version": 2}})
    assert plan.volume_id == "CIDATA"
    files = {e.iso_path: e.data.decode() for e in plan.generated}
    assert files["/user-data"].startswith("#cloud-config\n")
    assert yaml.safe_load(files["/user-data"]) == {"users": [{"name": "alice"}]}
    meta = yaml.safe_load(files["/meta-data"])
    assert meta["instance-id"].startswith("iid-")
    assert yaml.safe_load(files["/network-config"]) == {"version": 2}


def test_cidata_keeps_given_instance_id_and_rejects_other_labels():
    plan = isoplan.make_plan(cidata={"meta_data": {"instance-id": "vm1"}})
    assert yaml.safe_load(next(e.data for e in plan.generated if e.iso_path == "/meta-data")) == {"instance-id": "vm1"}
    with pytest.raises(names.IsoError, match="CIDATA"):
        isoplan.make_plan(cidata={}, volume_id="seed")
    with pytest.raises(names.IsoError, match="#cloud-config"):
        isoplan.make_plan(cidata={"user_data": "users: []"})


# ------------------------------------------------------------ the xorriso command

def test_xorriso_command_fixes_volume_dates_and_owners(tree):
    plan = isoplan.make_plan(files=[{"src": str(tree), "dest": "/data"}], content=[{"dest": "/m", "content": "x"}],
                             source_date_epoch=1714564800, volume_id="v")
    argv = xorriso.xorriso_command(plan, "/out.iso", {"/m": "/stage/m"})
    text = " ".join(argv)
    # node dates are stamped into the written bytes (stamp.py), not by xorriso's path-by-path passes
    assert "-alter_date" not in text and "set_to_mtime" not in text and "all_file_dates" not in text
    assert "always_gmt" in text
    assert "-volume_date uuid 2024050112000000" in text
    assert "-iso_nowtime =1714564800" in text
    assert "-uid 0 -gid 0" in text
    assert "-map %s /data" % tree in text and "-map /stage/m /m -chmod 0644 /m --" in text
    # a new image in a file is the single-session image a pipe gets; -end writes without loading it back
    assert "no_emul_toc" in text and "-commit" not in argv
    assert "-volid V" in text and argv[-1] == "-end"


@pytest.mark.parametrize("files, content", [
    ([{"dest": "/data"}], [{"dest": "/etc/motd", "content": "x"}]),
    # a dest inside a walked tree: its directories are the tree's, not implied (no -chmod 0755)
    ([{"dest": "/"}], [{"dest": "/sub/deeper/new.txt", "content": "x"}, {"dest": "/sub/other/n", "content": "y"}]),
    ([{"src": "sub/deeper/file.txt", "dest": "/sub/deeper/again.txt"}, {"dest": "/"}], []),
    ([{"dest": "/a"}, {"dest": "/a/b"}], [{"dest": "/a/link/x", "content": "z"}]),
])
def test_outline_gives_the_full_plans_command(tree, files, content):
    files = [dict(f, src=str(tree / f.get("src", ""))) for f in files]
    outline = isoplan.make_plan(files=files, content=content, shallow=True)
    try:
        full = isoplan.make_plan(files=files, content=content)
    except names.IsoError:      # /a/link is a link in the tree: the full plan refuses, the outline cannot know
        assert content and content[0]["dest"] == "/a/link/x"
        return
    assert len(outline.entries) < len(full.entries)
    staging = dict((e.iso_path, "/stage" + e.iso_path) for e in full.generated)
    assert xorriso.xorriso_command(outline, "/o", staging) == xorriso.xorriso_command(full, "/o", staging)


def test_volume_uuid_overrides_volume_dates():
    plan = isoplan.make_plan(volume_uuid="2020-01-02-03-04-05-06", source_date_epoch=9)
    text = " ".join(xorriso.xorriso_command(plan, "/o", {}))
    assert "-volume_date c 2020010203040506" in text and "-volume_date m 2020010203040506" in text
    assert "-iso_nowtime =9" in text


def test_boot_arguments():
    plan = isoplan.make_plan(content=[{"dest": "/boot/grub/grub.cfg", "content": "c"}], boot={})
    text = " ".join(xorriso.boot_arguments(plan))
    for piece in ("bin_path=/boot/grub/eltorito.img", "boot_info_table=on", "grub2_mbr=", "next",
                  "efi_path=/boot/grub/efi.img", "platform_id=0xef", "gpt_disk_guid=volume_date_uuid"):
        assert piece in text
    plan = isoplan.make_plan(content=[{"dest": "/boot/grub/grub.cfg", "content": "c"}],
                             boot={"efi": False, "hybrid": False})
    text = " ".join(xorriso.boot_arguments(plan))
    assert "efi_path" not in text and "grub2_mbr" not in text


def test_esp_image_goes_through_the_one_fat_builder_root_less_and_dated(tmp_path):
    calls = []

    def run(argv, env=None, cwd=None):
        calls.append((argv, env))
        return 0, "", ""

    tree = tmp_path / "esp"
    (tree / "EFI" / "BOOT").mkdir(parents=True)
    (tree / "EFI" / "BOOT" / "BOOTX64.EFI").write_bytes(b"x" * 1000)
    grub.make_esp_image(str(tmp_path / "efi.img"), str(tree), "0A0B0C0D", 1, run=run)
    argvs = [c[0] for c in calls]
    assert argvs[0][0] == "mkfs.fat" and "--invariant" in argvs[0]
    assert argvs[0][argvs[0].index("-i") + 1] == "0A0B0C0D"
    assert argvs[0][argvs[0].index("-n") + 1] == "EFIBOOT"
    assert [a[0] for a in argvs[1:]] == ["mmd", "mcopy"]
    assert argvs[1][-2:] == ["::/EFI", "::/EFI/BOOT"]
    # FAT starts in 1980: the epoch is clamped there; the clock's zone never reaches the image
    assert all(c[1]["SOURCE_DATE_EPOCH"] == str(FAT_EPOCH) and c[1]["TZ"] == "UTC" for c in calls)
    assert grub.esp_image_size(str(tree)) == 1440 * 1024


def test_esp_image_failure_names_the_boot_image(tmp_path):
    def run(argv, env=None, cwd=None):
        return 1, "", "mkfs.fat: disk full"

    tree = tmp_path / "esp"
    tree.mkdir()
    with pytest.raises(names.IsoError, match="EFI boot image /boot/grub/efi.img: .*disk full"):
        grub.make_esp_image(str(tmp_path / "efi.img"), str(tree), "0A0B0C0D", 1, run=run)


def test_xorriso_failure_is_reported_and_nothing_is_left(tmp_path):
    plan = isoplan.make_plan(content=[{"dest": "/x", "content": "1"}])

    class FailingXorriso(object):
        def __init__(self, argv, env=None, stdin=None, stdout=None, stderr=None, preexec_fn=None):
            assert argv[0] == "xorriso" and env["TZ"] == "UTC"
            stdout.write(b"xorriso : NOTE : chatter\nxorriso : FAILURE : something broke\n")
            stdout.flush()
            self.returncode = 5

        def poll(self):
            return self.returncode

        wait = poll

    out = tmp_path / "o.iso"
    for how in (lambda: writer.build_file(plan, str(out), popen=FailingXorriso, tmpdir=str(tmp_path)),
                lambda: writer.build(plan, writer.ImageSink(None, str(out)), popen=FailingXorriso,
                                     tmpdir=str(tmp_path))):
        with pytest.raises(names.IsoError, match=r"xorriso failed .exit 5.: xorriso : FAILURE : something broke$"):
            how()
        assert sorted(os.listdir(tmp_path)) in ([], ["o.iso"])
        if out.exists():
            out.unlink()


def test_follower_hashes_a_file_as_it_grows(tmp_path):
    import hashlib
    import threading
    import time
    path = tmp_path / "growing"
    path.write_bytes(b"")
    follower = writer._Follower(str(path))     # pylint: disable=protected-access
    follower.start()
    chunks = [os.urandom(n) for n in (1, 4096, 70000, 3, 1 << 20, 5)]

    def append():
        with open(str(path), "ab") as f:
            for chunk in chunks:
                f.write(chunk)
                f.flush()
                time.sleep(0.03)
    writer_thread = threading.Thread(target=append)
    writer_thread.start()
    writer_thread.join()
    digest, size = follower.result()
    assert (digest, size) == (hashlib.sha256(b"".join(chunks)).hexdigest(), sum(map(len, chunks)))


@pytest.mark.skipif(not shutil.which("xorriso"), reason="xorriso is not installed")
def test_new_image_written_by_xorriso_is_the_streamed_image(tree, tmp_path):
    plan = isoplan.make_plan(files=[{"src": str(tree), "dest": "/data"}], content=[{"dest": "/m", "content": "x"}],
                             source_date_epoch=1714564800, volume_id="v")
    sink = writer.ImageSink(None, None)
    writer.build(plan, sink, tmpdir=str(tmp_path))
    sink.close()
    out = tmp_path / "new.iso"
    digest, size = writer.build_new(plan, str(out), tmpdir=str(tmp_path))
    assert (digest, size) == (sink.sha256, sink.size) == (writer.sha256_file(str(out)), out.stat().st_size)
    assert out.stat().st_mode & 0o777 == 0o600 and sorted(os.listdir(str(tmp_path))) == ["new.iso", "tree"]
    with pytest.raises(FileExistsError):        # never over an existing file
        writer.build_new(plan, str(out), tmpdir=str(tmp_path))


def _feed(sink, data, cut):
    pos = 0
    for c in cut:
        sink.write(data[pos:pos + c])
        pos += c
    sink.write(data[pos:])


@given(old=st.binary(max_size=300), new=st.binary(max_size=300),
       cut=st.lists(st.integers(min_value=1, max_value=40), max_size=10))
def test_image_sink_writes_exactly_the_stream_and_only_when_it_differs(tmp_path_factory, old, new, cut):
    d = tmp_path_factory.mktemp("sink")
    existing, candidate = d / "old.iso", d / "new.iso"
    existing.write_bytes(old)
    sink = writer.ImageSink(str(existing), str(candidate))
    _feed(sink, new, cut)
    same = sink.close()
    assert same == (old == new)
    assert sink.sha256 == __import__("hashlib").sha256(new).hexdigest() and sink.size == len(new)
    if same:
        assert not candidate.exists()
    else:
        assert candidate.read_bytes() == new
    assert existing.read_bytes() == old


def test_image_sink_check_mode_writes_nothing(tmp_path):
    existing = tmp_path / "old.iso"
    existing.write_bytes(b"a" * 100)
    sink = writer.ImageSink(str(existing), None)
    sink.write(b"a" * 50 + b"b" * 50)
    assert sink.close() is False
    assert os.listdir(tmp_path) == ["old.iso"]


def test_listing_parser():
    out = ("drwxr-xr-x    1 0        0               0 Jan  1  1970 '/'\n"
           "-rw-r--r--    1 0        0               3 Jan  1  1970 '/it'\"'\"'s'\n"
           "lrwxrwxrwx    1 0        0               0 Jan  1  1970 '/l' -> 'it'\"'\"'s'\n"
           "File data lba:  0 ,       33 ,        1 ,          3 , '/it'\"'\"'s'\n")

    def run(argv, env=None, cwd=None):
        return 0, out, ""

    got = xorriso.read_listing("/x.iso", run=run)
    assert got["/it's"] == ("-rw-r--r--", 3, None, [(33, 1)])
    assert got["/l"] == ("lrwxrwxrwx", 0, "it's", [])


# ------------------------------------------------------------ the module's backend (no Ansible)

def _iso_params(path, **extra):
    params = dict(path=str(path), files=[], content=[{"dest": "/motd", "content": "hi\n", "mode": "0644"}],
                  volume_id=None, volume_uuid=None, source_date_epoch=1, rock_ridge=True, joliet=True,
                  interchange_level=3, mode=None, boot=None, cidata=None)
    params.update(extra)
    return params


class _Tools(object):
    def __init__(self):
        self.warnings = []

    def attributes_differ(self, path):
        return False

    def set_attributes(self, path):
        return False

    def warn(self, msg):
        self.warnings.append(msg)


@pytest.mark.skipif(not shutil.which("xorriso"), reason="xorriso is not installed")
def test_backend_check_mode_writes_nothing_then_writes_once(tmp_path):
    from ansible_collections.vmhost.virt.plugins.module_utils.iso.backend import Iso9660
    out = tmp_path / "out"
    out.mkdir()
    image = out / "seed.iso"
    planned = Iso9660(_iso_params(image), check_mode=True, tools=_Tools(), tmpdir=str(tmp_path)).execute()
    assert planned["changed"] and list(out.iterdir()) == []
    written = Iso9660(_iso_params(image), tools=_Tools()).execute(diff=True)
    assert written["changed"] and written["sha256"] == planned["sha256"] == writer.sha256_file(str(image))
    assert written["changes"]["added"] == ["/motd"] and "/motd" in written["diff"]["after"]
    assert sorted(os.listdir(str(out))) == ["seed.iso"] and (image.stat().st_mode & 0o777) == 0o600
    assert Iso9660(_iso_params(image), tools=_Tools()).execute()["changed"] is False


def test_backend_bad_input_is_a_module_failure_naming_the_path(tmp_path):
    from ansible_collections.vmhost.virt.plugins.module_utils._module import ModuleFailure
    from ansible_collections.vmhost.virt.plugins.module_utils.iso.backend import Iso9660
    with pytest.raises(ModuleFailure) as err:
        Iso9660(_iso_params(tmp_path / "x.iso", volume_id="no way"), tools=_Tools()).execute()
    assert "only A-Z, 0-9 and _" in err.value.msg and err.value.result["path"] == str(tmp_path / "x.iso")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not shutil.which("xorriso"), reason="xorriso is not installed")
def test_backend_new_image_bad_tree_stops_the_started_xorriso_and_leaves_nothing(tmp_path):
    """A new image starts xorriso while the trees are walked: a bad node deep in a tree fails the
    run with the walk's message, and neither the image nor its directory is left."""
    from ansible_collections.vmhost.virt.plugins.module_utils._module import ModuleFailure
    from ansible_collections.vmhost.virt.plugins.module_utils.iso.backend import Iso9660
    src = tmp_path / "src"
    (src / "deep" / "er").mkdir(parents=True)
    for index in range(200):
        (src / "deep" / ("f%03d" % index)).write_bytes(os.urandom(4096))
    os.mkfifo(str(src / "deep" / "er" / "pipe"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ModuleFailure, match="pipe is neither a regular file, a directory nor a symbolic link"):
        Iso9660(_iso_params(out / "x.iso", files=[{"src": str(src), "dest": "/d"}]), tools=_Tools(),
                tmpdir=str(tmp_path)).execute()
    assert list(out.iterdir()) == [] and sorted(os.listdir(str(tmp_path))) == ["out", "src"]


@pytest.mark.skipif(not shutil.which("mkfs.fat") or not shutil.which("mcopy"), reason="mtools/dosfstools missing")
def test_esp_image_is_byte_reproducible_and_holds_the_loader(tmp_path):
    tree = tmp_path / "esp"
    (tree / "EFI" / "BOOT").mkdir(parents=True)
    (tree / "EFI" / "BOOT" / "BOOTX64.EFI").write_bytes(os.urandom(300000))
    images = []
    for name, tz in (("a.img", "UTC"), ("b.img", "Asia/Tokyo")):
        os.environ["TZ"] = tz
        try:
            images.append(grub.make_esp_image(str(tmp_path / name), str(tree), "0A0B0C0D", 1700000000))
        finally:
            os.environ.pop("TZ")
    data = [open(p, "rb").read() for p in images]
    assert data[0] == data[1] and len(data[0]) == 1440 * 1024
    assert data[0][0x27:0x2b] == bytes.fromhex("0D0C0B0A")          # the serial, little-endian
    out = subprocess.run(["mdir", "-b", "-i", images[0], "::/EFI/BOOT"], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    assert "BOOTX64.EFI" in out


@pytest.mark.skipif(not shutil.which("xorriso"), reason="xorriso is not installed")
def test_backend_decides_unchanged_from_the_recorded_plan_without_building(tmp_path, monkeypatch):
    from ansible_collections.vmhost.virt.plugins.module_utils import _io
    from ansible_collections.vmhost.virt.plugins.module_utils.iso import backend
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("one\n")
    image = tmp_path / "x.iso"
    params = _iso_params(image, files=[{"src": str(src), "dest": "/d"}])
    first = backend.Iso9660(params, tools=_Tools()).execute()
    if _io.read_record(str(image)) is None:
        pytest.skip("this file system keeps no extended attributes")
    real_build = backend.build

    def no_build(*args, **kwargs):
        raise AssertionError("an unchanged plan must not build the image")
    monkeypatch.setattr(backend, "build", no_build)
    again = backend.Iso9660(params, tools=_Tools()).execute()
    assert again["changed"] is False and again["sha256"] == first["sha256"] and again["size"] == first["size"]
    # a source file rewritten (same size, same mtime: its ctime moves): the plan differs, it is built
    stat_a = os.stat(str(src / "a"))
    (src / "a").write_text("two\n")
    os.utime(str(src / "a"), ns=(stat_a.st_atime_ns, stat_a.st_mtime_ns))
    with pytest.raises(AssertionError, match="must not build"):
        backend.Iso9660(params, tools=_Tools()).execute()
    monkeypatch.setattr(backend, "build", real_build)
    changed = backend.Iso9660(params, tools=_Tools()).execute()
    assert changed["changed"] and changed["sha256"] != first["sha256"]
    # the image written by something else (its mtime moves): the record no longer counts
    with open(str(image), "r+b") as handle:
        handle.seek(40000)
        handle.write(b"X")
    assert _io.read_record(str(image)) is None
    repaired = backend.Iso9660(params, tools=_Tools()).execute()
    assert repaired["changed"] and repaired["sha256"] == changed["sha256"]
