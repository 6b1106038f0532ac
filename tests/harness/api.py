"""Python API of the harness: build, tree, up, down, instance_info, list_instances.

    from tests.harness import api
    info = api.up(name="x", recipe="default", guest_agent=True)          # a QEMU VM
    host = api.up(name="y", kind="nspawn", recipe="build-host",          # a container
                  binds=[{"source": "/srv/img", "target": "/srv/img", "readonly": True}])
    ... ssh -i info["identity_file"] -p info["port"] root@info["address"] ...
    api.down("x"); api.down("y")
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
from . import nspawn, paths, qemu
from .errors import HarnessError

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
KINDS = ("vm", "nspawn")
# Options that only make sense for one kind; the other kind refuses them.
VM_ONLY = ("memory", "cpus", "guest_agent", "qemu_args", "drives", "port", "disk_size")
NSPAWN_ONLY = ("binds", "nspawn_args")
VM_DEFAULTS = {"memory": 1024, "cpus": 2, "guest_agent": False, "qemu_args": (),
               "drives": (), "port": None, "disk_size": None}
PIDFILES = ("qemu.pid", nspawn.PIDFILE)
DEFAULT_TIMEOUT = 300
POLL = 1.0
NSPAWN_POLL = 0.2          # a container is up in about a second


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


def tree(recipe="default"):
    """Build or reuse only the cached root tree of ``recipe`` (no image, no
    boot); ``result["tree"]`` is its directory.  Treat it as read-only."""
    return _build.build_tree_only(recipe=recipe)


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


def _new_ssh_key(idir, name):
    """A fresh ed25519 key pair for root of instance ``name``: ``(private key path, public line)``."""
    key = os.path.join(idir, "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                    "vmhost-harness-%s" % name, "-f", key], check=True,
                   stdin=subprocess.DEVNULL)
    os.chmod(key, 0o600)
    with open(key + ".pub") as f:
        return key, f.read()


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
    for name in PIDFILES:
        try:
            with open(os.path.join(idir, name)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            continue
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
        out.append({"name": name, "kind": info.get("kind") or _kind_on_disk(idir),
                    "pid": pid, "address": info.get("address"), "port": info.get("port"),
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


def wait_ready(info, proc_pid, timeout=DEFAULT_TIMEOUT, poll=None):
    """Wait until SSH answers and systemd says running/degraded."""
    if poll is None:
        poll = NSPAWN_POLL if info.get("kind") == "nspawn" else POLL
    deadline = time.monotonic() + timeout
    last = "no SSH answer yet"
    what = "systemd-nspawn" if info.get("kind") == "nspawn" else "QEMU"
    while True:
        if not pid_alive(proc_pid):
            raise HarnessError("%s (pid %d) of %s exited during boot; console log tail:\n%s"
                               % (what, proc_pid, info["name"],
                                  console_tail(info["console_log"])))
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
        time.sleep(poll)


UP_OPTIONS = ("recipe", "kind", "timeout", "reuse") + VM_ONLY + NSPAWN_ONLY


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
    for key in ("qemu_args", "drives", "binds", "nspawn_args"):
        if key in opts and not isinstance(opts[key], list):
            raise HarnessError("harness option %s must be a list" % key)
    return opts


def check_kind_options(kind, given):
    """Refuse options the chosen kind does not take (``given``: option ->
    value; None means not given)."""
    if kind not in KINDS:
        raise HarnessError("unknown instance kind %r; known: %s" % (kind, ", ".join(KINDS)))
    other = NSPAWN_ONLY if kind == "vm" else VM_ONLY
    wrong = sorted(k for k in other if given.get(k) is not None)
    if wrong:
        raise HarnessError("option(s) %s only apply to kind %s, not to kind %s"
                           % (", ".join(wrong), "nspawn" if kind == "vm" else "vm", kind))


def _reuse_or_clear(name, idir, reuse, timeout):
    """An existing instance directory: return the running instance (reuse),
    refuse it, or remove a stale one.  None when the way is clear."""
    if not os.path.isdir(idir):
        return None
    pid = _read_pid(idir)
    if pid and pid_alive(pid) and _pid_is_ours(pid, idir):
        if reuse:
            info = instance_info(name)
            info["systemd"] = wait_ready(info, pid, timeout=timeout)
            return info
        raise HarnessError("instance %s is already running (pid %d); "
                           "`python -m tests.harness down --name %s` first" % (name, pid, name))
    _remove(name, idir)          # stale: its process is gone
    return None


def up(name, recipe="default", kind="vm", memory=None, cpus=None, guest_agent=None,
       qemu_args=None, drives=None, port=None, timeout=DEFAULT_TIMEOUT, disk_size=None,
       reuse=False, binds=None, nspawn_args=None):
    """Boot an instance and wait until it is ready; return its description.

    ``kind="vm"`` (default): a QEMU VM; ``kind="nspawn"``: a systemd-nspawn
    container booted from the recipe's tree (``binds``: a list of
    ``{"source", "target", "readonly"}``; ``nspawn_args``: extra options).

    Raises :class:`HarnessError` with a readable message on bad input
    (unknown recipe/distribution/suite, image too small, port taken, QEMU
    missing, an option of the other kind) and when the instance does not
    come up (with the console log tail).
    """
    check_name(name)
    check_kind_options(kind, {"memory": memory, "cpus": cpus, "guest_agent": guest_agent,
                              "qemu_args": qemu_args, "drives": drives, "port": port,
                              "disk_size": disk_size, "binds": binds,
                              "nspawn_args": nspawn_args})
    if kind == "nspawn":
        return _up_nspawn(name, recipe, binds, nspawn_args, timeout, reuse)
    memory = VM_DEFAULTS["memory"] if memory is None else memory
    cpus = VM_DEFAULTS["cpus"] if cpus is None else cpus
    if isinstance(memory, bool) or not isinstance(memory, int) or memory < 256:
        raise HarnessError("memory must be a number of MiB, at least 256 (got %r)" % (memory,))
    if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
        raise HarnessError("cpus must be a positive integer (got %r)" % (cpus,))
    qemu_bin = qemu.find_qemu()
    if port is not None:
        qemu.check_port(port)
    idir = paths.instance_dir(name)
    running = _reuse_or_clear(name, idir, reuse, timeout)
    if running:
        return running
    drive_specs = [_drive_spec(d) for d in (drives or [])]
    image = _build.build(recipe=recipe, size=disk_size)
    accel, cpu, reason = qemu.choose_accel(qemu_bin, image["kernel"], log=_log)

    paths.makedirs(paths.instances_dir(), 0o700)
    os.mkdir(idir, 0o700)
    started = time.monotonic()
    try:
        key, pubkey = _new_ssh_key(idir, name)
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


NSPAWN_NET = "nspawn.json"
NSPAWN_TIMEOUT = 120


def _nspawn_reserved():
    """Subnet numbers recorded by every instance directory."""
    out = set()
    root = paths.instances_dir()
    for entry in os.listdir(root) if os.path.isdir(root) else []:
        try:
            with open(os.path.join(root, entry, NSPAWN_NET)) as f:
                out.add(int(json.load(f)["subnet"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def _up_nspawn(name, recipe, binds, nspawn_args, timeout, reuse):
    nspawn_bin = nspawn.find_nspawn()
    binds = nspawn.check_binds(binds)
    extra = list(nspawn_args or [])
    if not all(isinstance(a, str) and a.startswith("-") for a in extra):
        raise HarnessError("nspawn_args must be a list of options starting with '-' "
                           "(e.g. --capability=CAP_NET_ADMIN)")
    idir = paths.instance_dir(name)
    running = _reuse_or_clear(name, idir, reuse, timeout)
    if running:
        return running
    tree_info = _build.build_tree_only(recipe=recipe)

    paths.makedirs(paths.instances_dir(), 0o700)
    started = time.monotonic()
    # subnet choice and its record are atomic against other `up`s
    with _build._Lock(os.path.join(paths.state_dir(), "nspawn-net.lock")):
        os.mkdir(idir, 0o700)
        number = nspawn.pick_subnet(nspawn.host_subnets_in_use(), _nspawn_reserved())
        net = nspawn.subnet(number)
        ifname = nspawn.host_ifname(number)
        _write_json(os.path.join(idir, NSPAWN_NET), {"subnet": number, "ifname": ifname})
    try:
        key, pubkey = _new_ssh_key(idir, name)
        t0 = time.monotonic()
        root = nspawn.mount_overlay(tree_info["tree"], idir)
        nspawn.write_instance_files(root, nspawn.instance_files(name, pubkey, net))
        prepare_seconds = round(time.monotonic() - t0, 2)
        info = {
            "name": name, "kind": "nspawn", "address": net["guest"], "port": 22,
            "user": "root", "identity_file": key, "instance_dir": idir,
            "console_log": os.path.join(idir, "console.log"), "pid": None,
            "recipe": tree_info["name"], "tree": tree_info["tree"], "root": root,
            "host_address": net["host"], "host_interface": ifname,
            "network": net["network"], "binds": binds, "nspawn_args": extra,
            "prepare_seconds": prepare_seconds,
        }
        argv = nspawn.nspawn_argv(nspawn_bin, name, root, ifname, binds, extra)
        pid = nspawn.start(argv, idir, name, nspawn.cgroup_dirs(name))
        info["pid"] = pid
        _write_json(os.path.join(idir, "instance.json"), info)
        if not nspawn.configure_host_end(ifname, net, lambda: pid_alive(pid)):
            raise HarnessError("systemd-nspawn (pid %d) of %s exited during start; "
                               "console log tail:\n%s"
                               % (pid, name, console_tail(info["console_log"])))
        _log("%s booting in systemd-nspawn (pid %d), ssh on %s:22" % (name, pid, net["guest"]))
        info["systemd"] = wait_ready(info, pid, timeout=timeout)
        info["boot_seconds"] = round(time.monotonic() - started, 1)
        _write_json(os.path.join(idir, "instance.json"), info)
        return info
    except BaseException:
        _remove(name, idir)
        raise


def _kind_on_disk(idir):
    if os.path.exists(os.path.join(idir, NSPAWN_NET)) or \
            os.path.lexists(os.path.join(idir, "root")):
        return "nspawn"
    return "vm"


def _remove(name, idir):
    """Stop whatever runs for the instance and remove its directory, also
    when it is half-created."""
    if _kind_on_disk(idir) == "nspawn":
        ifname = None
        try:
            with open(os.path.join(idir, NSPAWN_NET)) as f:
                ifname = json.load(f).get("ifname")
        except (OSError, ValueError):
            pass
        if not nspawn.cleanup(idir, name, _read_pid(idir),
                              lambda pid: _pid_is_ours(pid, idir), ifname):
            raise HarnessError("cannot unmount %s: the container root of %s is still "
                               "busy; its directory is left in place"
                               % (os.path.join(idir, "root"), name))
    else:
        _stop(idir)
    shutil.rmtree(idir, ignore_errors=True)


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
    """Stop the instance (QEMU or systemd-nspawn) by its PID and remove its
    directory (for nspawn also its veth, overlay mount and cgroups).

    Returns True when something was there to remove; an absent instance is
    not an error (destroy must always succeed).
    """
    check_name(name)
    idir = paths.instance_dir(name)
    if not os.path.isdir(idir):
        return False
    _remove(name, idir)
    return True
