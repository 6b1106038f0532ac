"""Benchmark vmhost.virt.qemu_binfmt on this machine (root, x86_64).

1. Register every platform (`platforms: all`, 31 entries on x86_64) through
   `ansible localhost -m vmhost.virt.qemu_binfmt`, then the no-change second
   pass; compared with systemd-binfmt loading Debian's own
   /usr/lib/binfmt.d/qemu-*.conf files (the reference tool) and with Ansible's
   bare start-up cost (`-m ansible.builtin.ping`).
2. Start time of a foreign program: Debian's arm64 busybox-static `true` run
   through binfmt_misc vs `qemu-aarch64-static busybox true` called directly.

binfmt_misc is kernel-wide: the entries touched are saved first and restored
at the end (binfmt_misc is unmounted again if it was not mounted).
"""
import fcntl
import glob
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".tmp" / "collections"))

from ansible_collections.vmhost.virt.plugins.module_utils import binfmt as B  # noqa: E402

MISC = "/proc/sys/fs/binfmt_misc"
DEB = ROOT / ".tmp" / "fixtures" / "busybox-static-arm64.deb"
LOCK = "/run/lock/vmhost-virt-binfmt.lock" if os.path.isdir("/run/lock") else "/tmp/vmhost-virt-binfmt.lock"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
STARTS = int(os.environ.get("BENCH_STARTS", "30"))


def mounted():
    return os.path.exists(os.path.join(MISC, "register"))


def entries():
    if not mounted():
        return {}
    return dict((n, B.parse_entry(n, open(os.path.join(MISC, n)).read()))
                for n in os.listdir(MISC) if n not in ("register", "status"))


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def clear_qemu():
    for name in entries():
        if name.startswith(B.ENTRY_PREFIX):
            write(os.path.join(MISC, name), "-1")


def ansible(module, args):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".tmp" / "collections"),
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_NOCOLOR="1")
    exe = pathlib.Path(sys.executable).with_name("ansible")
    argv = [str(exe) if exe.exists() else "ansible", "localhost", "-c", "local",
            "-e", "ansible_python_interpreter=%s" % sys.executable, "-m", module] + (["-a", json.dumps(args)] if args else [])
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit("ansible failed:\n%s\n%s" % (proc.stdout, proc.stderr))
    return elapsed, proc.stdout


def timed(argv):
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def med(values):
    return statistics.median(values)


def main():
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/binfmt.py needs root (binfmt_misc registration)")
    if not DEB.is_file():
        raise SystemExit("missing %s: run `make fixtures`" % DEB)
    lock = open(LOCK, "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    was_mounted = mounted()
    if not was_mounted:
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", MISC], check=True)
    saved = [e for n, e in entries().items() if n.startswith(B.ENTRY_PREFIX)]
    work = tempfile.mkdtemp(prefix="bench-binfmt.")
    try:
        clear_qemu()
        all_args = {"platforms": ["all"], "persistent": False}
        first, second, ping = [], [], []
        for _round in range(ROUNDS):
            clear_qemu()
            t, out = ansible("vmhost.virt.qemu_binfmt", all_args)
            assert "CHANGED" in out, out
            first.append(t)
            t, out = ansible("vmhost.virt.qemu_binfmt", all_args)
            assert "SUCCESS" in out and '"changed": false' in out, out
            second.append(t)
            ping.append(ansible("ansible.builtin.ping", {})[0])
        count = len([n for n in entries() if n.startswith(B.ENTRY_PREFIX)])

        ref = []
        debian = sorted(glob.glob("/usr/lib/binfmt.d/qemu-*.conf"))
        sysbinfmt = "/usr/lib/systemd/systemd-binfmt"
        if debian and os.access(sysbinfmt, os.X_OK):
            for _round in range(ROUNDS):
                clear_qemu()
                ref.append(timed([sysbinfmt] + debian))

        subprocess.run(["dpkg-deb", "-x", str(DEB), work], check=True)
        busybox = os.path.join(work, "bin", "busybox")
        clear_qemu()
        ansible("vmhost.virt.qemu_binfmt", {"platforms": ["aarch64"], "persistent": False})
        timed([busybox, "true"])  # warm the page cache
        through = [timed([busybox, "true"]) for _run in range(STARTS)]
        direct = [timed(["/usr/bin/qemu-aarch64-static", busybox, "true"]) for _run in range(STARTS)]
        native = [timed(["/bin/true"]) for _run in range(STARTS)]
    finally:
        clear_qemu()
        for entry in saved:
            write(os.path.join(MISC, "register"), B.register_line(entry))
            if not entry["enabled"]:
                write(os.path.join(MISC, entry["name"]), "0")
        if not was_mounted:
            subprocess.run(["umount", MISC], check=False)
        subprocess.run(["rm", "-rf", work], check=False)
        lock.close()

    print("qemu_binfmt benchmark (median of %d rounds; %d foreign starts)" % (ROUNDS, STARTS))
    print("  register all platforms (%d entries), ansible ad-hoc: %.2f s" % (count, med(first)))
    print("  no-change second pass:                          %.2f s" % med(second))
    print("  ansible start-up alone (ansible.builtin.ping):  %.2f s" % med(ping))
    print("  module work beyond start-up: first %.2f s, second %.2f s"
          % (med(first) - med(ping), med(second) - med(ping)))
    if ref:
        print("  reference: systemd-binfmt on Debian's %d qemu-*.conf files: %.3f s" % (len(debian), med(ref)))
        print("  ratio ours (ansible run) / systemd-binfmt: %.0fx; beyond start-up: %.0fx"
              % (med(first) / med(ref), max(med(first) - med(ping), 0) / med(ref)))
    print("  arm64 busybox true through binfmt_misc:   %.1f ms" % (1000 * med(through)))
    print("  qemu-aarch64-static busybox true direct:  %.1f ms" % (1000 * med(direct)))
    print("  ratio binfmt / direct: %.2f" % (med(through) / med(direct)))
    print("  (native /bin/true for scale:            %.1f ms)" % (1000 * med(native)))


if __name__ == "__main__":
    main()
