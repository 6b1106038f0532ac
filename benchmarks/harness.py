"""Benchmark of the test harness: cold image build (throwaway cache), cached
image build, boot-to-SSH (SSH answers and systemd is running/degraded) and
the accelerator the probe chose.

    .venv/bin/python benchmarks/harness.py [--skip-cold]

The cold build runs mmdebstrap from the Debian mirror into a temporary cache
directory (a few minutes); the cached build and the boot use the normal cache.
Figures depend on the machine's load: other VMs on the same cores slow TCG.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)

from tests.harness import api, build, paths  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-cold", action="store_true", help="skip the cold build")
    ap.add_argument("--recipe", default="default")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("benchmarks/harness.py needs root (mmdebstrap --mode=root)")

    cold = None
    if not args.skip_cold:
        tmp = tempfile.mkdtemp(prefix="harness-bench-", dir="/var/tmp")
        try:
            t = time.monotonic()
            build.build(recipe=args.recipe, cache=tmp)
            cold = time.monotonic() - t
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    api.build(recipe=args.recipe)          # make sure the real cache is warm
    t = time.monotonic()
    res = api.build(recipe=args.recipe)
    cached = time.monotonic() - t
    assert res["cached"], "second build did not reuse the cache"

    name = "bench-harness-%d" % os.getpid()
    old_state = os.environ.get(paths.STATE_ENV)
    state = tempfile.mkdtemp(prefix="harness-bench-state-", dir="/var/tmp")
    os.environ[paths.STATE_ENV] = state
    try:
        info = api.up(name=name, recipe=args.recipe)   # probe verdict is cached by now
        boot = info["boot_seconds"]
        accel = info["accel"]
    finally:
        api.down(name)
        shutil.rmtree(state, ignore_errors=True)
        if old_state is None:
            os.environ.pop(paths.STATE_ENV, None)
        else:
            os.environ[paths.STATE_ENV] = old_state

    print("harness benchmark (recipe %s, %d CPUs, load %.1f)"
          % (args.recipe, os.cpu_count(), os.getloadavg()[0]))
    if cold is not None:
        print("  cold image build   : %7.1f s  (mmdebstrap + post-steps + mkfs.ext4 -d + qcow2)" % cold)
    else:
        print("  cold image build   :   skipped")
    print("  cached image build : %7.3f s" % cached)
    if cold is not None:
        print("  cold / cached      : %7.0fx" % (cold / max(cached, 1e-3)))
    print("  boot to SSH        : %7.1f s  (SSH answers and systemd running/degraded)" % boot)
    print("  accelerator        : %s" % accel)


if __name__ == "__main__":
    main()
