"""Benchmark vmhost.virt.build_vm: unit start -> offload-ready vs the bare boot.

Runs on a build host where the role already set up build VM NAME (default ``x86``), a
harness instance (the molecule scenario's ``build-vm-host``, or any nspawn/VM instance):

1. bare: the unit's own QEMU command and secret sender, run by hand as root (no systemd
   unit, no sandbox), timed from exec until ``ssh build-vm-NAME true`` logs in;
2. unit: ``systemctl start build-vm-NAME`` (returns once the secrets are delivered), timed
   until the same ssh logs in ("offload-ready").

One run each, same image, same QEMU arguments; prints both, the ratio and the goal
(<= 1.15). Boots a guest: hold a QEMU slot (flock /tmp/vmhost-qemu-slot-B.lock ...).

Usage: python benchmarks/build_vm.py [--instance build-vm-host] [--vm x86] [--timeout 900]
"""
import argparse
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = r"""
set -u
VM=%(vm)s
UNIT=build-vm-$VM.service
FILE=/etc/systemd/system/$UNIT
DEADLINE=%(timeout)d
now() { date +%%s.%%N; }
wait_ssh() {
  end=$(( $(date +%%s) + DEADLINE ))
  while [ "$(date +%%s)" -lt "$end" ]; do
    if ssh -o ConnectTimeout=5 build-vm-$VM true 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  return 1
}
systemctl stop "$UNIT"
RUN=/run/vmhost-bench-$VM
rm -rf "$RUN"; mkdir -m 0700 "$RUN"
QEMU=$(sed -n 's/^ExecStart=//p' "$FILE" | sed "s#/run/build-vm-$VM/#$RUN/#g")
SEND=$(sed -n 's/^ExecStartPost=+//p' "$FILE" | sed "s#/run/build-vm-$VM/#$RUN/#g")
cd /var/tmp
t0=$(now)
eval "exec $QEMU" </dev/null >/dev/null 2>&1 &
QPID=$!
if [ -n "$SEND" ]; then eval "$SEND" || echo "bare: sender failed" >&2; fi
if wait_ssh; then t1=$(now); else t1=fail; fi
kill "$QPID"; wait "$QPID" 2>/dev/null
rm -rf "$RUN"
t2=$(now)
systemctl start "$UNIT"
t3=$(now)
if wait_ssh; then t4=$(now); else t4=fail; fi
echo "{\"bare_start\": $t0, \"bare_ssh\": \"$t1\", \"unit_start\": $t2, \"unit_active\": $t3, \"unit_ssh\": \"$t4\"}"
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", default="build-vm-host")
    parser.add_argument("--vm", default="x86")
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args(argv)
    script = SCRIPT % {"vm": args.vm, "timeout": args.timeout}
    proc = subprocess.run([sys.executable, "-m", "tests.harness", "ssh", "--name", args.instance, "--", script],
                          cwd=str(ROOT), capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write("benchmark failed (rc %d):\n%s\n%s\n" % (proc.returncode, proc.stdout[-2000:],
                                                                  proc.stderr[-2000:]))
        return 1
    t = json.loads(lines[-1])
    if "fail" in (t["bare_ssh"], t["unit_ssh"]):
        sys.stderr.write("no SSH within %ds: %s\n" % (args.timeout, t))
        return 1
    bare = float(t["bare_ssh"]) - t["bare_start"]
    unit = float(t["unit_ssh"]) - t["unit_start"]
    active = t["unit_active"] - t["unit_start"]
    print("build VM %s on %s (one run each)" % (args.vm, args.instance))
    print("  bare QEMU + sender, exec -> ssh login:        %6.1f s" % bare)
    print("  systemctl start -> active (secrets delivered): %6.1f s" % active)
    print("  systemctl start -> offload-ready (ssh login):  %6.1f s" % unit)
    print("  ratio unit/bare: %.2f (goal <= 1.15)" % (unit / bare))
    return 0


if __name__ == "__main__":
    sys.exit(main())
