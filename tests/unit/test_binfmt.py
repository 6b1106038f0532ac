"""Unit tests for plugins/module_utils/binfmt.py: the table, encoding, parsing, matching."""
import io
import pathlib
import struct

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.vmhost.virt.plugins.module_utils import binfmt as B

# Written from the ELF ABI supplements, independently of the table under test:
# platform -> (ELFCLASS 1/2, ELFDATA 1=LE/2=BE, e_machine, e_flags).
REAL = {
    "i386": (1, 1, 3, 0), "i486": (1, 1, 6, 0), "x86_64": (2, 1, 62, 0),
    "alpha": (2, 1, 0x9026, 0), "arm": (1, 1, 40, 0x05000000), "armeb": (1, 2, 40, 0x05000000),
    "sparc": (1, 2, 2, 0), "sparc32plus": (1, 2, 18, 0), "sparc64": (2, 2, 43, 0),
    "ppc": (1, 2, 20, 0), "ppc64": (2, 2, 21, 1), "ppc64le": (2, 1, 21, 2), "m68k": (1, 2, 4, 0),
    "mips": (1, 2, 8, 0x70001007), "mipsel": (1, 1, 8, 0x70001007),
    "mipsn32": (1, 2, 8, 0x80000027), "mipsn32el": (1, 1, 8, 0x80000027),
    "mips64": (2, 2, 8, 0x80000007), "mips64el": (2, 1, 8, 0x80000007),
    "sh4": (1, 1, 42, 0), "sh4eb": (1, 2, 42, 0), "s390x": (2, 2, 22, 0),
    "aarch64": (2, 1, 183, 0), "aarch64_be": (2, 2, 183, 0), "hppa": (1, 2, 15, 0x210),
    "riscv32": (1, 1, 243, 5), "riscv64": (2, 1, 243, 5), "xtensa": (1, 1, 94, 0x300),
    "xtensaeb": (1, 2, 94, 0x300), "microblaze": (1, 2, 0xBAAB, 0), "microblazeel": (1, 1, 0xBAAB, 0),
    "or1k": (1, 2, 92, 0), "hexagon": (1, 1, 164, 0x73), "loongarch64": (2, 1, 258, 0x43),
}
ISSUE_NAMES = ("i386 i486 x86_64 alpha arm armeb sparc sparc32plus sparc64 ppc ppc64 ppc64le m68k "
               "mips mipsel mipsn32 mipsn32el mips64 mips64el sh4 sh4eb s390x aarch64 aarch64_be "
               "hppa riscv32 riscv64 xtensa xtensaeb microblaze microblazeel or1k hexagon loongarch64").split()
OSABI = {"hppa": 1, "sparc64": 0}  # HP-UX ABI for hppa as its toolchains write it; else SYSV


def make_elf(elfclass, data, machine, flags=0, e_type=2, interp=None, osabi=0):
    """A minimal, valid ELF file: header, program headers (PT_LOAD [+ PT_INTERP])."""
    end = "<" if data == 1 else ">"
    wide = elfclass == 2
    ehsize, phentsize = (64, 56) if wide else (52, 32)
    phnum = 2 if interp else 1
    phoff = ehsize
    payload_off = phoff + phnum * phentsize
    interp_bytes = (interp.encode() + b"\0") if interp else b""
    ident = b"\x7fELF" + bytes([elfclass, data, 1, osabi, 0]) + b"\0" * 7
    if wide:
        hdr = ident + struct.pack(end + "HHIQQQIHHHHHH", e_type, machine, 1, 0x400000, phoff, 0,
                                  flags, ehsize, phentsize, phnum, 64, 0, 0)
    else:
        hdr = ident + struct.pack(end + "HHIIIIIHHHHHH", e_type, machine, 1, 0x10000, phoff, 0,
                                  flags, ehsize, phentsize, phnum, 40, 0, 0)
    phdrs = b""
    segs = [(1, 0, payload_off + len(interp_bytes))]  # PT_LOAD covering everything
    if interp:
        segs.insert(0, (3, payload_off, len(interp_bytes)))  # PT_INTERP
    for p_type, off, size in segs:
        if wide:
            phdrs += struct.pack(end + "IIQQQQQQ", p_type, 5, off, 0x400000 + off, 0x400000 + off, size, size, 8)
        else:
            phdrs += struct.pack(end + "IIIIIIII", p_type, off, 0x10000 + off, 0x10000 + off, size, size, 5, 4)
    return hdr + phdrs + interp_bytes


def header_for(name, e_type=2):
    cls, data, machine, flags = REAL[name]
    return make_elf(cls, data, machine, flags, e_type=e_type, osabi=OSABI.get(name, 0))


# --------------------------------------------------------------------------- the table

def test_table_has_every_platform_of_the_issue_once():
    assert sorted(B.PLATFORM_NAMES) == sorted(ISSUE_NAMES)
    assert len(set(B.PLATFORM_NAMES)) == len(B.PLATFORM_NAMES)
    assert sorted(REAL) == sorted(ISSUE_NAMES)


@pytest.mark.parametrize("row", B.PLATFORMS, ids=lambda r: r["name"])
def test_magic_is_kept_by_its_own_mask(row):
    magic, mask = bytearray(row["magic"]), bytearray(row["mask"])
    assert len(magic) == len(mask) <= B.BINPRM_BUF_SIZE
    assert bytes(m & k for m, k in zip(magic, mask)) == bytes(magic), "magic & mask != magic"
    assert row["magic"][:4] == b"\x7fELF" and row["mask"][:4] == b"\xff" * 4


@pytest.mark.parametrize("name", ISSUE_NAMES)
@pytest.mark.parametrize("e_type", [2, 3], ids=["exec", "pie"])
def test_real_elf_header_matches_exactly_its_platform(name, e_type):
    blob = header_for(name, e_type)
    elf = ELFFile(io.BytesIO(blob))  # a header pyelftools accepts as real
    assert elf.header["e_type"] == ("ET_EXEC" if e_type == 2 else "ET_DYN")
    assert B.match_platforms(blob[:B.BINPRM_BUF_SIZE]) == [name]
    assert B.elf_machine_of(B.platform(name)) == REAL[name][2]


def test_other_file_kinds_match_nothing():
    assert B.match_platforms(b"#!/bin/sh\necho hi\n") == []
    assert B.match_platforms(b"\x7fELF") == []
    cls, data, machine, flags = REAL["aarch64"]
    core = make_elf(cls, data, machine, flags, e_type=4)  # ET_CORE is not a program
    assert B.match_platforms(core) == []


def test_mips_o32_and_n32_are_told_apart_by_abi2():
    o32, n32 = header_for("mips"), header_for("mipsn32")
    assert B.match_platforms(o32) == ["mips"] and B.match_platforms(n32) == ["mipsn32"]


def test_families():
    assert set(B.host_family("x86_64")) == {"i386", "i486", "x86_64"}
    assert set(B.host_family("aarch64")) == {"arm", "aarch64"}
    assert set(B.host_family("ppc64le")) == {"ppc64le"}
    assert B.host_family("vax") == ()


@pytest.mark.skipif(not list(pathlib.Path("/usr/share/binfmts").glob("qemu-*")),
                    reason="Debian's qemu-user-static binfmts files absent")
def test_debian_entries_accept_the_same_real_headers():
    """Debian's qemu-user-static entries and ours agree on every real header both know."""
    seen = 0
    for path in sorted(pathlib.Path("/usr/share/binfmts").glob("qemu-*")):
        name = path.name[len("qemu-"):]
        if name not in REAL:
            continue
        fields = dict(line.split(" ", 1) for line in path.read_text().splitlines() if " " in line)
        deb = B.parse_register_line(":x:M:0:%s:%s:/i:F" % (fields["magic"].replace("ELF", "\\x45\\x4c\\x46"),
                                                           fields["mask"]))
        assert B.matches(deb, header_for(name)), name
        seen += 1
    assert seen > 20


# --------------------------------------------------------------------------- names, flags

def test_select_platforms():
    assert B.select_platforms(["all"], "x86_64") == (
        [n for n in B.PLATFORM_NAMES if n not in ("i386", "i486", "x86_64")], ["i386", "i486", "x86_64"])
    assert B.select_platforms(["aarch64", "x86_64", "aarch64"], "x86_64") == (["aarch64"], ["x86_64"])
    assert B.select_platforms(["x86_64"], "x86_64", skip_host_family=False) == (["x86_64"], [])
    assert B.select_platforms([], "x86_64") == ([], [])


def test_unknown_platform_lists_the_valid_ones():
    with pytest.raises(B.BinfmtError) as err:
        B.select_platforms(["aarch64", "arm64"], "x86_64")
    assert "'arm64'" in str(err.value) and "loongarch64" in str(err.value) and "riscv64" in str(err.value)
    with pytest.raises(B.BinfmtError):
        B.select_platforms(["all", "arm"], "x86_64")


def test_flags():
    assert B.flags_to_letters(B.normalize_flags(None)) == "PF"
    assert B.flags_to_letters(B.normalize_flags({"credentials": True})) == "POCF"
    assert B.normalize_flags({"credentials": True, "open_binary": False})["open_binary"] is True
    assert B.flags_to_letters(B.normalize_flags({"fix_binary": False, "preserve_argv0": None})) == "P"
    assert B.letters_to_flags("C") == B.letters_to_flags("OC")
    with pytest.raises(B.BinfmtError, match="OCFP"):
        B.normalize_flags({"fast": True})
    with pytest.raises(B.BinfmtError, match="only O, C, F and P"):
        B.letters_to_flags("FX")


def test_interpreter_path():
    assert B.interpreter_path("aarch64") == "/usr/bin/qemu-aarch64-static"
    assert B.interpreter_path("i486", "/opt/q/", "") == "/opt/q/qemu-i386"
    assert B.interpreter_path("aarch64_be") == "/usr/bin/qemu-aarch64_be-static"


# --------------------------------------------------------------------------- encoding, parsing

KERNEL_TEXT = """enabled
interpreter /usr/bin/qemu-aarch64-static
flags: PF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


def test_register_line_is_what_the_kernel_expects():
    entry = B.wanted_entry("aarch64", "/usr/bin/qemu-aarch64-static", B.normalize_flags(None))
    line = B.register_line(entry)
    assert line == (":qemu-aarch64:M:0:"
                    "\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
                    "\\x02\\x00\\xb7\\x00:"
                    "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff"
                    "\\xfe\\xff\\xff\\xff:/usr/bin/qemu-aarch64-static:PF")
    assert B.same_entry(B.parse_entry("qemu-aarch64", KERNEL_TEXT), entry)


def test_parse_entry_variants():
    e = B.parse_entry("qemu-x", KERNEL_TEXT.replace("enabled", "disabled").replace("PF", "POCF"))
    assert e["enabled"] is False and e["flags"] == "POCF"
    no_mask = B.parse_entry("x", "enabled\ninterpreter /i\nflags: \noffset 2\nmagic 7f45\n")
    assert no_mask["mask"] == b"\xff\xff" and no_mask["offset"] == 2 and no_mask["flags"] == ""
    ext = B.parse_entry("py", "enabled\ninterpreter /usr/bin/python3\nflags: \nextension .pyc\n")
    assert ext["extension"] == ".pyc" and ext["magic"] is None
    assert not B.matches(ext, b"\x7fELF" * 10)


def test_entry_differs_on_each_compared_field():
    want = B.wanted_entry("riscv64", "/usr/bin/qemu-riscv64-static", B.normalize_flags(None))
    for key, value in (("interpreter", "/usr/libexec/qemu-binfmt/riscv64-binfmt-P"), ("flags", "POF"),
                       ("offset", 1), ("enabled", False), ("mask", b"\xff" * 20),
                       ("magic", want["magic"][:-1] + b"\x01")):
        have = dict(want, **{key: value})
        assert not B.same_entry(have, want), key
    assert B.same_entry(dict(want), want)


def test_plan():
    want = dict((e["name"], e) for e in (
        B.wanted_entry(n, "/usr/bin/qemu-%s-static" % n, B.normalize_flags(None)) for n in ("arm", "mips", "sh4")))
    current = {"qemu-arm": None, "qemu-mips": dict(want["qemu-mips"]),
               "qemu-sh4": dict(want["qemu-sh4"], interpreter="/usr/libexec/qemu-binfmt/sh4-binfmt-P")}
    assert B.plan(want, current, "present") == [("register", "qemu-arm"), ("replace", "qemu-sh4")]
    assert B.plan(want, current, "absent") == [("remove", "qemu-mips"), ("remove", "qemu-sh4")]
    assert B.plan(want, dict(want), "present") == []


@settings(max_examples=200, deadline=None)
@given(magic=st.binary(min_size=1, max_size=128), data=st.data(),
       name=st.from_regex(r"[A-Za-z0-9_.-]{1,40}", fullmatch=True).filter(lambda s: s not in (".", "..")),
       interp=st.from_regex(r"/[A-Za-z0-9_./-]{1,60}", fullmatch=True),
       letters=st.sets(st.sampled_from("POCF")), offset=st.integers(0, 100))
def test_register_line_round_trip(magic, data, name, interp, letters, offset):
    mask = data.draw(st.binary(min_size=len(magic), max_size=len(magic)))
    entry = {"name": name, "enabled": True, "interpreter": interp, "offset": offset,
             "flags": B.flags_to_letters(B.letters_to_flags("".join(letters))),
             "magic": bytes(bytearray(m & k for m, k in zip(magic, mask))), "mask": mask}
    line = B.register_line(entry)
    assert "\x00" not in line and line.count(":") == 7
    assert B.same_entry(B.parse_register_line(line), entry)
    assert B.parse_register_line(line)["name"] == name


def test_register_line_refuses_separators():
    good = B.wanted_entry("arm", "/usr/bin/qemu-arm-static", B.normalize_flags(None))
    for bad in (dict(good, interpreter="/a:b"), dict(good, name="a/b"), dict(good, interpreter="")):
        with pytest.raises(B.BinfmtError):
            B.register_line(bad)


def test_binfmt_d_content_reads_back():
    entry = B.wanted_entry("riscv64", "/usr/bin/qemu-riscv64-static", B.normalize_flags(None))
    text = B.binfmt_d_content(entry)
    assert text.startswith("# Managed by vmhost.virt.qemu_binfmt")
    rule = [line for line in text.splitlines() if not line.startswith("#")][0]
    assert B.same_entry(B.parse_register_line(rule), entry)


# --------------------------------------------------------------------------- matching

def test_kernel_rule_with_offset():
    entry = {"magic": b"\x01\x00", "mask": b"\xff\x0f", "offset": 2}
    assert B.matches(entry, b"zz\x01\xf0")
    assert not B.matches(entry, b"zz\x01\xf1")
    assert not B.matches(entry, b"zz\x01")


def test_match_entries_only_enabled():
    arm = B.wanted_entry("aarch64", "/q", B.normalize_flags(None))
    blob = header_for("aarch64")
    assert B.match_entries([arm], blob) == ["qemu-aarch64"]
    assert B.match_entries([dict(arm, enabled=False)], blob) == []


# --------------------------------------------------------------------------- interpreters

def _inspect(blob):
    return B.inspect_elf(io.BytesIO(blob))


def test_inspect_static_and_dynamic():
    static = _inspect(make_elf(2, 1, 62))
    assert static["static"] and static["machine"] == 62 and static["machine_name"] == "EM_X86_64"
    dyn = _inspect(make_elf(2, 1, 62, interp="/lib64/ld-linux-x86-64.so.2"))
    assert not dyn["static"] and dyn["interp"] == "/lib64/ld-linux-x86-64.so.2"
    with pytest.raises(B.BinfmtError, match="not an ELF"):
        _inspect(b"#!/bin/sh\n")


def test_check_interpreter_messages():
    path = "/usr/bin/qemu-aarch64-static"
    assert B.check_interpreter(path, _inspect(make_elf(2, 1, 62)), "x86_64", True) == []
    missing = B.check_interpreter(path, "missing", "x86_64", True)
    assert len(missing) == 1 and path in missing[0] and "qemu-user-static" in missing[0]
    not_elf = B.check_interpreter(path, "bad magic", "x86_64", True)
    assert "not an ELF" in not_elf[0] and path in not_elf[0]
    wrong = B.check_interpreter(path, _inspect(make_elf(2, 1, 183)), "x86_64", True)
    assert "EM_AARCH64" in wrong[0] and "EM_X86_64" in wrong[0] and path in wrong[0]
    dyn = _inspect(make_elf(2, 1, 62, interp="/lib64/ld-linux-x86-64.so.2"))
    problem = B.check_interpreter(path, dyn, "x86_64", True)
    assert "dynamically linked" in problem[0] and "fix_binary=false" in problem[0] and path in problem[0]
    assert B.check_interpreter(path, dyn, "x86_64", False) == []
