"""Python API of the harness: build, up, down, instance_info, list_instances.

    from tests.harness import api
    info = api.up(name="x", recipe="default", guest_agent=True)
    ... ssh -i info["identity_file"] -p info["port"] root@127.0.0.1 ...
    api.down("x")
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from ansible_collections.vmhost.virt.plugins.module_utils import qemu_img

from . import build as _build
from . import paths, qemu
from .errors import HarnessError

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
KINDS = ("vm",)
DEFAULT_TIMEOUT = 300
POLL = 1.0


def _log(msg):
    sys.stderr.write("harness: %s\n" % msg)
    sys.stderr.flush()


def check_name(name):
    """Instance names double as host names: lower-case letters, digits, dashes."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise HarnessError("bad instance name %r: use 1-63 lower-case letters, digits and "
                           "dashes, not starting or ending with a dash" % (name,))
    return name


def build(recipe="default", size=None):
    """Build or reuse the cached tree and base image of ``recipe``."""
    return _build.build(recipe=recipe, size=size)


def ssh_argv(info, command=None, connect_timeout=5):
    """An ssh command line reaching the instance described by ``info``."""
    argv = ["ssh", "-i", info["identity_file"], "-p", str(info["port"]),
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=%d" % connect_timeout, "-o", "LogLevel=ERROR",
            "%s@%s" % (info["user"], info["address"])]
    if command:
        argv += ["--", command]
    return argv


def ssh(info, command, timeout=120, check=True):
    """Run ``command`` in the instance; return the CompletedProcess (text)."""
    proc = subprocess.run(ssh_argv(info, command), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          timeout=timeout, check=False)
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and proc.returncode != 0:
        raise HarnessError("ssh %s: %r failed (exit %d): %s"
                           % (info["name"], command, proc.returncode, (err or out).strip()))
    return result


def console_tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no console log at %s)" % path
    return "\n".join(data.replace("\r", "").splitlines()[-lines:])


def pid_alive(pid):
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _pid_is_ours(pid, idir):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return idir.encode() in f.read()
    except OSError:
        return False


def _read_pid(idir):
    try:
        with open(os.path.join(idir, "qemu.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def instance_info(name):
    """The instance's JSON description (as printed by ``up``)."""
    check_name(name)
    path = os.path.join(paths.instance_dir(name), "instance.json")
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise HarnessError("no instance %r (no %s)" % (name, path))


def list_instances():
    """``[{"name", "pid", "running", "port"}]`` for every instance directory."""
    out = []
    root = paths.instances_dir()
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        idir = os.path.join(root, name)
        pid = _read_pid(idir)
        try:
            info = instance_info(name)
        except HarnessError:
            info = {}
        out.append({"name": name, "pid": pid, "port": info.get("port"),
                    "running": bool(pid and pid_alive(pid) and _pid_is_ours(pid, idir))})
    return out


def _drive_spec(drive):
    if isinstance(drive, dict):
        path, fmt = drive["file"], drive.get("format")
    else:
        path, fmt = drive, None
    if "=" in path:
        return path          # a raw -drive value
    if not os.path.exists(path):
        raise HarnessError("extra drive %s does not exist" % path)
    if not fmt:
        fmt = qemu_img.info(path).get("format", "raw")
    return (os.path.abspath(path), fmt)


def wait_ready(info, proc_pid, timeout=DEFAULT_TIMEOUT):
    """Wait until SSH answers and systemd says running/degraded."""
    deadline = time.monotonic() + timeout
    last = "no SSH answer yet"
    while True:
        if not pid_alive(proc_pid):
            raise HarnessError("QEMU (pid %d) of %s exited during boot; console log tail:\n%s"
                               % (proc_pid, info["name"], console_tail(info["console_log"])))
        try:
            proc = subprocess.run(ssh_argv(info, "systemctl is-system-running"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, timeout=30, check=False)
            state = proc.stdout.decode("utf-8", "replace").strip()
            if proc.returncode == 255:
                last = "ssh: " + (proc.stderr.decode("utf-8", "replace").strip() or "no answer")
            else:
                last = "systemd is %s" % (state or "?")
                if state in ("running", "degraded"):
                    return state
        except subprocess.TimeoutExpired:
            last = "ssh timed out"
        if time.monotonic() > deadline:
            raise HarnessError("%s not ready after %ds (last seen: %s); console log tail:\n%s"
                               % (info["name"], timeout, last, console_tail(info["console_log"])))
        time.sleep(POLL)


UP_OPTIONS = ("recipe", "kind", "memory", "cpus", "guest_agent", "qemu_args", "drives",
              "port", "timeout", "disk_size", "reuse")


def parse_options(text):
    """Parse a JSON object of :func:`up` options (a molecule platform's
    ``harness:`` dict); unknown keys are an error, not silently ignored."""
    try:
        opts = json.loads(text) if text else {}
    except ValueError as exc:
        raise HarnessError("harness options are not valid JSON: %s" % exc)
    if opts is None:
        opts = {}
    if not isinstance(opts, dict):
        raise HarnessError("harness options must be a mapping, not %s" % type(opts).__name__)
    unknown = sorted(set(opts) - set(UP_OPTIONS))
    if unknown:
        raise HarnessError("unknown harness option(s) %s; known: %s"
                           % (", ".join(unknown), ", ".join(UP_OPTIONS)))
    for key in ("qemu_args", "drives"):
        if key in opts and not isinstance(opts[key], list):
            raise HarnessError("harness option %s must be a list" % key)
    return opts


def up(name, recipe="default", kind="vm", memory=1024, cpus=2, guest_agent=False,
       qemu_args=(), drives=(), port=None, timeout=DEFAULT_TIMEOUT, disk_size=None,
       reuse=False):
    """Boot an instance and wait until it is ready; return its description.

    Raises :class:`HarnessError` with a readable message on bad input
    (unknown recipe/distribution/suite, image too small, port taken, QEMU
    missing) and when the guest does not come up (with the console log tail).
    """
    check_name(name)
    if kind not in KINDS:
        raise HarnessError("unknown instance kind %r; known: %s" % (kind, ", ".join(KINDS)))
    if isinstance(memory, bool) or not isinstance(memory, int) or memory < 256:
        raise HarnessError("memory must be a number of MiB, at least 256 (got %r)" % (memory,))
    if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
        raise HarnessError("cpus must be a positive integer (got %r)" % (cpus,))
    qemu_bin = qemu.find_qemu()
    if port is not None:
        qemu.check_port(port)
    idir = paths.instance_dir(name)
    if os.path.isdir(idir):
        pid = _read_pid(idir)
        if pid and pid_alive(pid) and _pid_is_ours(pid, idir):
            if reuse:
                info = instance_info(name)
                info["systemd"] = wait_ready(info, pid, timeout=timeout)
                return info
            raise HarnessError("instance %s is already running (pid %d); "
                               "`python -m tests.harness down --name %s` first" % (name, pid, name))
        shutil.rmtree(idir)        # stale: QEMU is gone
    drive_specs = [_drive_spec(d) for d in (drives or [])]
    image = _build.build(recipe=recipe, size=disk_size)
    accel, cpu, reason = qemu.choose_accel(qemu_bin, image["kernel"], log=_log)

    paths.makedirs(paths.instances_dir(), 0o700)
    os.mkdir(idir, 0o700)
    started = time.monotonic()
    try:
        key = os.path.join(idir, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        "vmhost-harness-%s" % name, "-f", key], check=True,
                       stdin=subprocess.DEVNULL)
        os.chmod(key, 0o600)
        with open(key + ".pub") as f:
            pubkey = f.read()
        overlay = os.path.join(idir, "disk.qcow2")
        qemu_img.create(overlay, "qcow2", backing_file=image["image"], backing_format="qcow2")
        info = {
            "name": name, "kind": kind, "address": "127.0.0.1", "port": None, "user": "root",
            "identity_file": key, "instance_dir": idir,
            "console_log": os.path.join(idir, "console.log"), "pid": None,
            "accel": accel, "qga_socket": os.path.join(idir, "qga.sock") if guest_agent else None,
            "qmp_socket": os.path.join(idir, "qmp.sock"), "recipe": image["name"],
            "image": image["image"], "memory": memory, "cpus": cpus,
        }
        append = qemu.kernel_cmdline(name, pubkey)
        pidfile = os.path.join(idir, "qemu.pid")
        tries = 1 if port is not None else 3
        for attempt in range(tries):
            info["port"] = port if port is not None else qemu.free_port()
            argv = qemu.vm_argv(qemu_bin, name, accel, cpu, memory, cpus, image["kernel"],
                                image["initrd"], overlay, info["port"], info["console_log"],
                                pidfile, append, qga_socket=info["qga_socket"],
                                qmp_socket=info["qmp_socket"], drives=drive_specs,
                                extra_args=list(qemu_args or []))
            with open(os.path.join(idir, "qemu.argv"), "w") as f:
                json.dump(argv, f)
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, check=False)
            if proc.returncode == 0:
                break
            msg = proc.stdout.decode("utf-8", "replace").strip()
            if "hostfwd" in msg and attempt + 1 < tries:
                continue        # lost the race for the free port: pick another
            raise HarnessError("QEMU failed to start %s (exit %d): %s"
                               % (name, proc.returncode, msg))
        info["pid"] = _read_pid(idir)
        if not info["pid"]:
            raise HarnessError("QEMU started but wrote no pid file %s" % pidfile)
        _write_json(os.path.join(idir, "instance.json"), info)
        _log("%s booting under %s (%s), ssh on 127.0.0.1:%s"
             % (name, accel, reason, info["port"]))
        info["systemd"] = wait_ready(info, info["pid"], timeout=timeout)
        info["boot_seconds"] = round(time.monotonic() - started, 1)
        _write_json(os.path.join(idir, "instance.json"), info)
        return info
    except BaseException:
        _stop(idir)
        shutil.rmtree(idir, ignore_errors=True)
        raise


def _stop(idir, grace=15):
    pid = _read_pid(idir)
    if not pid or not pid_alive(pid) or not _pid_is_ours(pid, idir):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    return True


def down(name):
    """Stop the instance's QEMU by its PID and remove its directory.

    Returns True when something was there to remove; an absent instance is
    not an error (destroy must always succeed).
    """
    check_name(name)
    idir = paths.instance_dir(name)
    if not os.path.isdir(idir):
        return False
    _stop(idir)
    shutil.rmtree(idir, ignore_errors=True)
    return True
