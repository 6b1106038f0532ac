# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Race vmhost.virt.partition_table against the floor and the reference way.

The same 2 GiB GPT image -- a 64 MiB FAT ESP with a small tree and an ext4
root filling the rest, populated from the harness's Debian tree -- built:

1. ours: the partition_table module (run as Ansible runs it, one process),
   plain and reproducible (source_date_epoch);
2. floor: ``mkfs.ext4 -d`` and ``mkfs.fat`` + ``mcopy`` on bare files, no table
   (the least work any builder must do);
3. reference: parted + losetup + mkfs + mount + ``cp -a`` (what the Guix
   build VM does inside its VM), when loop devices and mounts work here.

Every way runs on each tree: by default the harness's Debian root tree and the host's
/usr/share (a real tree of ~50 000 small files and ~5 000 links); ``--tree DIR`` (repeatable)
names others.

Usage: .venv/bin/python benchmarks/images.py [--tree DIR ...] [--runs N] [--no-reference]
Prints seconds (best of N, after one untimed warm-up build) and ratios to the floor, then
the rows of issue 13's table with their goal met or missed.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from _module import TOP, ModuleRun

SIZE = 2 << 30
ESP = 64 << 20
EPOCH = 1700000000


def sh(argv, **kw):
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def drop(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.unlink(path)


def ours(work, tree, esp, epoch=None):
    disk = os.path.join(work, "ours.raw")
    args = {"path": disk, "size": str(SIZE), "label": "gpt",
            "partitions": [
                {"size": str(ESP), "fs": "vfat", "label": "ESP", "flags": ["esp"],
                 "contents": esp},
                {"size": "rest", "fs": "ext4", "label": "root", "contents": tree}]}
    if epoch is not None:
        args["source_date_epoch"] = epoch
    run = ModuleRun("partition_table", args, work)
    start = time.time()
    run()
    elapsed = time.time() - start
    drop(disk)
    return elapsed


def fsync(path):
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def floor(work, tree, esp, durable=False):
    """Bare mkfs on two files; ``durable`` adds the fsync ours does before its rename."""
    fat = os.path.join(work, "esp.img")
    ext = os.path.join(work, "root.img")
    start = time.time()
    with open(fat, "wb") as handle:
        handle.truncate(ESP)
    sh(["mkfs.fat", "-F", "32", "-n", "ESP", fat])
    entries = [os.path.join(esp, n) for n in sorted(os.listdir(esp))]
    sh(["mcopy", "-s", "-i", fat] + entries + ["::/"], env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
    sh(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", tree, ext,
        "%dk" % ((SIZE - ESP - (2 << 20)) // 1024)])
    if durable:
        fsync(fat)
        fsync(ext)
    elapsed = time.time() - start
    drop(fat)
    drop(ext)
    return elapsed


def reference(work, tree, esp, notes):
    """parted + losetup + mkfs + mount + cp -a; returns seconds or a reason string."""
    disk = os.path.join(work, "ref.raw")
    mnt = tempfile.mkdtemp(prefix="mnt-", dir=work)
    loop = None
    loops = []
    devs = []
    mounted = []
    start = time.time()
    try:
        with open(disk, "wb") as handle:
            handle.truncate(SIZE)
        sh(["parted", "--script", disk, "mklabel", "gpt",
            "mkpart", "primary", "fat32", "1MiB", "%dMiB" % (1 + ESP // (1 << 20)),
            "set", "1", "esp", "on",
            "mkpart", "primary", "ext4", "%dMiB" % (1 + ESP // (1 << 20)), "100%"])
        esp_end = 1 + ESP // (1 << 20)
        try:
            loop = sh(["losetup", "--find", "--show", "--partscan", disk]).stdout.decode().strip()
        except subprocess.CalledProcessError as exc:
            return "losetup failed: %s" % exc.stderr.decode().strip()
        deadline = time.time() + 5
        while not os.path.exists(loop + "p2") and time.time() < deadline:
            time.sleep(0.05)
        if os.path.exists(loop + "p2"):
            devs = [loop + "p1", loop + "p2"]
        else:
            # no udev here to create partition nodes: one loop device per partition
            sh(["losetup", "-d", loop])
            loop = None
            root_bytes = SIZE - esp_end * (1 << 20) - (1 << 20)
            for offset, size in ((1 << 20, ESP), (esp_end << 20, root_bytes)):
                devs.append(sh(["losetup", "--find", "--show", "--offset", str(offset),
                                "--sizelimit", str(size), disk]).stdout.decode().strip())
                loops.append(devs[-1])
        sh(["mkfs.fat", "-F", "32", "-n", "ESP", devs[0]])
        sh(["mkfs.ext4", "-q", "-F", "-L", "root", devs[1]])
        for dev, sub, src in ((devs[1], "", tree), (devs[0], "boot/efi", esp)):
            target = os.path.join(mnt, sub)
            if not os.path.isdir(target):
                os.makedirs(target)
            try:
                sh(["mount", dev, target])
            except subprocess.CalledProcessError as exc:
                if src is esp:
                    # this kernel has no vfat module: fill the ESP with mtools instead
                    entries = [os.path.join(esp, n) for n in sorted(os.listdir(esp))]
                    sh(["mcopy", "-s", "-i", dev] + entries + ["::/"],
                       env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
                    notes.append("ESP filled with mcopy: this kernel cannot mount vfat (%s)"
                                 % exc.stderr.decode().strip().splitlines()[0].split(": ")[-1])
                    continue
                return "mount failed: %s" % exc.stderr.decode().strip()
            mounted.append(target)
            if src is tree:
                sh(["cp", "-a", tree + "/.", target])
            else:
                sh(["cp", "-r", src + "/.", target])
        for target in reversed(mounted):
            sh(["umount", target])
        mounted = []
        for dev in [loop] + loops if loop else loops:
            sh(["losetup", "-d", dev])
        loop = None
        loops = []
        return time.time() - start
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", target], check=False)
        for dev in ([loop] if loop else []) + loops:
            subprocess.run(["losetup", "-d", dev], check=False)
        drop(disk)
        if not mounted:
            drop(mnt)


def bench_tree(tree, opts):
    """Race every way on ``tree``; print the timings; return the issue's rows for it."""
    work = tempfile.mkdtemp(prefix="vmhost-bench-", dir="/var/tmp")
    try:
        esp = os.path.join(work, "esp-tree")
        os.makedirs(os.path.join(esp, "EFI", "BOOT"))
        with open(os.path.join(esp, "EFI", "BOOT", "BOOTX64.EFI"), "wb") as handle:
            handle.write(os.urandom(700 * 1024))
        du = sh(["du", "-sb", tree]).stdout.split()[0].decode()
        files = int(sh(["find", tree, "-type", "f"]).stdout.count(b"\n"))
        links = int(sh(["find", tree, "-type", "l"]).stdout.count(b"\n"))
        print("\ntree: %s (%.0f MB, %d files, %d symbolic links), image: 2 GiB GPT, ESP 64 MiB + ext4 root" %
              (tree, int(du) / 1e6, files, links))
        rows = []
        timings = {"floor": [], "floor+fsync": [], "ours": [], "ours-reproducible": [], "reference": []}
        reason = None
        notes = []
        floor(work, tree, esp)  # warm the page cache: every way then reads the tree from memory
        for dummy in range(opts.runs):
            timings["floor"].append(floor(work, tree, esp))
            timings["floor+fsync"].append(floor(work, tree, esp, durable=True))
            timings["ours"].append(ours(work, tree, esp))
            timings["ours-reproducible"].append(ours(work, tree, esp, EPOCH))
            ref = reference(work, tree, esp, notes) if opts.reference else "not asked (--no-reference)"
            if isinstance(ref, str):
                reason = ref
            else:
                timings["reference"].append(ref)
        base = min(timings["floor"])
        for name, label in (("floor", "floor: mkfs.ext4 -d + mkfs.fat/mcopy, bare files"),
                            ("floor+fsync", "floor + fsync of both files (ours fsyncs)"),
                            ("ours", "ours: vmhost.virt.partition_table"),
                            ("ours-reproducible", "ours, source_date_epoch set"),
                            ("reference", "reference: parted+losetup+mkfs+mount+cp -a")):
            if timings[name]:
                best = min(timings[name])
                rows.append((label, best, best / base))
        for label, secs, ratio in rows:
            print("%-52s %7.2f s  %5.2fx floor" % (label, secs, ratio))
        if reason:
            print("reference: not measured -- %s" % reason)
        for note in sorted(set(notes)):
            print("reference: " + note)
        print("ours: %.2fx bare floor, %.2fx floor+fsync"
              % (min(timings["ours"]) / base, min(timings["ours"]) / min(timings["floor+fsync"])))
        what = "2 GiB GPT image, ESP + ext4 root from %s (%.2f GB, %d files, %d links)" % (
            tree, int(du) / 1e9, files, links)
        return [(what, min(timings["ours"]), base), ("same, source_date_epoch set (reproducible)",
                                                     min(timings["ours-reproducible"]), base)]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--tree", action="append", dest="trees",
                        help="a root tree (repeatable; default: the harness's cached Debian tree and /usr/share)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the parted+losetup+mount reference (root, loop devices)")
    opts = parser.parse_args()
    trees = opts.trees
    if trees is None:
        sys.path.insert(0, TOP)
        from tests.harness import api
        trees = [api.build()["tree"], "/usr/share"]
    rows = []
    for tree in trees:
        rows += bench_tree(tree, opts)
    print("\n| benchmark | ours | reference | ratio | goal | |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, ours_secs, base in rows:
        ratio = ours_secs / base
        print("| %s | %.2f s | floor (mkfs.ext4 -d, mkfs.fat+mcopy) %.2f s | %.2fx | <= 1.2x | %s |"
              % (label, ours_secs, base, ratio, "met" if ratio <= 1.2 else "missed"))


if __name__ == "__main__":
    main()
