# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Our tables read by sfdisk, and sfdisk's tables read by us (hypothesis)."""
import json
import os
import subprocess
import sys
import uuid

from hypothesis import given, settings

from ansible_collections.vmhost.virt.plugins.module_utils import partitions as P

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "unit"))
from test_partitions_hypothesis import layouts  # noqa: E402


def sfdisk_json(path):
    proc = subprocess.run(["sfdisk", "--json", path], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=True)
    return json.loads(proc.stdout)["partitiontable"]


def sfdisk_verify(path):
    proc = subprocess.run(["sfdisk", "--verify", path], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    return proc.returncode, proc.stdout


@settings(max_examples=40, deadline=None)
@given(layouts())
def test_sfdisk_reads_what_we_write(tmp_path_factory, case):
    label, size, parts, seed = case
    layout = P.plan(label, size, parts, seed=seed)
    path = str(tmp_path_factory.mktemp("sf") / "disk.raw")
    with open(path, "wb") as handle:
        handle.truncate(size)
        P.write_table(handle, layout)
    rc, out = sfdisk_verify(path)
    assert rc == 0 and "No errors detected" in out, out
    table = sfdisk_json(path)
    assert table["label"] == ("gpt" if label == "gpt" else "dos")
    assert table["id"].lower() == layout["id"]
    assert len(table["partitions"]) == len(layout["partitions"])
    for want, got in zip(layout["partitions"], table["partitions"]):
        assert got["start"] * 512 == want["start"] and got["size"] * 512 == want["size"]
        if label == "gpt":
            assert got["type"].lower() == want["type"]
            assert got["uuid"].lower() == want["part_uuid"]
            assert got.get("name", "") == (want["name"] or "")
            assert ("LegacyBIOSBootable" in got.get("attrs", "")) == bool(want["attributes"] & 4)
        else:
            assert int(got["type"], 16) == want["type"]
            assert got.get("bootable", False) == ("boot" in want["flags"])
    os.unlink(path)


def test_we_read_what_sfdisk_writes(tmp_path):
    for label in ("gpt", "dos"):
        path = str(tmp_path / ("%s.raw" % label))
        with open(path, "wb") as handle:
            handle.truncate(64 << 20)
        if label == "gpt":
            script = ("label: gpt\nlabel-id: 0B1C3D4E-5F60-4A7B-8C9D-0E1F2A3B4C5D\n"
                      "start=2048, size=16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, "
                      "name=\"EFI\"\n"
                      "size=32768, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, "
                      "attrs=\"LegacyBIOSBootable\"\n"
                      "type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F\n")
        else:
            script = ("label: dos\nlabel-id: 0x1234abcd\n"
                      "start=2048, size=16384, type=ef\n"
                      "size=32768, type=83, bootable\n"
                      "type=82\n")
        subprocess.run(["sfdisk", "-q", path], input=script, universal_newlines=True,
                       check=True)
        theirs = sfdisk_json(path)
        with open(path, "rb") as handle:
            ours = P.read_table(handle)
        assert ours["problems"] == []
        assert ours["id"] == theirs["id"].lower()
        for mine, sf in zip(ours["partitions"], theirs["partitions"]):
            assert mine["start"] == sf["start"] * 512 and mine["size"] == sf["size"] * 512
            if label == "gpt":
                assert mine["type"] == str(uuid.UUID(sf["type"]))
                assert mine["part_uuid"] == sf["uuid"].lower()
            else:
                assert mine["type"] == int(sf["type"], 16)
        if label == "gpt":
            assert ours["partitions"][0]["name"] == "EFI"
            assert ours["partitions"][0]["flags"] == ["esp"]
            assert ours["partitions"][1]["flags"] == ["legacy_boot"]
        else:
            assert ours["partitions"][1]["flags"] == ["boot"]
            assert ours["partitions"][0]["flags"] == ["esp"]
