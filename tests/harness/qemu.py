"""QEMU: finding the binary, probing the accelerator, building the command line.

The command-line builders are pure (values in, argv out) and unit-tested; the
probe runs QEMU for real and caches its verdict.
"""

import os
import shutil
import socket

from ansible_collections.vmhost.virt.plugins.module_utils import qemu_accel as _accel

from . import paths
from .errors import HarnessError

QEMU = "qemu-system-x86_64"
ACCEL_ENV = "VMHOST_HARNESS_ACCEL"
# The KVM probe is the collection's (module_utils/qemu_accel.py), shared with the
# qemu_accel_probe module that the build_vm role runs.
TCG = _accel.TCG
KVM = _accel.KVM
PROBE_TIMEOUT = _accel.PROBE_TIMEOUT
PROBE_MARKERS = _accel.PROBE_MARKERS


def find_qemu(which=None):
    """Absolute path of qemu-system-x86_64, or a HarnessError saying what to install."""
    path = (which or shutil.which)(QEMU)
    if not path:
        raise HarnessError("%s not found: install it with `apt-get install qemu-system-x86` "
                           "(the harness boots its test VMs with QEMU)" % QEMU)
    return path


KVM_CPUS = _accel.KVM_CPUS


def accel_args(accel, cpu=None):
    """QEMU arguments for an accelerator verdict (``cpu`` only for KVM)."""
    try:
        return _accel.accel_args(accel, cpu)
    except _accel.AccelError as exc:
        raise HarnessError(str(exc))


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
    """QEMU command that boots ``kernel`` with no root (see module_utils/qemu_accel.py)."""
    try:
        return _accel.probe_argv(qemu, accel, kernel, cpu)
    except _accel.AccelError as exc:
        raise HarnessError(str(exc))


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
    return _accel.qemu_version(qemu)


probe_key = _accel.probe_key


def _probe_kvm(qemu, kernel, cpu, timeout=PROBE_TIMEOUT):
    """Boot ``kernel`` under KVM with ``cpu``; return ``(works, detail)``."""
    return _accel.probe_kvm(qemu, kernel, cpu, timeout)


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
    # Looked up at call time so tests can replace _probe_kvm / qemu_version.

    def probe(*args, **kwargs):
        return _probe_kvm(*args, **kwargs)

    def version(binary):
        return qemu_version(binary)

    try:
        return _accel.choose(qemu, kernel, cache_dir=cache or paths.cache_dir(),
                             probe=probe, version=version, log=log)
    except (_accel.AccelError, OSError) as exc:
        raise HarnessError("KVM probe failed: %s" % exc)
