# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node dates stamped into the written image (module_utils/iso/stamp.py): the bytes are the ones
xorriso's own date pass gives, through both writing paths, and a short or foreign image fails
with a message."""
import os
import shutil
import struct
import subprocess
import threading
import time

import pytest

from ansible_collections.vmhost.virt.plugins.module_utils.iso import plan as isoplan, names, stamp, writer, xorriso
from ansible_collections.vmhost.virt.plugins.module_utils.iso.tools import default_run, tool_env

needs_xorriso = pytest.mark.skipif(not shutil.which("xorriso"), reason="xorriso is not installed")


def test_dates_and_their_clamping():
    assert stamp.record_date(1) == bytes([70, 1, 1, 0, 0, 1, 0])
    assert stamp.record_date(1714564800) == bytes([124, 5, 1, 12, 0, 0, 0])
    assert stamp.record_date(7258118400) == bytes([255, 12, 31, 23, 59, 59, 0])     # 2200: past 2155
    assert stamp.long_date(1714564800) == b"2024050112000000\x00"


def xorriso_dated(plan, out, tmpdir):
    """The oracle: the same image with xorriso setting every node date itself (its
    -alter_date_r and -find -exec set_to_mtime passes, what the module ran before)."""
    workdir, staging = writer._staged(plan, default_run, "xorriso", tmpdir)  # pylint: disable=protected-access
    argv = xorriso.xorriso_command(plan, out, staging)
    at = argv.index("-boot_image") if "-boot_image" in argv else argv.index("-end")
    argv[at:at] = ["-alter_date_r", "m-c", "=%d" % plan.epoch, "/", "--", "-find", "/", "-exec", "set_to_mtime", "--"]
    subprocess.run(argv, check=True, env=tool_env(plan.epoch), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(workdir)
    return writer.sha256_file(out)


def undated_image(plan, out, tmpdir):
    """The image as xorriso writes it, before the stamper: node dates from the sources."""
    workdir, staging = writer._staged(plan, default_run, "xorriso", tmpdir)  # pylint: disable=protected-access
    subprocess.run(xorriso.xorriso_command(plan, out, staging), check=True, env=tool_env(plan.epoch),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(workdir)
    return out


@pytest.fixture
def rich_tree(tmp_path):
    """Long names (Rock Ridge NM entries that overflow into continuation areas), a long link
    target, 12 nested directories (relocated under Rock Ridge), 300 entries in one directory
    (several sectors of records), odd and even name lengths."""
    root = tmp_path / "rich"
    deep = root
    for n in range(12):
        deep = deep / ("level%d" % n)
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("deep")
    many = root / "many"
    many.mkdir()
    for n in range(300):
        (many / ("f%d" % n + "x" * (n % 7))).write_bytes(os.urandom(n))
    (root / ("n" * 200)).write_text("long name")
    os.symlink("/" + "/".join(["t" * 60] * 4), str(root / "long-link"))
    os.symlink("many/f1", str(root / "short-link"))
    return root


def flat_tree(tmp_path):
    root = tmp_path / "flat"
    (root / "DIR").mkdir(parents=True)
    for n in range(40):
        (root / "DIR" / ("F%d.TXT" % n)).write_text(str(n))
    (root / "README.TXT").write_text("r")
    return root


@needs_xorriso
@pytest.mark.parametrize("options", [
    {},
    {"source_date_epoch": 1714564800},
    {"source_date_epoch": 7258118400},
    {"joliet": False, "source_date_epoch": 1000},
    {"rock_ridge": False, "flat": True},
    {"rock_ridge": False, "joliet": False, "interchange_level": 1, "flat": True},
    {"rock_ridge": False, "joliet": False, "interchange_level": 2, "flat": True, "source_date_epoch": 5},
])
def test_stamped_images_are_xorrisos_dated_images(rich_tree, tmp_path, options):
    options = dict(options)
    src = flat_tree(tmp_path) if options.pop("flat", False) else rich_tree
    content = [{"dest": "/etc/motd", "content": "hello\n", "mode": "0600"}]
    plan = isoplan.make_plan(files=[{"src": str(src), "dest": "/data"}], content=content, volume_id="t", **options)
    expected = xorriso_dated(plan, str(tmp_path / "oracle.iso"), str(tmp_path))
    # a new image: xorriso writes the file, the follower stamps it as it grows
    digest, size = writer.build_new(plan, str(tmp_path / "new.iso"), tmpdir=str(tmp_path))
    assert digest == writer.sha256_file(str(tmp_path / "new.iso")) == expected
    # an image streamed through the pipe (the comparing path)
    sink = writer.ImageSink(None, str(tmp_path / "piped.iso"))
    writer.build(plan, sink, tmpdir=str(tmp_path))
    sink.close()
    assert sink.sha256 == writer.sha256_file(str(tmp_path / "piped.iso")) == expected
    assert size == os.path.getsize(str(tmp_path / "oracle.iso"))


@needs_xorriso
def test_continuation_areas_and_relocated_directories_are_walked(rich_tree, tmp_path):
    plan = isoplan.make_plan(files=[{"src": str(rich_tree), "dest": "/"}], source_date_epoch=77)
    out = undated_image(plan, str(tmp_path / "undated.iso"), str(tmp_path))
    with open(out, "rb") as f:
        start = stamp.ImageStart(lambda: f.read(4096))
        records, areas = stamp.stamp_dates(start, 77)
    # root, "." and ".." of every directory, in both trees; Rock Ridge moved the deepest levels
    # (rr_moved) and spilled the long name and link target into continuation areas
    assert records > 2 * (300 + 12 + 4) and areas >= 2
    assert len(start.data) < os.path.getsize(out)       # the walk stopped after the trees
    for offset, data in start.changed_runs():
        assert offset % stamp.SECTOR == 0 and data == bytes(start.data[offset:offset + len(data)])


@needs_xorriso
def test_follower_stamps_a_file_written_in_pieces(rich_tree, tmp_path):
    """The new-image path's follower, fed by a writer that appends the undated image slowly:
    it stamps what it needs once it is there and hashes the stamped bytes."""
    plan = isoplan.make_plan(files=[{"src": str(rich_tree), "dest": "/"}], source_date_epoch=123456)
    expected = xorriso_dated(plan, str(tmp_path / "oracle.iso"), str(tmp_path))
    undated = undated_image(plan, str(tmp_path / "undated.iso"), str(tmp_path))
    with open(undated, "rb") as f:
        data = f.read()
    target = tmp_path / "growing.iso"
    target.write_bytes(b"")
    follower = writer._Follower(str(target), epoch=123456)     # pylint: disable=protected-access
    follower.start()

    def append():
        with open(str(target), "r+b") as f:
            for pos in range(0, len(data), 5000):      # pieces that cut sectors and records
                f.seek(pos)
                f.write(data[pos:pos + 5000])
                f.flush()
                time.sleep(0.001)
    feeder = threading.Thread(target=append)
    feeder.start()
    feeder.join()
    digest, size = follower.result()
    assert (digest, size) == (expected, len(data)) and writer.sha256_file(str(target)) == expected


def image_with(descriptors, extra=b""):
    return b"\0" * 16 * stamp.SECTOR + b"".join(d.ljust(stamp.SECTOR, b"\0") for d in descriptors) + extra


def root_record(extent, size, flags=2):
    rec = bytearray(34)
    rec[0] = 34
    struct.pack_into("<I", rec, 2, extent)
    struct.pack_into("<I", rec, 10, size)
    rec[25], rec[32] = flags, 1
    return bytes(rec)


def pvd(record):
    return b"\x01CD001\x01".ljust(156, b"\0") + record


TERMINATOR = b"\xffCD001\x01"


@pytest.mark.parametrize("data, message", [
    (b"", "ends at byte 0, inside the volume descriptors"),
    (b"\0" * (17 * stamp.SECTOR), "sector 16 is not an ISO 9660 volume descriptor"),
    (image_with([TERMINATOR]), "no primary volume descriptor"),
    (image_with([b"\x02CD001\x01".ljust(88, b"\0") + b"XYZ", TERMINATOR]), "not Joliet"),
    (image_with([pvd(root_record(18, 2048))] * 70), "no volume descriptor set terminator"),
    # the root directory points past the end of the image
    (image_with([pvd(root_record(40, 2048)), TERMINATOR]), "ends at byte 36864, inside a directory"),
    # a directory whose record for a subdirectory points back at itself
    (image_with([pvd(root_record(18, 2048)), TERMINATOR],
                (root_record(18, 2048)[:33] + b"A").ljust(2048, b"\0")),
     "appears twice"),
    (image_with([pvd(root_record(18, 2000)), TERMINATOR], b"\0" * 2048), "malformed directory extent"),
    (image_with([pvd(root_record(18, 2048)), TERMINATOR], b"\x10" + b"\0" * 2047), "malformed directory record"),
], ids=["empty", "zeros", "no-primary", "not-joliet", "no-terminator", "short", "loop", "odd-extent", "short-record"])
def test_foreign_or_short_images_fail_with_a_message(data, message):
    chunks = [data[i:i + 1000] for i in range(0, len(data), 1000)]
    start = stamp.ImageStart(lambda: chunks.pop(0) if chunks else b"")
    with pytest.raises(names.IsoError, match=message):
        stamp.stamp_dates(start, 1)


def test_malformed_system_use_entries_fail():
    rec = bytearray(root_record(19, 2048))
    rec[32] = 1
    rec[33] = ord("A")
    rec += b"\0" + b"TF\x05\x01\x02" + b"\0" * 7     # TF says 1 time but its length is 5: malformed
    rec[0] = len(rec)
    sub = bytes(rec[:34]).ljust(2048, b"\0")
    root = bytes(rec).ljust(2048, b"\0")
    data = image_with([pvd(root_record(18, 2048)), TERMINATOR], root + sub)
    start = stamp.ImageStart(iter([data, b""]).__next__)
    with pytest.raises(names.IsoError, match="malformed"):
        stamp.stamp_dates(start, 1)
