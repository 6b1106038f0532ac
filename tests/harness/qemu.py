"""QEMU: finding the binary, probing the accelerator, building the command line.

The command-line builders are pure (values in, argv out) and unit-tested; the
probe runs QEMU for real and caches its verdict.
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

from . import paths
from .errors import HarnessError

QEMU = "qemu-system-x86_64"
ACCEL_ENV = "VMHOST_HARNESS_ACCEL"
TCG = "tcg"
KVM = "kvm"
# A kernel that reaches its "cannot mount root" panic under KVM within this
# many seconds proves KVM works; a stock Debian kernel hangs after "Probing
# EDD" on some hosts where /dev/kvm exists.
PROBE_TIMEOUT = 20
PROBE_MARKERS = ("VFS: Unable to mount root", "Kernel panic")


def find_qemu(which=None):
    """Absolute path of qemu-system-x86_64, or a HarnessError saying what to install."""
    path = (which or shutil.which)(QEMU)
    if not path:
        raise HarnessError("%s not found: install it with `apt-get install qemu-system-x86` "
                           "(the harness boots its test VMs with QEMU)" % QEMU)
    return path


# CPU models tried under KVM, best first ("host" aborts on an MSR on some
# hosts; None is QEMU's default model).
KVM_CPUS = ("host", None)


def accel_args(accel, cpu=None):
    """QEMU arguments for an accelerator verdict (``cpu`` only for KVM)."""
    if accel == KVM:
        return ["-accel", "kvm"] + (["-cpu", cpu] if cpu else [])
    if accel == TCG:
        return ["-accel", "tcg,thread=multi", "-cpu", "max"]  # cpu is always max under TCG
    raise HarnessError("unknown accelerator %r (kvm or tcg)" % (accel,))


def kernel_cmdline(name, pubkey, extra=()):
    """Kernel command line: root on the virtio disk, serial console, eth0,
    the instance's host name and its authorized key (public, not secret)."""
    from .tree import KEY_PARAM
    parts = pubkey.strip().split()
    if len(parts) < 2:
        raise HarnessError("not an OpenSSH public key: %r" % (pubkey[:40],))
    args = ["root=/dev/vda", "rw", "console=ttyS0", "net.ifnames=0", "panic=-1",
            "systemd.hostname=%s" % name,
            "%s=%s:%s" % (KEY_PARAM, parts[0], parts[1])]
    return " ".join(args + list(extra))


def vm_argv(qemu, name, accel, cpu, memory, cpus, kernel, initrd, disk, port, console_log,
            pidfile, append, qga_socket=None, qmp_socket=None, drives=(), extra_args=(),
            daemonize=True):
    """The full QEMU command for one harness instance.

    ``drives`` is a list of ``(path, format)`` pairs or raw ``-drive`` values
    (strings containing ``=``); ``extra_args`` are appended verbatim.
    """
    if not isinstance(port, int) or not 0 < port < 65536:
        raise HarnessError("bad SSH port %r" % (port,))
    argv = [qemu, "-name", name, "-machine", "q35"]
    argv += accel_args(accel, cpu)
    argv += ["-m", str(int(memory)), "-smp", str(int(cpus)),
             "-nodefaults", "-no-user-config", "-display", "none",
             "-serial", "file:%s" % console_log,
             "-kernel", kernel, "-initrd", initrd, "-append", append,
             "-drive", "file=%s,if=virtio,format=qcow2,cache=unsafe,discard=unmap" % disk,
             "-nic", "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:%d-:22" % port,
             "-device", "virtio-rng-pci"]
    if qga_socket:
        argv += ["-chardev", "socket,id=qga0,path=%s,server=on,wait=off" % qga_socket,
                 "-device", "virtio-serial-pci,id=vser0",
                 "-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0"]
    if qmp_socket:
        argv += ["-qmp", "unix:%s,server=on,wait=off" % qmp_socket]
    for drive in drives:
        if isinstance(drive, str):
            argv += ["-drive", drive]
        else:
            path, fmt = drive
            if "," in path:
                raise HarnessError("drive path %r contains a comma, which QEMU cannot parse" % path)
            argv += ["-drive", "file=%s,if=virtio,format=%s" % (path, fmt)]
    argv += ["-pidfile", pidfile]
    if daemonize:
        argv.append("-daemonize")
    argv += list(extra_args)
    return argv


def probe_argv(qemu, accel, kernel, cpu=None):
    """QEMU command that boots ``kernel`` with no root: it must reach the VFS
    panic and exit (``panic=-1 -no-reboot``)."""
    return [qemu, "-machine", "q35"] + accel_args(accel, cpu) + [
        "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
        "-serial", "stdio", "-no-reboot", "-kernel", kernel,
        "-append", "console=ttyS0 root=/dev/vmhost-probe-none panic=-1 loglevel=7"]


# ---------------------------------------------------------------------------
# ports

def port_free(port, host="127.0.0.1"):
    """True when ``host:port`` can be bound right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
    except OSError:
        return False
    finally:
        s.close()
    return True


def check_port(port):
    """Validate a requested port: an int in range and free on 127.0.0.1."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
        raise HarnessError("SSH port %r is not a port number between 1024 and 65535" % (port,))
    if not port_free(port):
        raise HarnessError("port %d on 127.0.0.1 is already taken; choose another or "
                           "omit the port to get a free one" % port)
    return port


def free_port():
    """A port on 127.0.0.1 that is free now (QEMU binds it a moment later)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# ---------------------------------------------------------------------------
# accelerator probe

def qemu_version(qemu):
    out = subprocess.run([qemu, "--version"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, check=False).stdout.decode("utf-8", "replace")
    return out.splitlines()[0] if out else "unknown"


def probe_key(kernel, qemu_ver, host_release):
    h = hashlib.sha256()
    with open(kernel, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(b"\0" + qemu_ver.encode() + b"\0" + host_release.encode())
    return h.hexdigest()[:24]


def _probe_kvm(qemu, kernel, cpu, timeout=PROBE_TIMEOUT):
    """Boot ``kernel`` under KVM with ``cpu``; return ``(works, detail)``."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(probe_argv(qemu, KVM, kernel, cpu), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            out.seek(0)
            text = out.read().decode("utf-8", "replace")
            if any(m in text for m in PROBE_MARKERS):
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


def choose_accel(qemu, kernel, cache=None, log=None):
    """``(accel, cpu, reason)``: KVM when it really boots ``kernel`` here, else TCG.

    ``$VMHOST_HARNESS_ACCEL`` (kvm or tcg) overrides.  The verdict is cached
    under ``<cache>/accel/`` keyed by the kernel, QEMU's version and the host
    kernel release.
    """
    forced = os.environ.get(ACCEL_ENV)
    if forced:
        if forced not in (KVM, TCG):
            raise HarnessError("%s=%s: use kvm or tcg" % (ACCEL_ENV, forced))
        return forced, (KVM_CPUS[0] if forced == KVM else "max"), "forced by %s" % ACCEL_ENV
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return TCG, "max", "/dev/kvm is missing or not accessible"
    cache = cache or paths.cache_dir()
    key = probe_key(kernel, qemu_version(qemu), os.uname().release)
    verdict_file = os.path.join(cache, "accel", key + ".json")
    try:
        with open(verdict_file) as f:
            v = json.load(f)
        return v["accel"], v["cpu"], v["reason"] + " (cached)"
    except (OSError, ValueError, KeyError):
        pass
    if log:
        log("probing KVM with %s" % os.path.basename(kernel))
    accel, cpu, details = TCG, "max", []
    for candidate in KVM_CPUS:
        works, detail = _probe_kvm(qemu, kernel, candidate)
        details.append(detail)
        if works:
            accel, cpu = KVM, candidate
            break
    reason = "; ".join(details)
    paths.makedirs(os.path.dirname(verdict_file))
    tmp = verdict_file + ".tmp%d" % os.getpid()
    with open(tmp, "w") as f:
        json.dump({"accel": accel, "cpu": cpu, "reason": reason, "kernel": kernel}, f)
    os.replace(tmp, verdict_file)
    return accel, cpu, reason
