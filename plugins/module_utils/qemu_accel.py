# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Does KVM really work here?  A probe that boots a kernel, shared by the test harness
and the ``vmhost.virt.qemu_accel_probe`` module.

``/dev/kvm`` existing proves little: a stock Debian kernel can hang right after
"Probing EDD" under KVM, and ``-cpu host`` can abort on an MSR.  So the probe boots a
kernel with no root file system under KVM and waits for its root-mount panic.  The
verdict is cached, keyed by the kernel, QEMU's version and the host's kernel release.
Private to this collection: other collections must not import it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import subprocess
import tempfile
import time

from ansible_collections.vmhost.virt.plugins.module_utils import _tools

TCG = "tcg"
KVM = "kvm"
# A kernel that reaches its "cannot mount root" panic under KVM within this many
# seconds proves KVM works.
PROBE_TIMEOUT = 20
PROBE_MARKERS = ("VFS: Unable to mount root", "Kernel panic")
# CPU models tried under KVM, best first (None is QEMU's default model).
KVM_CPUS = ("host", None)
X86_MACHINE = ("-machine", "q35")


class AccelError(ValueError):
    pass


def accel_args(accel, cpu=None):
    """QEMU arguments for an accelerator verdict (``cpu`` only for KVM; TCG uses max)."""
    if accel == KVM:
        return ["-accel", "kvm"] + (["-cpu", cpu] if cpu else [])
    if accel == TCG:
        return ["-accel", "tcg,thread=multi", "-cpu", "max"]
    raise AccelError("unknown accelerator %r (kvm or tcg)" % (accel,))


def probe_argv(qemu, accel, kernel, cpu=None, machine=X86_MACHINE, console="ttyS0"):
    """QEMU command that boots ``kernel`` with no root: it must reach the VFS panic and
    exit (``panic=-1 -no-reboot``)."""
    return [qemu] + list(machine) + accel_args(accel, cpu) + [
        "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
        "-serial", "stdio", "-no-reboot", "-kernel", kernel,
        "-append", "console=%s root=/dev/vmhost-probe-none panic=-1 loglevel=7" % console]


def qemu_version(qemu):
    rc, out, err = _tools.run_command([qemu, "--version"], timeout=PROBE_TIMEOUT)
    if rc == 127:
        raise AccelError(err)
    out = out or err
    return out.splitlines()[0] if out else "unknown"


def probe_key(kernel, qemu_ver, host_release):
    digest = hashlib.sha256()
    with open(kernel, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    digest.update(b"\0" + qemu_ver.encode() + b"\0" + host_release.encode())
    return digest.hexdigest()[:24]


def probe_kvm(qemu, kernel, cpu, timeout=PROBE_TIMEOUT, machine=X86_MACHINE, console="ttyS0"):
    """Boot ``kernel`` under KVM with ``cpu``; return ``(works, detail)``."""
    with tempfile.TemporaryFile() as out:
        proc = _tools.spawn(probe_argv(qemu, KVM, kernel, cpu, machine, console), stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            out.seek(0)
            if any(m in out.read().decode("utf-8", "replace") for m in PROBE_MARKERS):
                break
            time.sleep(0.2)
        rc = proc.poll()
        if rc is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    model = "-cpu %s" % cpu if cpu else "the default CPU"
    if any(m in text for m in PROBE_MARKERS):
        return True, "kernel reached the root-mount panic under KVM with %s" % model
    last = [line for line in text.strip().splitlines() if line.strip()][-1:] or ["no output"]
    if rc is not None:
        return False, "KVM with %s: QEMU exited (%s) before the root-mount panic: %s" % (
            model, rc, last[0].strip()[:100])
    return False, "KVM with %s: no root-mount panic within %ds (last: %s)" % (
        model, timeout, last[0].strip()[:100])


def cached_verdict(verdict_file):
    try:
        with open(verdict_file) as handle:
            verdict = json.load(handle)
        return verdict["accel"], verdict["cpu"], verdict["reason"] + " (cached)"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def choose(qemu, kernel, cache_dir=None, probe=None, version=None, log=None, cpus=KVM_CPUS,
           timeout=PROBE_TIMEOUT, machine=X86_MACHINE, console="ttyS0", dry_run=False):
    """``(accel, cpu, reason)``: KVM when it really boots ``kernel`` here, else TCG.

    ``probe(qemu, kernel, cpu, timeout=...)`` and ``version(qemu)`` default to the real
    ones (injectable for tests).  With ``cache_dir`` the verdict is read from and written
    to ``<cache_dir>/accel/<key>.json``; ``dry_run`` never writes it.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return TCG, "max", "/dev/kvm is missing or not accessible"
    version = version or qemu_version
    verdict_file = None
    if cache_dir:
        key = probe_key(kernel, version(qemu), os.uname().release)
        verdict_file = os.path.join(cache_dir, "accel", key + ".json")
        cached = cached_verdict(verdict_file)
        if cached:
            return cached
    if log:
        log("probing KVM with %s" % os.path.basename(kernel))
    accel, cpu, details = TCG, "max", []
    for candidate in cpus:
        if probe is None:
            works, detail = probe_kvm(qemu, kernel, candidate, timeout, machine, console)
        else:
            works, detail = probe(qemu, kernel, candidate, timeout=timeout)
        details.append(detail)
        if works:
            accel, cpu = KVM, candidate
            break
    reason = "; ".join(details)
    if verdict_file and not dry_run:
        parent = os.path.dirname(verdict_file)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        tmp = verdict_file + ".tmp%d" % os.getpid()
        with open(tmp, "w") as handle:
            json.dump({"accel": accel, "cpu": cpu, "reason": reason, "kernel": kernel}, handle)
        os.replace(tmp, verdict_file)
    return accel, cpu, reason


def probe_kvm_init(qemu, machine=X86_MACHINE, timeout=PROBE_TIMEOUT):
    """Without a kernel to boot: does QEMU initialise KVM and quit cleanly?  Weaker than
    :func:`probe_kvm` (a guest kernel may still hang), so its detail says so."""
    argv = [qemu] + list(machine) + ["-accel", "kvm", "-nodefaults", "-no-user-config",
                                     "-display", "none", "-S", "-monitor", "stdio"]
    rc, out, err = _tools.run_command(argv, data=b"quit\n", timeout=timeout)
    if rc == 124:
        return False, "KVM: QEMU did not quit within %ds" % timeout
    if rc == 127:
        raise AccelError(err)
    text = (out + err).strip()
    if rc == 0 and "failed to initialize" not in text.lower():
        return True, "QEMU initialised KVM (no kernel given to boot-test)"
    last = text.splitlines()[-1:] or ["no output"]
    return False, "KVM: QEMU exited (%s): %s" % (rc, last[0].strip()[:100])


def host_kernel(release=None):
    """The running kernel's image when it is readable (a fair kernel to boot-test KVM with
    when the guest boots its disk itself), else None."""
    release = release or os.uname().release
    for path in ("/boot/vmlinuz-%s" % release, "/boot/vmlinuz"):
        if os.path.isfile(path) and os.access(path, os.R_OK):
            return path
    return None


def decide(policy, qemu, kernel=None, kvm_possible=True, cache_dir=None, machine=X86_MACHINE,
           console="ttyS0", timeout=PROBE_TIMEOUT, dry_run=False, fallback_kernel=host_kernel):
    """The role's accelerator policy: ``tcg`` always TCG; ``auto`` KVM only when a kernel
    boots under KVM (the guest's, else the host's own when the guest has the host's
    architecture); ``kvm`` KVM or an AccelError saying why not.  Returns (accel, cpu, reason).

    QEMU initialising KVM proves nothing (it does where the kernel then hangs), so ``auto``
    with no kernel to boot chooses TCG; ``kvm`` then settles for the initialisation check.
    """
    if policy not in ("auto", KVM, TCG):
        raise AccelError("accelerator policy must be auto, kvm or tcg, got %r" % (policy,))
    if policy == TCG:
        verdict = (TCG, "max", "TCG chosen by policy")
    elif not kvm_possible:
        verdict = (TCG, "max", "KVM cannot run this guest architecture on a %s host" % os.uname().machine)
    elif not os.access("/dev/kvm", os.R_OK | os.W_OK):
        verdict = (TCG, "max", "/dev/kvm is missing or not accessible")
    else:
        kernel = kernel or (fallback_kernel() if fallback_kernel else None)
        if kernel:
            verdict = choose(qemu, kernel, cache_dir=cache_dir, machine=machine, console=console,
                             timeout=timeout, dry_run=dry_run)
        elif policy == KVM:
            works, detail = probe_kvm_init(qemu, machine, timeout)
            verdict = (KVM, None, detail) if works else (TCG, "max", detail)
        else:
            verdict = (TCG, "max", "no kernel to boot-test KVM with (set kernel, or accelerator kvm)")
    if policy == KVM and verdict[0] != KVM:
        raise AccelError("accelerator kvm requested but KVM does not work here: %s" % verdict[2])
    return verdict
