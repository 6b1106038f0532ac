"""Fleet benchmark of playbooks/site.yml: converge and no-change re-run wall time for one
host and for two hosts in parallel (forks >= hosts), tasks per host, and changed=0 on the
re-run. Hosts are harness systemd-nspawn containers (recipe build-host) in vm_hosts and
build_hosts: libvirt, virtlogd, qemu_binfmt (no platform: binfmt_misc is the machine's
kernel-wide table in a container) and build_vm (no build VM). No QEMU guest boots.

    .venv/bin/python benchmarks/fleet.py [--hosts 1,2] [--keep]

Needs root (nspawn) and the collection importable (`make collection`). Figures depend on
the machine's load; the load average is printed with them.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import yaml

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)

from tests.harness import api  # noqa: E402

RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
                   r"\s+skipped=(\d+)", re.M)


def inventory(infos):
    hosts = {}
    for info in infos:
        hosts[info["name"]] = {
            "ansible_host": info["address"], "ansible_port": info["port"],
            "ansible_user": info["user"], "ansible_ssh_private_key_file": info["identity_file"],
            "ansible_python_interpreter": "/usr/bin/python3"}
    names = dict.fromkeys(hosts)
    return {"all": {"hosts": hosts, "children": {"vm_hosts": {"hosts": names},
                                                 "build_hosts": {"hosts": dict(names)}}}}


def run_site(inv_path, forks):
    """(wall seconds, {host: (ok, changed, unreachable, failed, skipped)})"""
    env = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="false", ANSIBLE_PIPELINING="true",
               ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inv_path,
           "--forks", str(forks), os.path.join(TOP, "playbooks", "site.yml")]
    t = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.monotonic() - t
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-3000:])
        raise SystemExit("site.yml failed (rc %d)" % proc.returncode)
    recap = {m[0]: tuple(int(x) for x in m[1:]) for m in RECAP.findall(proc.stdout)}
    return wall, recap


def measure(count, keep):
    names = ["bench-fleet-%d-%d" % (count, i) for i in range(count)]
    infos = []
    try:
        for name in names:
            infos.append(api.up(name=name, kind="nspawn", recipe="build-host", timeout=300))
        with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
            inv = os.path.join(tmp, "inventory.yml")
            with open(inv, "w") as f:
                yaml.safe_dump(inventory(infos), f)
            conv, recap1 = run_site(inv, forks=max(5, count))
            rerun, recap2 = run_site(inv, forks=max(5, count))
    finally:
        if not keep:
            for name in names:
                api.down(name)
    return {"hosts": count, "converge": conv, "rerun": rerun,
            "tasks": sorted(r[0] for r in recap1.values()),
            "changed": sorted(r[1] for r in recap1.values()),
            "rerun_tasks": sorted(r[0] for r in recap2.values()),
            "rerun_changed": sorted(r[1] for r in recap2.values()),
            "failed": sum(r[3] + r[2] for r in list(recap1.values()) + list(recap2.values()))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", default="1,2", help="comma-separated fleet sizes (default 1,2)")
    ap.add_argument("--keep", action="store_true", help="keep the containers")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("benchmarks/fleet.py needs root (systemd-nspawn)")
    rows = []
    for count in [int(n) for n in args.hosts.split(",")]:
        rows.append(measure(count, args.keep))
    print("site.yml on nspawn hosts (vm_hosts + build_hosts); load average %s"
          % " ".join("%.1f" % x for x in os.getloadavg()))
    print("| hosts | converge s | re-run s | tasks per host (ok) | changed | re-run changed |")
    print("| --- | --- | --- | --- | --- | --- |")
    bad = False
    for r in rows:
        print("| %d | %.1f | %.1f | %s | %s | %s |" % (
            r["hosts"], r["converge"], r["rerun"], ",".join(map(str, r["tasks"])),
            ",".join(map(str, r["changed"])), ",".join(map(str, r["rerun_changed"]))))
        bad = bad or r["failed"] or any(r["rerun_changed"])
    if bad:
        sys.exit("the re-run changed something or a host failed")


if __name__ == "__main__":
    main()
