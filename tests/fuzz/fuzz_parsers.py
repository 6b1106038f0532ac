# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzz the parsers that read hostile input (images, guest agent replies, key files).

Not part of `make test`: run `make fuzz FUZZ_SECONDS=3600` (CPU seconds, spread over the
targets).  Each target feeds hypothesis-generated input to one parser and requires
that it either returns or raises its own error type, within a bounded CPU time,
never RecursionError, OverflowError, MemoryError, IndexError...

The corpus (hypothesis' example database: failing examples and the covering and
targeted examples it keeps) is committed as tests/fuzz/corpus.tar.gz (binary inputs do
not belong in the tree as loose text files; the archive is left out of the collection
tarball): each run unpacks it into a work directory, starts from what earlier runs
found, and packs it again, reproducibly (sorted names, no owners, fixed times).  `--report` prints the CPU time spent so far
(tests/fuzz/cpu_seconds.txt).
"""
import argparse
import gzip
import io
import os
import shutil
import signal
import struct
import sys
import tarfile
import tempfile
import time
import zlib

from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from ansible_collections.vmhost.virt.plugins.module_utils import binfmt as B
from ansible_collections.vmhost.virt.plugins.module_utils.keys import nix, sexp, trust
from ansible_collections.vmhost.virt.plugins.module_utils.keys.errors import KeysError
from ansible_collections.vmhost.virt.plugins.module_utils import partitions as P
from ansible_collections.vmhost.virt.plugins.module_utils import qemu_img as Q
from ansible_collections.vmhost.virt.plugins.module_utils import qga

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS_ARCHIVE = os.path.join(HERE, "corpus.tar.gz")
LEDGER = os.path.join(HERE, "cpu_seconds.txt")
PER_CALL_CPU = 2.0  # seconds one parser call may take at most
MIB = 1 << 20


def bounded(func, *args):
    started = time.process_time()
    try:
        return func(*args)
    finally:
        spent = time.process_time() - started
        assert spent < PER_CALL_CPU, "%s took %.2f s of CPU" % (func.__name__, spent)


# -- GPT / MBR ------------------------------------------------------------------
_BASE = None


def _base_image():
    global _BASE
    if _BASE is None:
        layout = P.plan("gpt", 4 * MIB, [{"size": "1MiB"}, {"size": "rest"}], seed="fuzz")
        buf = io.BytesIO(b"\0" * layout["size"])
        P.write_table(buf, layout)
        _BASE = buf.getvalue()
    return _BASE


def _reseal(data, at):
    """Fix the header CRC at ``at`` so mutations reach the code behind the CRC check."""
    head = bytearray(data[at:at + 92])
    if head[:8] != b"EFI PART":
        return
    head[16:20] = b"\0\0\0\0"
    struct.pack_into("<I", head, 16, zlib.crc32(bytes(head)) & 0xffffffff)
    data[at:at + 92] = head


@st.composite
def gpt_images(draw):
    data = bytearray(_base_image())
    fields = draw(st.lists(st.tuples(st.sampled_from([72, 80, 84, 24, 32, 40, 48, 12]),
                                     st.integers(0, 2 ** 64 - 1)), max_size=4))
    for offset, value in fields:
        width = 8 if offset in (24, 32, 40, 48, 72) else 4
        data[512 + offset:512 + offset + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
    flips = draw(st.lists(st.tuples(st.integers(0, 34 * 512 - 1), st.integers(0, 255)), max_size=16))
    for at, byte in flips:
        data[at] = byte
    if draw(st.booleans()):
        _reseal(data, 512)
    size = draw(st.sampled_from([len(data), 512, 1024, 17 * 512, 3 * MIB + 7]))
    return bytes(data[:size])


@given(gpt_images())
def fuzz_read_table(data):
    try:
        table = bounded(P.read_table, io.BytesIO(data))
    except P.ImageError:
        target(1.0, label="refused")
        return
    if table:
        target(float(len(table["partitions"])), label="partitions")
        for part in table["partitions"]:
            bounded(P.probe_filesystem, io.BytesIO(data), part["start"])


# -- s-expressions / Guix ACL -------------------------------------------------------
sexp_tokens = st.sampled_from([b"(", b")", b"acl", b"entry", b"public-key", b"ecc", b"curve",
                               b"Ed25519", b"q", b"#00ff#", b"|AAAA|", b'"x\\n"', b"3:abc",
                               b"4:ab", b" ", b"[", b"99999999999:", b"\\", b"#0", b"|"])


@given(st.one_of(st.binary(max_size=4096),
                 st.lists(sexp_tokens, max_size=400).map(b"".join),
                 st.integers(0, 5000).map(lambda n: b"(acl " + b"(" * n + b")" * (n + 1))))
def fuzz_sexp(data):
    target(float(data.count(b"(")), label="open parens")
    try:
        tree = bounded(sexp.sexp_parse, data)
    except KeysError:
        return
    bounded(sexp.sexp_dump, tree)
    bounded(sexp.sexp_dump_canonical, tree)
    try:
        bounded(trust.parse_acl, data)
    except KeysError:
        pass


# -- guest agent replies -------------------------------------------------------------
json_tokens = st.sampled_from(['{', '}', '[', ']', '"', '\\', '"return"', ':', ',', '1', 'null',
                               '"a"', ' ', '\\"', '1e999999', '-0', '"\\ud800"'])


@given(st.one_of(st.text(max_size=2000),
                 st.lists(json_tokens, max_size=600).map("".join),
                 st.integers(0, 200000).map(lambda n: '{"return": ' + "[" * n + "]" * n + "}")))
def fuzz_qga_reply(text):
    target(float(text.count("[") + text.count("{")), label="brackets")
    try:
        bounded(qga.loads_bounded, text)
    except ValueError:
        pass


# -- qemu-img info, binfmt entries, nix keys ------------------------------------------
@given(st.one_of(st.text(max_size=2000), st.lists(json_tokens, max_size=300).map("".join)))
def fuzz_qemu_img_info(text):
    try:
        bounded(Q.parse_info, text)
    except Q.ImageError:
        pass


@given(st.text(max_size=600), st.text(max_size=40))
def fuzz_binfmt(text, name):
    try:
        bounded(B.parse_entry, name, text)
    except B.BinfmtError:
        pass
    try:
        bounded(B.parse_register_line, text)
    except B.BinfmtError:
        pass


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def fuzz_nix_keys(data):
    for func in (nix.parse_nix_secret, nix.parse_nix_public):
        try:
            bounded(func, data)
        except KeysError:
            pass


@given(st.one_of(st.text(max_size=200), st.integers(-2 ** 70, 2 ** 70)))
def fuzz_sizes(value):
    try:
        bounded(Q.parse_size, value)
    except Q.ImageError:
        pass


TARGETS = [fuzz_read_table, fuzz_sexp, fuzz_qga_reply, fuzz_qemu_img_info, fuzz_binfmt,
           fuzz_nix_keys, fuzz_sizes]


def _ledger():
    try:
        with open(LEDGER) as handle:
            return float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def _record(base, spent, rounds):
    with open(LEDGER, "w") as handle:
        handle.write("%.0f CPU seconds in total; last run %.0f s, %d rounds of %d targets\n"
                     % (base + spent, spent, rounds, len(TARGETS)))


def unpack_corpus(archive, dest):
    """Unpack the committed corpus into ``dest`` (regular files only, no paths outside)."""
    if not os.path.exists(archive):
        return
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            name = os.path.normpath(member.name)
            if not member.isfile() or name.startswith(("/", "..")):
                continue
            target = os.path.join(dest, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)


def pack_corpus(src, archive):
    """Write ``src`` to ``archive`` reproducibly, through a temp file and a rename."""
    tmp = archive + ".tmp"
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                for root, dirs, files in os.walk(src):
                    dirs.sort()
                    for name in sorted(files):
                        path = os.path.join(root, name)
                        info = tar.gettarinfo(path, os.path.relpath(path, src))
                        info.uid = info.gid = 0
                        info.uname = info.gname = ""
                        info.mtime = 0
                        info.mode = 0o644
                        with open(path, "rb") as handle:
                            tar.addfile(info, handle)
    os.replace(tmp, archive)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="CPU seconds to spend in total")
    parser.add_argument("--examples", type=int, default=2000, help="examples per round and target")
    parser.add_argument("--report", action="store_true", help="print the CPU seconds spent so far")
    args = parser.parse_args(argv)
    if args.report:
        print("%.0f CPU seconds of fuzzing recorded in %s" % (_ledger(), LEDGER))
        return 0
    work = tempfile.mkdtemp(prefix="vmhost-fuzz-corpus.")
    unpack_corpus(CORPUS_ARCHIVE, work)
    db = DirectoryBasedExampleDatabase(work)
    configured = [settings(max_examples=args.examples, deadline=None, database=db,
                           suppress_health_check=list(HealthCheck))(t) for t in TARGETS]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    base = _ledger()
    started = time.process_time()
    rounds = 0
    try:
        while time.process_time() - started < args.seconds:
            for test in configured:
                test()
            rounds += 1
            _record(base, time.process_time() - started, rounds)
    finally:
        spent = time.process_time() - started
        _record(base, spent, rounds)
        pack_corpus(work, CORPUS_ARCHIVE)
        shutil.rmtree(work, ignore_errors=True)
        print("fuzzed %.0f CPU seconds (%d rounds); %.0f in total" % (spent, rounds, base + spent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
