"""Cost of converging and of re-running each role, and playbooks/site.yml, on one host.

    /work/notes/qslot .venv/bin/python benchmarks/roles.py [--kind vm|nspawn] [--recipe default] [--keep]

Boots one harness instance: by default of the QEMU kind (a real Debian VM under TCG
here, with its own kernel, so qemu_binfmt can register handlers) with the demo's memory
and guest agent port; `--kind nspawn` boots a systemd-nspawn container of the same tree
instead (real systemd, no QEMU, so no QEMU slot needed; binfmt_misc is read-only there,
so qemu_binfmt_platforms is [] and that role only installs nothing and checks
systemd-binfmt). Then it runs, in this order on that one host (the demo inventory of
tests/harness/demo.py: the host in vm_hosts, build_hosts and guests,
qemu_binfmt_platforms [aarch64, riscv64], no build VM):

    libvirt, virtlogd              each: converge, then a no-change re-run
    libvirt + virtlogd             one play, no-change re-run (the issue's measure)
    qemu_binfmt, guest_agent,
    build_vm                       each: converge, then a no-change re-run
    site.yml                       first run (the roles above ran already), re-run

Role plays use `gather_facts: false` (the roles gather what they need); site.yml is
run as it is. For every run it prints wall seconds, the recap (ok, changed, skipped),
the results reported ok or changed counting loop items, and the module executions on
the host (python runs over SSH, counted in the -vvv log). A re-run that changes
anything is reported as such and makes the exit status 1.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)

from tests.harness import api, demo  # noqa: E402

NAME = "vmhost-bench-roles"  # + "-vm" or "-nspawn"
RECAP = re.compile(r"^\S+\s*: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)")
RESULT = re.compile(r"^(ok|changed): \[")
# every module runs as one python process on the host: pipelined ("python3 && sleep 0")
# or from a transferred file ("python3 /…/AnsiballZ_x.py && sleep 0")
EXEC = re.compile(r"EXEC .*python3[^']* && sleep 0")

ROLE_RUNS = (
    ("libvirt", ["vmhost.virt.libvirt"], True),
    ("virtlogd", ["vmhost.virt.virtlogd"], True),
    ("libvirt + virtlogd", ["vmhost.virt.libvirt", "vmhost.virt.virtlogd"], False),
    ("qemu_binfmt", ["vmhost.virt.qemu_binfmt"], True),
    ("guest_agent", ["vmhost.virt.guest_agent"], True),
    ("build_vm", ["vmhost.virt.build_vm"], True),
)


def env():
    e = dict(os.environ)
    e.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(TOP, ".tmp", "collections"))
    e.update(ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_PIPELINING="True", ANSIBLE_NOCOLOR="1",
             ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="False", ANSIBLE_STDOUT_CALLBACK="default")
    return e


def playbook(inventory, book, log):
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-vvv", "-i", inventory, book]
    t = time.monotonic()
    proc = subprocess.run(argv, cwd=TOP, env=env(), capture_output=True, text=True, check=False)
    seconds = time.monotonic() - t
    with open(log, "w") as f:
        f.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit("%s failed (exit %d), log: %s\n%s" % (book, proc.returncode, log, proc.stdout[-3000:]))
    lines = proc.stdout.splitlines()
    recap = [m.groups() for m in map(RECAP.match, lines) if m]
    ok, changed, _unreach, _failed, skipped = (sum(int(r[i]) for r in recap) for i in range(5))
    return {"seconds": seconds, "ok": ok, "changed": changed, "skipped": skipped,
            "results": sum(1 for ln in lines if RESULT.match(ln)),
            "modules": sum(1 for ln in lines if EXEC.search(ln))}


def role_play(roles, host):
    return [{"name": "Benchmark " + " + ".join(roles), "hosts": host, "gather_facts": False, "become": True,
             "roles": [{"role": r} for r in roles]}]


def cell(run):
    if run is None:
        return "—"
    return "%.1f s, ok=%d changed=%d skipped=%d, %d results, %d modules" % (
        run["seconds"], run["ok"], run["changed"], run["skipped"], run["results"], run["modules"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="default", help="harness recipe of the host (default: %(default)s)")
    ap.add_argument("--kind", choices=("vm", "nspawn"), default="vm", help="harness instance kind (default: %(default)s)")
    ap.add_argument("--keep", action="store_true", help="leave the instance running")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("benchmarks/roles.py needs root (the harness boots a VM)")
    name = "%s-%s" % (NAME, args.kind)
    work = tempfile.mkdtemp(prefix="bench-roles-", dir="/var/tmp")
    if args.kind == "vm":
        info = api.up(name=name, recipe=args.recipe, memory=demo.MEMORY, cpus=2, guest_agent=True)
    else:
        info = api.up(name=name, kind="nspawn", recipe=args.recipe)
    rows, status = [], 0
    try:
        inv = os.path.join(work, "inventory.json")
        inventory = demo.inventory(info)
        if args.kind == "nspawn":
            inventory["all"]["vars"]["qemu_binfmt_platforms"] = []
        with open(inv, "w") as f:
            json.dump(inventory, f)
        for label, roles, converge in ROLE_RUNS:
            book = os.path.join(work, "play-%s.yml" % "-".join(r.rsplit(".", maxsplit=1)[-1] for r in roles))
            with open(book, "w") as f:
                json.dump(role_play(roles, name), f)
            first = playbook(inv, book, book + ".converge.log") if converge else None
            again = playbook(inv, book, book + ".rerun.log")
            rows.append((label, first, again))
        site = os.path.join(TOP, "playbooks", "site.yml")
        first = playbook(inv, site, os.path.join(work, "site.first.log"))
        again = playbook(inv, site, os.path.join(work, "site.rerun.log"))
        rows.append(("site.yml (demo inventory)", first, again))
    finally:
        if not args.keep:
            api.down(name)
    print("roles benchmark: one %s instance (%s, recipe %s, %s), %d CPUs, load %.1f; logs in %s" % (
        info["kind"], info.get("accel", "no QEMU"), args.recipe, "ansible-playbook -vvv, pipelining", os.cpu_count(),
        os.getloadavg()[0], work))
    print("| run | converge | no-change re-run | re-run ok + skipped |")
    print("| --- | --- | --- | --- |")
    for label, first, again in rows:
        print("| %s | %s | %s | %d |" % (label, cell(first), cell(again), again["ok"] + again["skipped"]))
        if again["changed"]:
            print("  ** %s: the re-run changed %d task(s)" % (label, again["changed"]))
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
