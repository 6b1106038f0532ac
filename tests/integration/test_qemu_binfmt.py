"""vmhost.virt.qemu_binfmt against this machine's kernel (root, binfmt_misc).

binfmt_misc registrations are kernel-wide: every test here holds one lock file
(so two runs never interleave), and the ``kernel`` fixture saves the entries
it may touch, removes them for the test, and puts them back afterwards
(unmounting binfmt_misc again if it was not mounted).
"""
import errno
import fcntl
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import time

import pytest

from ansible_collections.vmhost.virt.plugins.module_utils import _io
from ansible_collections.vmhost.virt.plugins.module_utils import binfmt as B

ROOT = pathlib.Path(__file__).resolve().parents[2]
MISC = "/proc/sys/fs/binfmt_misc"
FIXTURE_DEB = ROOT / ".tmp" / "fixtures" / "busybox-static-arm64.deb"
LOCK = "/run/lock/vmhost-virt-binfmt.lock" if os.path.isdir("/run/lock") else "/tmp/vmhost-virt-binfmt.lock"
TOUCHED = ["qemu-" + n for n in B.PLATFORM_NAMES]

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="binfmt_misc registration needs root"),
    pytest.mark.skipif(os.uname()[4] != "x86_64", reason="fixtures are arm64 programs run on an x86_64 host"),
]


def _mounted():
    return os.path.exists(os.path.join(MISC, "register"))


def _entries():
    if not _mounted():
        return {}
    return dict((n, B.parse_entry(n, open(os.path.join(MISC, n)).read()))
                for n in os.listdir(MISC) if n not in ("register", "status"))


def _remove(name):
    with open(os.path.join(MISC, name), "w") as f:
        f.write("-1")


@pytest.fixture(scope="module")
def kernel():
    """Exclusive use of our qemu-* binfmt entries; the machine is restored afterwards."""
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        was_mounted = _mounted()
        saved = dict((n, e) for n, e in _entries().items() if n in TOUCHED)
        for name in saved:
            _remove(name)
        try:
            yield
        finally:
            if not _mounted():
                subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", MISC], check=False)
            for name in _entries():
                if name in TOUCHED:
                    _remove(name)
            for entry in saved.values():
                with open(os.path.join(MISC, "register"), "w") as f:
                    f.write(B.register_line(entry))
                if not entry["enabled"]:
                    with open(os.path.join(MISC, entry["name"]), "w") as f:
                        f.write("0")
            if not was_mounted:
                subprocess.run(["umount", MISC], check=False)


@pytest.fixture
def clean(kernel):
    """Each test starts and ends with none of our entries registered."""
    def wipe():
        for name in _entries():
            if name in TOUCHED:
                _remove(name)
    wipe()
    yield
    wipe()


@pytest.fixture(scope="module")
def busybox(tmp_path_factory):
    if not FIXTURE_DEB.is_file():
        pytest.fail("missing %s: run `make fixtures`" % FIXTURE_DEB)
    root = tmp_path_factory.mktemp("busybox-arm64")
    subprocess.run(["dpkg-deb", "-x", str(FIXTURE_DEB), str(root)], check=True)
    path = root / "bin" / "busybox"
    assert path.is_file()
    return str(path)


def qemu_binfmt(run, check=False, diff=True, **args):
    """Run the module through the ``ansible_module`` fixture ``run``; return its registered result."""
    return run("qemu_binfmt", args, check=check, diff=diff)


def run_foreign(path, *args):
    try:
        proc = subprocess.run([path] + list(args), capture_output=True, text=True, check=False, timeout=60)
    except OSError as exc:
        return exc
    return proc


def test_register_run_unregister_with_exact_check_mode(clean, busybox, ansible_module):
    """The acceptance walk: check mode predicts every real run exactly."""
    want = {"platforms": ["aarch64", "riscv64"], "persistent": False}
    assert isinstance(run_foreign(busybox, "uname", "-m"), OSError)

    predicted = qemu_binfmt(ansible_module, check=True, **want)
    assert predicted["changed"] is True and not predicted.get("failed"), predicted
    assert [a for a in predicted["actions"] if not a.startswith("mount")] == [
        "register qemu-aarch64", "register qemu-riscv64"]
    assert "qemu-aarch64" not in _entries()
    assert sorted(predicted["diff"]["after"]["entries"]) == ["qemu-aarch64", "qemu-riscv64"]
    assert predicted["diff"]["before"]["entries"] == {}

    done = qemu_binfmt(ansible_module, **want)
    assert done["changed"] is True and done["actions"] == predicted["actions"], done
    assert done["registered"] == predicted["registered"]
    assert done["registered"]["aarch64"] == {"entry": "qemu-aarch64", "enabled": True, "flags": "PF",
                                             "interpreter": "/usr/bin/qemu-aarch64-static"}
    kernel_view = _entries()["qemu-aarch64"]
    assert kernel_view["interpreter"] == "/usr/bin/qemu-aarch64-static" and kernel_view["flags"] == "PF"
    proc = run_foreign(busybox, "uname", "-m")
    assert not isinstance(proc, OSError), proc
    assert proc.returncode == 0 and proc.stdout.strip() == "aarch64"

    for check in (True, False):
        again = qemu_binfmt(ansible_module, check=check, **want)
        assert again["changed"] is False and again["actions"] == [], again
        assert again["registered"] == done["registered"]

    predicted = qemu_binfmt(ansible_module, check=True, state="absent", **want)
    assert predicted["changed"] is True and predicted["actions"] == ["remove qemu-aarch64", "remove qemu-riscv64"]
    assert predicted["registered"] == {} and "qemu-aarch64" in _entries()
    gone = qemu_binfmt(ansible_module, state="absent", **want)
    assert gone["changed"] is True and gone["actions"] == predicted["actions"]
    assert not set(_entries()) & {"qemu-aarch64", "qemu-riscv64"}
    failed = run_foreign(busybox, "uname", "-m")
    assert isinstance(failed, OSError) and failed.errno == errno.ENOEXEC, failed

    for check in (True, False):
        again = qemu_binfmt(ansible_module, check=check, state="absent", **want)
        assert again["changed"] is False and again["actions"] == []


def test_differing_entry_is_re_registered(clean, tmp_path, ansible_module):
    """An entry like Debian's (other interpreter, OPF) or a disabled one differs: re-register."""
    other = tmp_path / "aarch64-binfmt-P"  # Debian's own entries use such a symlink
    other.symlink_to("/usr/bin/qemu-aarch64-static")
    debian = B.wanted_entry("aarch64", str(other), B.letters_to_flags("OPF"))
    with open(os.path.join(MISC, "register"), "w") as f:
        f.write(B.register_line(debian))
    args = {"platforms": ["aarch64"], "persistent": False}
    predicted = qemu_binfmt(ansible_module, check=True, **args)
    assert predicted["actions"] == ["re-register qemu-aarch64"]
    assert predicted["diff"]["before"]["entries"]["qemu-aarch64"]["flags"] == "POF"
    done = qemu_binfmt(ansible_module, **args)
    assert done["actions"] == predicted["actions"] and done["changed"]
    assert _entries()["qemu-aarch64"]["flags"] == "PF"
    assert _entries()["qemu-aarch64"]["interpreter"] == "/usr/bin/qemu-aarch64-static"

    with open(os.path.join(MISC, "qemu-aarch64"), "w") as f:
        f.write("0")  # disable it
    assert _entries()["qemu-aarch64"]["enabled"] is False
    assert qemu_binfmt(ansible_module, check=True, **args)["actions"] == ["re-register qemu-aarch64"]
    assert qemu_binfmt(ansible_module, **args)["changed"] is True
    assert _entries()["qemu-aarch64"]["enabled"] is True
    assert qemu_binfmt(ansible_module, **args)["changed"] is False

    flagged = qemu_binfmt(ansible_module, flags={"credentials": True}, **args)
    assert flagged["registered"]["aarch64"]["flags"] == "POCF"
    assert qemu_binfmt(ansible_module, flags={"credentials": True}, **args)["changed"] is False


def test_persistent_files(clean, tmp_path, ansible_module):
    confd = tmp_path / "binfmt.d"
    args = {"platforms": ["riscv64", "aarch64"], "persistent": True, "binfmt_d_path": str(confd)}
    predicted = qemu_binfmt(ansible_module, check=True, **args)
    assert not confd.exists()
    done = qemu_binfmt(ansible_module, **args)
    assert done["actions"] == predicted["actions"]
    assert "write %s/qemu-aarch64.conf" % confd in done["actions"]
    conf = confd / "qemu-aarch64.conf"
    assert oct(conf.stat().st_mode & 0o777) == "0o644"
    rule = [line for line in conf.read_text().splitlines() if line.startswith(":")][0]
    assert B.same_entry(B.parse_register_line(rule), _entries()["qemu-aarch64"])
    assert not [p for p in confd.iterdir() if p.name.startswith(".")], "temporary file left behind"
    assert qemu_binfmt(ansible_module, **args)["changed"] is False

    conf.write_text("# edited by hand\n")
    fixed = qemu_binfmt(ansible_module, **args)
    assert fixed["actions"] == ["write %s" % conf]
    assert fixed["diff"]["before"]["files"][str(conf)] == "# edited by hand\n"

    removed = qemu_binfmt(ansible_module, state="absent", **args)
    assert "remove %s" % conf in removed["actions"] and not conf.exists()
    assert qemu_binfmt(ansible_module, state="absent", **args)["changed"] is False


def test_match_file(clean, busybox, ansible_module):
    res = qemu_binfmt(ansible_module, platforms=["aarch64"], persistent=False, match_file=busybox)
    assert res["match"] == {"path": busybox, "platform": "aarch64", "machine": "EM_AARCH64", "native": False,
                            "handler": "qemu-aarch64", "interpreter": "/usr/bin/qemu-aarch64-static"}
    native = qemu_binfmt(ansible_module, platforms=[], match_file="/bin/sh")
    assert native["match"]["native"] is True and native["match"]["handler"] is None
    assert native["match"]["platform"] == "x86_64" and native["changed"] is False


def test_host_family_is_skipped(clean, ansible_module):
    res = qemu_binfmt(ansible_module, check=True, platforms=["x86_64", "i386", "riscv64"], persistent=False)
    assert res["skipped_platforms"] == ["x86_64", "i386"]
    assert not res.get("skipped"), "a result key named skipped would mark the task skipped"
    assert [a for a in res["actions"] if not a.startswith("mount")] == ["register qemu-riscv64"]


def _bad_dir(tmp_path, name, make):
    d = tmp_path / name
    d.mkdir()
    make(d / "qemu-aarch64-static")
    return str(d)


def _script(path):
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


@pytest.mark.parametrize("case", ["unknown-platform", "missing", "dynamic-with-F", "not-elf",
                                  "wrong-machine", "bad-flag", "not-mountable-file",
                                  "not-mountable-missing", "relative-dir", "suffix-slash"])
def test_bad_input_fails_clearly_and_changes_nothing(clean, tmp_path, busybox, case, ansible_module):
    confd = tmp_path / "binfmt.d"
    args = {"platforms": ["aarch64"], "persistent": True, "binfmt_d_path": str(confd)}
    expect = None
    if case == "unknown-platform":
        args["platforms"] = ["aarch64", "arm64"]
        expect = ["unknown platform 'arm64'", "loongarch64", "riscv64"]
    elif case == "missing":
        args["interpreter_dir"] = str(tmp_path)
        expect = ["%s/qemu-aarch64-static does not exist" % tmp_path, "qemu-user-static"]
    elif case == "dynamic-with-F":
        args["interpreter_dir"] = _bad_dir(tmp_path, "dyn", lambda p: shutil.copy("/bin/true", p))
        expect = ["dynamically linked", "fix_binary=false", "/dyn/qemu-aarch64-static"]
    elif case == "not-elf":
        args["interpreter_dir"] = _bad_dir(tmp_path, "sh", _script)
        expect = ["is not an ELF executable", "/sh/qemu-aarch64-static"]
    elif case == "wrong-machine":
        args["interpreter_dir"] = _bad_dir(tmp_path, "arm", lambda p: shutil.copy(busybox, p))
        expect = ["built for EM_AARCH64", "EM_X86_64"]
    elif case == "bad-flag":
        args["flags"] = {"fix_binary": True, "fast": True}
        expect = ["fast"]
    elif case == "not-mountable-file":
        (tmp_path / "plain").write_text("")
        args["binfmt_misc_path"] = str(tmp_path / "plain")
        expect = ["not mounted", str(tmp_path / "plain"), "binfmt_misc_path"]
    elif case == "relative-dir":  # finding 7
        args["interpreter_dir"] = "usr/bin"
        expect = ["'usr/bin' is relative", "absolute path"]
    elif case == "suffix-slash":
        args["interpreter_suffix"] = "-static/../../tmp/x"
        expect = ["may not contain '/'"]
    else:
        args["binfmt_misc_path"] = str(tmp_path / "nowhere")
        expect = ["not mounted", str(tmp_path / "nowhere"), "binfmt_misc_path"]
    before = _entries()
    for res in ansible_module.steps("qemu_binfmt", [(args, True), (args, False)], diff=True):
        assert res.get("failed") is True, res
        msg = res["msg"]
        for text in expect:
            assert text in msg, (text, msg)
        assert "Traceback" not in json.dumps(res)
        assert _entries() == before
        assert not confd.exists()
    assert not os.path.exists(str(tmp_path / "nowhere"))
    if case == "dynamic-with-F":  # the same interpreter without F is accepted
        ok = qemu_binfmt(ansible_module, check=True, flags={"fix_binary": False}, **args)
        assert not ok.get("failed"), ok


# -- finding 11: every Debian release architecture's real static binary runs through its handler
DEBIAN_ARCHES = {  # Debian architecture -> (platform table row, what `uname -m` prints)
    "arm64": ("aarch64", "aarch64"), "armel": ("arm", "armv7l"), "armhf": ("arm", "armv7l"),
    "mips64el": ("mips64el", "mips64"), "mipsel": ("mipsel", "mips"),
    "ppc64el": ("ppc64le", "ppc64le"), "s390x": ("s390x", "s390x"),
    "i386": ("i386", None), "amd64": ("x86_64", None),   # the host's own family: native
}
APT_DIR = ROOT / ".tmp" / "fixtures" / "apt"
BUSYBOX_DIR = ROOT / ".tmp" / "fixtures" / "busybox"


def _apt(*args):
    opts = ["-o", "Dir::Etc::SourceList=%s" % (APT_DIR / "sources.list"),
            "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", "Dir::State::Lists=%s" % (APT_DIR / "lists"),
            "-o", "Dir::Cache=%s" % (APT_DIR / "cache"),
            "-o", "APT::Architectures=%s" % ",".join(sorted(DEBIAN_ARCHES))]
    subprocess.run(["apt-get", "-q"] + opts + list(args), check=True, cwd=str(BUSYBOX_DIR),
                   stdout=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def debian_busybox():
    """busybox-static of every Debian 12 release architecture (apt-get download), unpacked."""
    found = {}
    missing = [a for a in DEBIAN_ARCHES if not (BUSYBOX_DIR / a / "bin" / "busybox").is_file()]
    if missing:
        for sub in ("lists/partial", "cache/archives/partial"):
            (APT_DIR / sub).mkdir(parents=True, exist_ok=True)
        BUSYBOX_DIR.mkdir(parents=True, exist_ok=True)
        (APT_DIR / "sources.list").write_text(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
            "http://deb.debian.org/debian bookworm main\n")
        _apt("update")
        for arch in missing:
            _apt("download", "busybox-static:" + arch)
            deb = sorted(BUSYBOX_DIR.glob("busybox-static_*_%s.deb" % arch))[-1]
            subprocess.run(["dpkg-deb", "-x", str(deb), str(BUSYBOX_DIR / arch)], check=True)
    for arch in DEBIAN_ARCHES:
        found[arch] = str(BUSYBOX_DIR / arch / "bin" / "busybox")
    return found


def test_debian_static_binaries_match_their_row(debian_busybox):
    for arch, (row, _uname) in DEBIAN_ARCHES.items():
        with open(debian_busybox[arch], "rb") as handle:
            head = handle.read(64)
        matches = [p["name"] for p in B.PLATFORMS
                   if all((h & k) == (m & k) for h, m, k in zip(head, p["magic"], p["mask"]))]
        assert matches == [row], (arch, matches)


def test_debian_static_binaries_run_through_registered_handlers(clean, debian_busybox, ansible_module):
    foreign = sorted(set(row for row, uname in DEBIAN_ARCHES.values() if uname))
    res = qemu_binfmt(ansible_module, platforms=foreign, persistent=False)
    assert not res.get("failed"), res
    for arch, (row, uname) in sorted(DEBIAN_ARCHES.items()):
        proc = run_foreign(debian_busybox[arch], "uname", "-m")
        assert not isinstance(proc, OSError), (arch, proc)
        assert proc.returncode == 0, (arch, proc.stderr)
        assert proc.stdout.strip() == (uname or os.uname()[4]), (arch, proc.stdout)


# -- SIGKILL at random points (issue 11): every entry and binfmt.d file is old or new, never partial
MODULE = "ansible_collections.vmhost.virt.plugins.modules.qemu_binfmt"
# every foreign platform whose static emulator is installed (a long writing phase to hit)
KILL_PLATFORMS = [n for n in B.PLATFORM_NAMES if n not in B.host_family(os.uname()[4])
                  and os.path.exists(B.interpreter_path(n, "/usr/bin", "-static"))]


def _direct(args_file, wait=True):
    """The module as Ansible runs it (its own process, arguments from a file), without Ansible."""
    coll_root = str(pathlib.Path(os.path.abspath(B.__file__)).parents[5])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([coll_root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.Popen([sys.executable, "-m", MODULE, str(args_file)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=120)
    return json.loads(out.decode() or "{}") if out else {"failed": True, "msg": err.decode()}


def _args_file(tmp_path, name, args):
    path = tmp_path / ("%s.json" % name)
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    return path


def test_sigkill_30_rounds_old_or_new_and_no_temp_left(clean, tmp_path):
    assert len(KILL_PLATFORMS) >= 2, "qemu-user-static is missing (bindep.txt)"
    confd = tmp_path / "binfmt.d"
    base = {"platforms": KILL_PLATFORMS, "persistent": True, "binfmt_d_path": str(confd)}
    old_args = dict(base, flags={"credentials": True})
    flags_old = B.normalize_flags({"credentials": True})
    flags_new = B.normalize_flags({})
    want = {}
    for name in KILL_PLATFORMS:
        interp = B.interpreter_path(name, "/usr/bin", "-static")
        old, new = B.wanted_entry(name, interp, flags_old), B.wanted_entry(name, interp, flags_new)
        want[old["name"]] = (old, new)
    old_file = _args_file(tmp_path, "old", old_args)
    new_file = _args_file(tmp_path, "new", base)

    def check(when):
        """Files (ours alone) are old or new; kernel entries are old, new or, for the one being
        re-registered, absent.  Returns False if the kernel's entries were changed from outside."""
        entries = _entries()
        absent = []
        for name, (old, new) in want.items():
            have = entries.get(name)
            if have is None:
                absent.append(name)
            else:
                assert B.same_entry(have, old) or B.same_entry(have, new), (when, name, have)
            conf = confd / ("%s.conf" % name)
            if conf.exists():
                assert conf.read_text() in (B.binfmt_d_content(old), B.binfmt_d_content(new)), (when, conf)
        return len(absent) <= 1

    def is_new():
        entries = _entries()
        return all(B.same_entry(entries.get(name), new) for name, (_old, new) in want.items())

    first = sorted(want)[0]  # the module replaces entries in name order, then writes the files

    def start_and_wait_for_first_change():
        """Start the module; return it and the moment its first replacement showed in the kernel."""
        proc = _direct(new_file, wait=False)
        path = os.path.join(MISC, first)
        while proc.poll() is None:
            try:
                with open(path) as handle:
                    text = handle.read()
            except OSError:
                break  # removed: the replacement has begun
            if not B.same_entry(B.parse_entry(first, text), want[first][0]):
                break
        return proc, time.monotonic()

    assert not _direct(old_file).get("failed")
    proc, began = start_and_wait_for_first_change()
    proc.communicate()
    phase = time.monotonic() - began  # how long the writing phase lasts (and a little more)
    assert proc.returncode == 0
    rng = random.Random(11)
    killed_mid_way = rounds = disturbed = 0
    # binfmt_misc is one table for the whole machine: another process (a parallel test, a
    # container) may remove entries while a round runs.  Such a round is repeated; what it
    # would prove does not depend on it.
    while rounds < 30:
        assert disturbed < 30, "the kernel's binfmt entries keep changing from outside"
        reset = _direct(old_file)
        assert not reset.get("failed"), reset
        if not check("round %d before" % rounds):
            disturbed += 1
            continue
        proc, _began = start_and_wait_for_first_change()
        time.sleep(rng.uniform(0, phase))
        exited = proc.poll() is not None
        proc.kill()
        proc.communicate()
        if not check("round %d after SIGKILL" % rounds):
            disturbed += 1
            continue
        repaired = _direct(new_file)
        assert not repaired.get("failed"), repaired
        assert _io.temps_in(str(confd), "qemu_binfmt", stale_only=False) == [], rounds
        for name, (_old, new) in want.items():
            assert (confd / ("%s.conf" % name)).read_text() == B.binfmt_d_content(new)
        assert sorted(repaired["registered"]) == sorted(n[len(B.ENTRY_PREFIX):] for n in want), repaired
        if not is_new():
            disturbed += 1
            continue
        killed_mid_way += not exited
        rounds += 1
    again = _direct(new_file)
    # the files are ours alone: the run after the repair leaves them (and registers only what
    # an outside process removed meanwhile)
    assert not again.get("failed") and [a for a in again["actions"] if not a.startswith("register ")] == [], again
    assert killed_mid_way >= 10, (killed_mid_way, phase)
