# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""QEMU user-mode emulation through the kernel's binfmt_misc: the pure part.

Private to vmhost.virt: other collections must not import this module.

* ``PLATFORMS``: the platform table (name, family, QEMU binary, magic, mask),
  the one place these bytes live.  Everything else (the module, its argument
  spec choices, the docs, the tests) reads it from here.
* Encoding of the ``:name:M:offset:magic:mask:interpreter:flags`` line written
  to ``register`` and to ``/etc/binfmt.d/*.conf``.
* Parsing of ``/proc/sys/fs/binfmt_misc/<entry>`` as the kernel prints it.
* Matching a file's first bytes against entries, with the kernel's own rule.
* Inspecting an interpreter with pyelftools (static? right machine?).
* ``plan()``: wanted entries vs. the entries read back -> the actions to take.

No AnsibleModule here and no side effect: callers read /proc and files, and
pass the contents in.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import struct

try:
    from elftools.elf.elffile import ELFFile
    from elftools.common.exceptions import ELFError
    from elftools.elf.enums import ENUM_E_MACHINE
    HAS_ELFTOOLS = True
    ELFTOOLS_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - exercised only without pyelftools
    ELFFile = ELFError = ENUM_E_MACHINE = None
    HAS_ELFTOOLS = False
    ELFTOOLS_IMPORT_ERROR = _exc

ENTRY_PREFIX = "qemu-"
# The kernel reads this many bytes of a file to match it (BINPRM_BUF_SIZE).
BINPRM_BUF_SIZE = 256

# Flag letters in the order the kernel prints them, with our option names.
FLAG_LETTERS = (
    ("P", "preserve_argv0"),
    ("O", "open_binary"),
    ("C", "credentials"),
    ("F", "fix_binary"),
)
FLAG_NAMES = tuple(name for _letter, name in FLAG_LETTERS)
DEFAULT_FLAGS = {"fix_binary": True, "preserve_argv0": True, "credentials": False, "open_binary": False}


class BinfmtError(Exception):
    """Bad input or an unusable system state; the message says what to do."""


def _hx(text):
    """``"7f 45 4c"`` -> bytes (spaces ignored), so the table reads like a hex dump."""
    return bytes(bytearray.fromhex(text))


_ELF = "7f454c46"
_Z7 = "00 00 00 00 00 00 00"       # EI_PAD .. (bytes 9-15)
_MASK_PAD = "ff ff ff ff ff ff ff"  # mask of bytes 9-15


def _row(name, family, ident, etype_machine, ident_mask, etype_machine_mask, qemu=None,
         extra_magic="", extra_mask=""):
    """One platform: magic = ELF ident (bytes 0-15) + e_type/e_machine (16-19) [+ more]."""
    magic = _hx(_ELF + ident + _Z7 + etype_machine + extra_magic)
    mask = _hx("ffffffff" + ident_mask + _MASK_PAD + etype_machine_mask + extra_mask)
    return {"name": name, "family": family, "qemu": qemu or name, "magic": magic, "mask": mask}


# e_ident bytes 4-8: class (1=32, 2=64), data (1=LE, 2=BE), version, OS ABI, ABI version.
_LE32, _LE64, _BE32, _BE64 = "01 01 01 00 00", "02 01 01 00 00", "01 02 01 00 00", "02 02 01 00 00"
# e_type (EXEC=2; the mask's fe also admits DYN=3) and e_machine, in the file's byte order.
_LE_T = "02 00"
_BE_T = "00 02"
_LE_TM = "fe ff ff ff"
_BE_TM = "ff fe ff ff"

# The platform table.  Facts from GNU Guix's qemu-binfmt service (itself taken from
# QEMU's scripts/qemu-binfmt-conf.sh), checked against QEMU's script and Debian's
# qemu-user-static /usr/share/binfmts/qemu-* files, with these corrections:
#  * microblaze (big endian) stores e_type as 00 02 like every big-endian entry; the
#    02 00 of older tables never matches a real big-endian ELF file (Debian's fix);
#  * mips/mipsn32 (and the el pair) are told apart by EF_MIPS_ABI2 (0x20) in e_flags,
#    as in QEMU >= 7.1 and Debian; otherwise the two entries are byte-identical.
#  * no row looks at EI_OSABI (byte 7): a static glibc binary that uses GNU extensions
#    (IFUNC) says "GNU/Linux" (3) there, not "System V" (0).  The seed (and QEMU's
#    script) demand 0 for i386, alpha, sparc, sparc32plus, m68k (0 or 1), sh4, sh4eb and
#    s390x, so Debian's busybox-static:s390x and :i386 got "Exec format error"
#    (tests/integration/test_qemu_binfmt.py::test_debian_static_binaries runs Debian's binaries through them);
#  * bits a mask clears are 0 in the magic (the i386 family's data and version bytes,
#    alpha's, m68k's version): the kernel stores magic & mask and prints that back, so
#    the table holds what /proc shows and magic & mask == magic for every row.
# ``qemu`` is the emulator's name when it is not the platform's: i486 runs on qemu-i386.
PLATFORMS = (
    _row("i386", "i386", "01 00 00 00 00", _LE_T + "03 00", "ff fe fe 00 ff", _LE_TM),
    _row("i486", "i386", "01 00 00 00 00", _LE_T + "06 00", "ff fe fe 00 ff", _LE_TM, qemu="i386"),
    _row("x86_64", "i386", "02 00 00 00 00", _LE_T + "3e 00", "ff fe fe 00 ff", _LE_TM),
    _row("alpha", "alpha", "02 00 00 00 00", _LE_T + "26 90", "ff fe fe 00 ff", _LE_TM),
    _row("arm", "arm", "01 01 01 00 00", _LE_T + "28 00", "ff ff ff 00 ff", _LE_TM),
    _row("armeb", "armeb", "01 02 01 00 00", _BE_T + "00 28", "ff ff ff 00 ff", _BE_TM),
    _row("sparc", "sparc", "01 02 01 00 00", _BE_T + "00 02", "ff ff ff 00 ff", _BE_TM),
    _row("sparc32plus", "sparc", "01 02 01 00 00", _BE_T + "00 12", "ff ff ff 00 ff", _BE_TM),
    _row("sparc64", "sparc", "02 02 01 00 00", _BE_T + "00 2b", "ff ff ff 00 ff", _BE_TM),
    _row("ppc", "ppc", "01 02 01 00 00", _BE_T + "00 14", "ff ff ff 00 ff", _BE_TM),
    _row("ppc64", "ppc", "02 02 01 00 00", _BE_T + "00 15", "ff ff ff 00 ff", _BE_TM),
    _row("ppc64le", "ppcle", "02 01 01 00 00", _LE_T + "15 00", "ff ff ff 00 ff", "fe ff ff 00"),
    _row("m68k", "m68k", "01 02 00 00 00", _BE_T + "00 04", "ff ff fe 00 ff", _BE_TM),
    # mips o32/n32: e_flags (offset 36 in a 32-bit header) bit EF_MIPS_ABI2 = 0x20.
    _row("mips", "mips", "01 02 01 00 00", _BE_T + "00 08", "ff ff ff 00 fe", _BE_TM,
         extra_magic="00" * 20, extra_mask="00" * 19 + "20"),
    _row("mipsel", "mips", "01 01 01 00 00", _LE_T + "08 00", "ff ff ff 00 fe", _LE_TM,
         extra_magic="00" * 17, extra_mask="00" * 16 + "20"),
    _row("mipsn32", "mips", "01 02 01 00 00", _BE_T + "00 08", "ff ff ff 00 fe", _BE_TM,
         extra_magic="00" * 19 + "20", extra_mask="00" * 19 + "20"),
    _row("mipsn32el", "mips", "01 01 01 00 00", _LE_T + "08 00", "ff ff ff 00 fe", _LE_TM,
         extra_magic="00" * 16 + "20", extra_mask="00" * 16 + "20"),
    _row("mips64", "mips", "02 02 01 00 00", _BE_T + "00 08", "ff ff ff 00 fe", _BE_TM),
    _row("mips64el", "mips", "02 01 01 00 00", _LE_T + "08 00", "ff ff ff 00 fe", _LE_TM),
    _row("sh4", "sh4", "01 01 01 00 00", _LE_T + "2a 00", "ff ff ff 00 ff", _LE_TM),
    _row("sh4eb", "sh4", "01 02 01 00 00", _BE_T + "00 2a", "ff ff ff 00 ff", _BE_TM),
    _row("s390x", "s390x", "02 02 01 00 00", _BE_T + "00 16", "ff ff ff 00 ff", _BE_TM),
    _row("aarch64", "arm", "02 01 01 00 00", _LE_T + "b7 00", "ff ff ff 00 ff", _LE_TM),
    _row("aarch64_be", "armeb", "02 02 01 00 00", _BE_T + "00 b7", "ff ff ff 00 ff", _BE_TM),
    _row("hppa", "hppa", "01 02 01 00 00", _BE_T + "00 0f", "ff ff ff 00 ff", _BE_TM),
    _row("riscv32", "riscv", "01 01 01 00 00", _LE_T + "f3 00", "ff ff ff 00 ff", _LE_TM),
    _row("riscv64", "riscv", "02 01 01 00 00", _LE_T + "f3 00", "ff ff ff 00 ff", _LE_TM),
    _row("xtensa", "xtensa", "01 01 01 00 00", _LE_T + "5e 00", "ff ff ff 00 ff", _LE_TM),
    _row("xtensaeb", "xtensaeb", "01 02 01 00 00", _BE_T + "00 5e", "ff ff ff 00 ff", _BE_TM),
    _row("microblaze", "microblaze", "01 02 01 00 00", _BE_T + "ba ab", "ff ff ff 00 ff", _BE_TM),
    _row("microblazeel", "microblazeel", "01 01 01 00 00", _LE_T + "ab ba", "ff ff ff 00 ff", _LE_TM),
    _row("or1k", "or1k", "01 02 01 00 00", _BE_T + "00 5c", "ff ff ff 00 ff", _BE_TM),
    _row("hexagon", "hexagon", "01 01 01 00 00", _LE_T + "a4 00", "ff ff ff 00 ff", _LE_TM),
    # loongarch64 also ignores EI_ABIVERSION's low bits and the OS ABI (ff ff ff fc 00).
    _row("loongarch64", "loongarch", "02 01 01 00 00", _LE_T + "02 01", "ff ff ff fc 00", _LE_TM),
)

PLATFORM_NAMES = tuple(p["name"] for p in PLATFORMS)
_BY_NAME = dict((p["name"], p) for p in PLATFORMS)

# uname -m (and a few aliases) -> the platform whose family is the host's own.
HOST_MACHINES = {
    "x86_64": "x86_64", "amd64": "x86_64", "i386": "i386", "i486": "i386", "i586": "i386",
    "i686": "i386", "aarch64": "aarch64", "arm64": "aarch64", "aarch64_be": "aarch64_be",
    "armv6l": "arm", "armv7l": "arm", "armv8l": "arm", "arm": "arm", "armeb": "armeb",
    "ppc": "ppc", "ppc64": "ppc64", "ppc64le": "ppc64le", "s390x": "s390x",
    "riscv32": "riscv32", "riscv64": "riscv64", "mips": "mips", "mipsel": "mipsel",
    "mips64": "mips64", "mips64el": "mips64el", "loongarch64": "loongarch64",
    "sparc64": "sparc64", "alpha": "alpha", "m68k": "m68k", "sh4": "sh4", "hppa": "hppa",
    "parisc": "hppa", "parisc64": "hppa",
}


# The architecture part of a Nix or Guix system type (aarch64-linux, armhf-linux,
# powerpc64le-linux) -> the platform that runs its binaries: uname -m names plus the
# names Nix and Guix use where they differ.
SYSTEM_ARCHES = dict(HOST_MACHINES, armhf="arm", powerpc="ppc", powerpc64="ppc64", powerpc64le="ppc64le")


def platform_of_system(system):
    """The platform of a system type such as ``aarch64-linux``; :class:`BinfmtError` when its
    architecture has no QEMU user-mode platform."""
    arch = str(system).split("-", 1)[0]
    try:
        return SYSTEM_ARCHES[arch]
    except KeyError:
        raise BinfmtError("system type %r: no QEMU user-mode platform runs %r binaries (known: %s)"
                          % (system, arch, ", ".join(sorted(SYSTEM_ARCHES))))


def platform(name):
    """The table row for ``name``; :class:`BinfmtError` listing valid names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise BinfmtError("unknown platform %r; valid platforms are: %s (or 'all')"
                          % (name, ", ".join(PLATFORM_NAMES)))


def host_platform(machine):
    """Platform name of a host whose ``uname -m`` is ``machine`` (None when unknown)."""
    return HOST_MACHINES.get(machine)


def host_family(machine):
    """Names of the platforms in the host's own family (empty when the host is unknown)."""
    own = host_platform(machine)
    if own is None:
        return ()
    fam = _BY_NAME[own]["family"]
    return tuple(p["name"] for p in PLATFORMS if p["family"] == fam)


def elf_machine_of(row):
    """e_machine of the ELF files a row matches, read from its magic (bytes 18-19).

    The byte order comes from e_type (bytes 16-17, ET_EXEC = 2): some masks clear
    the EI_DATA byte, so it is not read from there."""
    fmt = "<H" if bytearray(row["magic"])[16] == 2 else ">H"
    return struct.unpack(fmt, row["magic"][18:20])[0]


def select_platforms(names, host_machine=None, skip_host_family=True):
    """Resolve the ``platforms`` option: returns ``(selected, skipped)`` name lists."""
    if names is None:
        names = []
    if isinstance(names, str):
        names = [names]
    names = [str(n).strip() for n in names]
    if "all" in names:
        if len(names) != 1:
            raise BinfmtError("platforms: 'all' cannot be combined with other names; got %s" % names)
        names = list(PLATFORM_NAMES)
    bad = [n for n in names if n not in _BY_NAME]
    if bad:
        raise BinfmtError("unknown platform%s %s; valid platforms are: %s (or 'all')"
                          % ("s" if len(bad) > 1 else "", ", ".join(repr(b) for b in bad),
                             ", ".join(PLATFORM_NAMES)))
    seen = []
    for n in names:
        if n not in seen:
            seen.append(n)
    own = host_family(host_machine) if (skip_host_family and host_machine) else ()
    return [n for n in seen if n not in own], [n for n in seen if n in own]


# --------------------------------------------------------------------------- flags

def normalize_flags(flags):
    """Option dict -> dict of the four booleans; C implies O, as in the kernel."""
    out = dict(DEFAULT_FLAGS)
    if flags is not None:
        unknown = sorted(set(flags) - set(FLAG_NAMES))
        if unknown:
            raise BinfmtError("unknown flag%s %s; valid flags are %s (kernel letters OCFP)"
                              % ("s" if len(unknown) > 1 else "", ", ".join(unknown), ", ".join(FLAG_NAMES)))
        for key, value in flags.items():
            if value is not None:
                out[key] = bool(value)
    if out["credentials"]:
        out["open_binary"] = True
    return out


def flags_to_letters(flags):
    """Boolean dict -> letters in the kernel's print order (``PF``, ``POCF``...)."""
    return "".join(letter for letter, name in FLAG_LETTERS if flags.get(name))


def letters_to_flags(letters):
    """``"POF"`` -> boolean dict; :class:`BinfmtError` for a letter outside OCFP."""
    bad = sorted(set(letters) - set("POCF"))
    if bad:
        raise BinfmtError("invalid binfmt_misc flag letter%s %s; only O, C, F and P exist"
                          % ("s" if len(bad) > 1 else "", ", ".join(bad)))
    out = dict((name, letter in letters) for letter, name in FLAG_LETTERS)
    if out["credentials"]:
        out["open_binary"] = True
    return out


# --------------------------------------------------------------------------- encoding

def hex_escape(data):
    """Every byte as ``\\xNN``: the kernel stops at a NUL, and ':' would end the field."""
    return "".join("\\x%02x" % b for b in bytearray(data))


def interpreter_path(name, interpreter_dir="/usr/bin", suffix="-static"):
    """``/usr/bin/qemu-aarch64-static`` for platform ``aarch64`` (i486 -> qemu-i386)."""
    row = platform(name)
    if not interpreter_dir.startswith("/"):
        raise BinfmtError("interpreter_dir %r is relative: the kernel would look the interpreter "
                          "up relative to the directory of every program it starts; give an "
                          "absolute path" % interpreter_dir)
    if "/" in suffix:
        raise BinfmtError("interpreter_suffix %r may not contain '/'" % suffix)
    return "%s/qemu-%s%s" % (interpreter_dir.rstrip("/") or "", row["qemu"], suffix)


def wanted_entry(name, interpreter, flags):
    """The entry we want for platform ``name``, in the shape :func:`parse_entry` returns."""
    row = platform(name)
    return {
        "name": ENTRY_PREFIX + name,
        "enabled": True,
        "interpreter": interpreter,
        "flags": flags_to_letters(flags),
        "offset": 0,
        "magic": bytes(bytearray(m & k for m, k in zip(row["magic"], row["mask"]))),
        "mask": bytes(row["mask"]),
    }


def register_line(entry):
    """``:qemu-x:M:0:magic:mask:interpreter:flags`` for ``register`` or binfmt.d."""
    for field in ("name", "interpreter"):
        value = entry[field]
        if not value or ":" in value or "\n" in value or "\x00" in value:
            raise BinfmtError("binfmt_misc %s %r must be non-empty and contain no ':', newline or NUL"
                              % (field, value))
    if not entry["interpreter"].startswith("/"):
        raise BinfmtError("binfmt_misc interpreter %r is relative; it must be an absolute path"
                          % entry["interpreter"])
    if "/" in entry["name"] or entry["name"] in (".", "..", "register", "status"):
        raise BinfmtError("binfmt_misc entry name %r is not allowed" % entry["name"])
    return ":%s:M:%d:%s:%s:%s:%s" % (entry["name"], entry["offset"], hex_escape(entry["magic"]),
                                     hex_escape(entry["mask"]), entry["interpreter"], entry["flags"])


_ESC = re.compile(r"\\x([0-9a-fA-F]{2})")


def _unescape(field):
    out = bytearray()
    i = 0
    while i < len(field):
        m = _ESC.match(field, i)
        if m:
            out.append(int(m.group(1), 16))
            i = m.end()
        else:
            out.extend(field[i].encode("latin-1"))
            i += 1
    return bytes(out)


def parse_register_line(line):
    """Inverse of :func:`register_line` (type M only), used to read binfmt.d files back."""
    line = line.strip()
    if not line or line[0] in "#;":
        raise BinfmtError("not a binfmt_misc rule: %r" % line)
    sep = line[0]
    parts = line[1:].split(sep)
    if len(parts) != 7:
        raise BinfmtError("a binfmt_misc rule has 7 fields, got %d in %r" % (len(parts), line))
    name, kind, offset, magic, mask, interpreter, flags = parts
    if kind != "M":
        raise BinfmtError("only magic (M) rules are handled, got %r" % kind)
    magic_b, mask_b = _unescape(magic), _unescape(mask)
    if mask_b and len(mask_b) != len(magic_b):
        raise BinfmtError("magic and mask differ in length in %r" % line)
    flag_dict = letters_to_flags(flags)
    return {
        "name": name, "enabled": True, "interpreter": interpreter,
        "flags": flags_to_letters(flag_dict), "offset": int(offset or 0),
        "magic": bytes(bytearray(m & k for m, k in zip(magic_b, mask_b))) if mask_b else magic_b,
        "mask": mask_b or b"\xff" * len(magic_b),
    }


def parse_entry(name, text):
    """Parse ``/proc/sys/fs/binfmt_misc/<name>`` as the kernel prints it.

    Returns a dict with name, enabled, interpreter, flags (letters in print
    order), offset, magic and mask (bytes; mask all 0xff when the kernel
    prints none), or ``type: extension`` entries with ``extension``.
    """
    entry = {"name": name, "enabled": False, "interpreter": None, "flags": "", "offset": 0,
             "magic": None, "mask": None}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line in ("enabled", "disabled"):
            entry["enabled"] = line == "enabled"
        elif line.startswith("interpreter "):
            entry["interpreter"] = line[len("interpreter "):]
        elif line.startswith("flags:"):
            entry["flags"] = flags_to_letters(letters_to_flags(line[len("flags:"):].strip()))
        elif line.startswith("offset "):
            entry["offset"] = int(line.split()[1])
        elif line.startswith("magic "):
            entry["magic"] = bytes(bytearray.fromhex(line.split()[1]))
        elif line.startswith("mask "):
            entry["mask"] = bytes(bytearray.fromhex(line.split()[1]))
        elif line.startswith("extension "):
            entry["extension"] = line.split(None, 1)[1]
    if entry["magic"] is not None and entry["mask"] is None:
        entry["mask"] = b"\xff" * len(entry["magic"])
    return entry


def entry_view(entry):
    """JSON-friendly view of an entry (hex strings) for diff and results."""
    if entry is None:
        return None
    out = dict(entry)
    for key in ("magic", "mask"):
        if isinstance(out.get(key), bytes):
            out[key] = out[key].hex()
    return out


def same_entry(have, want):
    """Do two entries agree on what the kernel does (enabled, interpreter, flags, offset, magic, mask)?"""
    if have is None or want is None:
        return have is want
    return all(have.get(k) == want.get(k) for k in ("enabled", "interpreter", "flags", "offset", "magic", "mask"))


# --------------------------------------------------------------------------- matching

def matches(entry, head):
    """The kernel's rule: ``(byte ^ magic) & mask == 0`` for each byte at ``offset``."""
    magic, mask, off = entry["magic"], entry["mask"], entry.get("offset", 0)
    if magic is None or len(head) < off + len(magic):
        return False
    window = bytearray(head[off:off + len(magic)])
    return all(((b ^ m) & k) == 0 for b, m, k in zip(window, bytearray(magic), bytearray(mask)))


def match_platforms(head):
    """Table platforms whose magic/mask accept these first bytes of a file."""
    return [p["name"] for p in PLATFORMS if matches({"magic": p["magic"], "mask": p["mask"]}, head)]


def match_entries(entries, head):
    """Enabled entries (name order) that accept ``head``; the kernel runs the newest."""
    return [e["name"] for e in sorted(entries, key=lambda e: e["name"])
            if e.get("enabled") and e.get("magic") is not None and matches(e, head)]


# --------------------------------------------------------------------------- ELF inspection

def inspect_elf(stream):
    """Read an ELF file with pyelftools: ``{"machine", "machine_name", "elfclass",
    "little_endian", "static", "interp"}``; raises :class:`BinfmtError` if not ELF."""
    if not HAS_ELFTOOLS:
        raise BinfmtError("pyelftools is required to inspect ELF files")
    try:
        elf = ELFFile(stream)
        machine = elf.header["e_machine"]
        interp = None
        dynamic = False
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_INTERP":
                interp = seg.get_interp_name()
            elif seg["p_type"] == "PT_DYNAMIC":
                dynamic = True
    except (ELFError, struct.error, ValueError) as exc:
        raise BinfmtError("not an ELF file (%s)" % exc)
    if isinstance(machine, str):
        name, number = machine, ENUM_E_MACHINE.get(machine)
    else:
        name, number = "EM_%d" % machine, machine
    return {
        "machine": number, "machine_name": name, "elfclass": elf.elfclass,
        "little_endian": elf.little_endian, "static": interp is None,
        "interp": interp, "has_dynamic": dynamic,
    }


def check_interpreter(path, info, host_machine, fix_binary):
    """Problems with an interpreter for this host, as messages naming file and fix.

    ``info`` is :func:`inspect_elf`'s result, or a string: ``"missing"`` or the
    not-an-ELF reason.  Returns a list of messages (empty when fine).
    """
    if info == "missing":
        return ["interpreter %s does not exist: install the static emulators (Debian/Ubuntu: "
                "apt-get install qemu-user-static; Fedora: dnf install qemu-user-static) or set "
                "interpreter_dir/interpreter_suffix to where they are" % path]
    if isinstance(info, str):
        return ["interpreter %s is not an ELF executable (%s): point interpreter_dir/"
                "interpreter_suffix at the QEMU user-mode emulators" % (path, info)]
    problems = []
    own = host_platform(host_machine)
    if own is not None:
        want = elf_machine_of(_BY_NAME[own])
        if info["machine"] != want:
            problems.append("interpreter %s is built for %s but this host (%s) needs %s: install the "
                            "emulators built for this host's architecture"
                            % (path, info["machine_name"], host_machine, _machine_label(want)))
    if fix_binary and not info["static"]:
        problems.append("interpreter %s is dynamically linked (program interpreter %s); with the F "
                        "(fix_binary) flag the kernel opens it once and runs it inside chroots and "
                        "containers where its libraries are missing: install the statically linked "
                        "emulator (Debian/Ubuntu: qemu-user-static) or set flags.fix_binary=false"
                        % (path, info["interp"]))
    return problems


def _machine_label(number):
    if HAS_ELFTOOLS:
        for key, value in ENUM_E_MACHINE.items():
            if value == number and key.startswith("EM_"):
                return key
    return "EM_%d" % number


# --------------------------------------------------------------------------- planning

def binfmt_d_content(entry):
    """Text of ``/etc/binfmt.d/<entry>.conf`` (systemd-binfmt reads it at boot)."""
    return ("# Managed by vmhost.virt.qemu_binfmt: QEMU user-mode emulation for %s.\n%s\n"
            % (entry["name"][len(ENTRY_PREFIX):], register_line(entry)))


def plan(wanted, current, state):
    """Compare wanted entries with those read back.

    ``wanted``: ``{entry_name: entry}``; ``current``: ``{entry_name: entry or None}``
    for the same names.  Returns a list of ``(action, name)`` in order, with
    action ``register`` (missing), ``replace`` (differs: remove then add) or
    ``remove`` (``state == "absent"`` and present).
    """
    actions = []
    for name in sorted(wanted):
        have = current.get(name)
        if state == "absent":
            if have is not None:
                actions.append(("remove", name))
        elif have is None:
            actions.append(("register", name))
        elif not same_entry(have, wanted[name]):
            actions.append(("replace", name))
    return actions
