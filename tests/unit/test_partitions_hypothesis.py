# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property: random valid layouts, written then read back, equal the request."""
import tempfile

from hypothesis import given, settings, strategies as st

from ansible_collections.vmhost.virt.plugins.module_utils import partitions as P

MIB = 1 << 20

TYPES = sorted(P.GPT_TYPES)


@st.composite
def layouts(draw):
    label = draw(st.sampled_from(["gpt", "msdos"]))
    count = draw(st.integers(1, 4 if label == "msdos" else 8))
    parts = []
    for i in range(count):
        part = {"size": "%dKiB" % draw(st.integers(1, 8 * 1024))}
        if draw(st.booleans()):
            part["start_gap"] = draw(st.integers(0, 3))
        if label == "gpt":
            if draw(st.booleans()):
                part["type"] = draw(st.sampled_from(TYPES))
            if draw(st.booleans()):
                part["name"] = draw(st.text(
                    alphabet=st.characters(min_codepoint=32, max_codepoint=0xFFFF,
                                           blacklist_categories=("Cs",)), max_size=36))
            flags = draw(st.sets(st.sampled_from(["boot", "legacy_boot"])))
        else:
            flags = draw(st.sets(st.sampled_from(["boot"])))
            if draw(st.booleans()):
                part["type"] = "0x%02x" % draw(st.sampled_from([0x83, 0x82, 0x0c, 0x07, 0x8e]))
        part["flags"] = sorted(flags)
        parts.append(part)
    if draw(st.booleans()):
        parts[-1]["size"] = "rest"
    disk_mib = draw(st.integers(2 + 12 * count, 40 + 12 * count))
    # turn gaps into explicit aligned starts
    cursor = MIB
    for part in parts:
        gap = part.pop("start_gap", None)
        if gap is not None:
            part["start"] = cursor + gap * MIB
            cursor = part["start"]
        size = 8 * MIB if part["size"] == "rest" else int(part["size"][:-3]) * 1024
        cursor = -(-(cursor + size) // MIB) * MIB
    seed = draw(st.text(min_size=1, max_size=8))
    return label, disk_mib * MIB, parts, seed


def write_and_read(layout):
    with tempfile.TemporaryFile() as handle:  # sparse: only the tables are written
        handle.truncate(layout["size"])
        P.write_table(handle, layout)
        return P.read_table(handle)


@settings(max_examples=150, deadline=None)
@given(layouts())
def test_write_read_round_trip(case):
    label, size, parts, seed = case
    layout = P.plan(label, size, parts, seed=seed)
    table = write_and_read(layout)
    assert table["problems"] == []
    assert table["label"] == label and table["id"] == layout["id"]
    assert len(table["partitions"]) == len(parts)
    for want, got, asked in zip(layout["partitions"], table["partitions"], parts):
        assert got["start"] == want["start"] and got["size"] == want["size"]
        assert got["type"] == want["type"]
        assert got["start"] % MIB == 0
        if "start" in asked:
            assert got["start"] == asked["start"]
        if asked["size"] != "rest":
            assert got["size"] == -(-int(asked["size"][:-3]) * 1024 // 512) * 512
        if label == "gpt":
            assert got["part_uuid"] == want["part_uuid"]
            assert (got["name"] or "") == (asked.get("name") or "")
        assert P.flags_for_compare(label, got) == P.flags_for_compare(label, want)
    for a, b in zip(table["partitions"], table["partitions"][1:]):
        assert a["end"] < b["start"]
