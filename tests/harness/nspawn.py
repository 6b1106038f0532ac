"""The ``nspawn`` instance kind: a systemd-nspawn container booted from a
recipe's cached root tree.

A real systemd host in about a second that can itself run a TCG QEMU guest at
one level of emulation (a VM inside a TCG VM is unusably slow).  Each instance
gets:

- an overlayfs root (lower: the cached tree, read-only; upper/work: the
  instance directory), so nothing is copied and the cache is never written;
- its own /24 ``10.99.N.0/24``: ``10.99.N.1`` on the host end of a veth pair
  named ``vmhnsN`` (``--network-veth-extra=vmhnsN:host0``: nspawn's own
  ``ve-NAME`` is shortened with a hash beyond 15 characters), ``10.99.N.2``
  on ``host0`` inside, set by systemd-networkd (the tree's
  ``networking.service`` is masked);
- a fresh ed25519 key authorised for root, host name = instance name;
- bind mounts (``--bind``/``--bind-ro``) for files made on the controller;
- cgroups of its own (``vmhost-harness-NAME`` in every writable hierarchy),
  so ``down`` can find and kill every process of the container;
- ``nspawn.pid``, ``nspawn.argv``, ``console.log`` (the container's console).

The planning functions (subnet choice, names, argv, files) are pure and
unit-tested; the rest runs the real tools.
"""

import ipaddress
import json
import os
import re
import signal
import subprocess
import time

from .errors import HarnessError

NSPAWN = "systemd-nspawn"
SUBNET_BASE = (10, 99)
SUBNET_RANGE = range(1, 255)       # 10.99.0.0/24 is left to people's experiments
IFNAMSIZ = 15                      # usable characters of a Linux interface name
IF_PREFIX = "vmhns"
GUEST_IF = "host0"
CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_PREFIX = "vmhost-harness-"
NETWORK_FILE = "/etc/systemd/network/10-vmhost-harness.network"
PIDFILE = "nspawn.pid"

# Options nspawn must have here: no systemd on the host to register with or
# to create a scope unit (--register=no --keep-unit); a private network so
# two instances can both listen on 22 and on 127.0.0.1:11022.
BASE_OPTIONS = ("--boot", "--register=no", "--keep-unit", "--console=read-only",
                "--resolv-conf=off", "--timezone=off", "--link-journal=no")


# ------------------------------------------------------------------ planning

def subnet(n):
    """Addresses of subnet number ``n``: host end, container end, prefix."""
    if isinstance(n, bool) or not isinstance(n, int) or n not in SUBNET_RANGE:
        raise HarnessError("nspawn subnet number %r out of range 1-254" % (n,))
    net = "%d.%d.%d" % (SUBNET_BASE + (n,))
    return {"number": n, "network": net + ".0/24", "host": net + ".1",
            "guest": net + ".2", "prefix": 24}


def host_ifname(n):
    """Host end of instance ``n``'s veth pair (within IFNAMSIZ)."""
    name = "%s%d" % (IF_PREFIX, subnet(n)["number"])
    assert len(name) <= IFNAMSIZ
    return name


def _overlapping(network):
    """Subnet numbers whose 10.99.N.0/24 overlaps ``network``."""
    if network.version != 4:
        return set()
    return {n for n in SUBNET_RANGE
            if network.overlaps(ipaddress.ip_network("%d.%d.%d.0/24" % (SUBNET_BASE + (n,))))}


def subnets_in_use(addr_json, route_json):
    """Subnet numbers taken on the host, from ``ip -j -4 addr`` and
    ``ip -j -4 route`` output (parsed JSON): an address whose network, or a
    route whose destination, overlaps 10.99.N.0/24 takes N; so does a link
    already named like an instance's veth (``vmhnsN``)."""
    used = set()
    for link in addr_json or []:
        for addr in link.get("addr_info") or []:
            if "local" in addr:
                used |= _overlapping(ipaddress.ip_interface(
                    "%s/%s" % (addr["local"], addr.get("prefixlen", 32))).network)
        ifname = link.get("ifname", "")
        if ifname.startswith(IF_PREFIX) and ifname[len(IF_PREFIX):].isdigit():
            used.add(int(ifname[len(IF_PREFIX):]))
    for route in route_json or []:
        dst = route.get("dst", "default")
        if dst == "default" or ":" in dst:
            continue
        used |= _overlapping(ipaddress.ip_network(dst, strict=False))
    return used


def pick_subnet(used, reserved=()):
    """Lowest subnet number not taken on the host nor reserved by an instance."""
    for n in SUBNET_RANGE:
        if n not in used and n not in reserved:
            return n
    raise HarnessError("no free 10.99.N.0/24 subnet left for an nspawn instance "
                       "(1-254 all in use): `python -m tests.harness list` and `down` some")


BIND_KEYS = ("source", "target", "readonly")


def check_binds(binds, exists=os.path.exists):
    """Validate ``binds`` (a list of {"source", "target", "readonly"});
    return it normalised (absolute paths, readonly a bool)."""
    if binds is None:
        return []
    if not isinstance(binds, (list, tuple)):
        raise HarnessError("binds must be a list of {source, target, readonly} mappings")
    out = []
    for i, bind in enumerate(binds):
        if not isinstance(bind, dict):
            raise HarnessError("binds[%d] must be a mapping with source, target, readonly" % i)
        unknown = sorted(set(bind) - set(BIND_KEYS))
        if unknown:
            raise HarnessError("binds[%d]: unknown key(s) %s; known: %s"
                               % (i, ", ".join(unknown), ", ".join(BIND_KEYS)))
        source = bind.get("source")
        target = bind.get("target", source)
        readonly = bind.get("readonly", False)
        for key, path in (("source", source), ("target", target)):
            if not isinstance(path, str) or not path:
                raise HarnessError("binds[%d].%s must be a path" % (i, key))
            if ":" in path or "\n" in path or "," in path:
                raise HarnessError("binds[%d].%s %r: paths with ':', ',' or newlines "
                                   "cannot be passed to systemd-nspawn --bind" % (i, key, path))
        if not os.path.isabs(target):
            raise HarnessError("binds[%d].target %r must be an absolute path in the container"
                               % (i, target))
        if os.path.normpath(target) == "/":
            raise HarnessError("binds[%d].target must not be / itself" % i)
        if not isinstance(readonly, bool):
            raise HarnessError("binds[%d].readonly must be true or false" % i)
        source = os.path.abspath(source)
        if not exists(source):
            raise HarnessError("binds[%d].source %s does not exist" % (i, source))
        out.append({"source": source, "target": os.path.normpath(target),
                    "readonly": readonly})
    return out


def nspawn_argv(nspawn, name, root, ifname, binds=(), extra_args=()):
    """The systemd-nspawn command line of one instance."""
    if len(ifname) > IFNAMSIZ:
        raise HarnessError("interface name %r longer than %d characters" % (ifname, IFNAMSIZ))
    argv = [nspawn] + list(BASE_OPTIONS)
    argv += ["--directory=%s" % root, "--machine=%s" % name, "--hostname=%s" % name,
             "--network-veth-extra=%s:%s" % (ifname, GUEST_IF)]
    for bind in binds:
        argv.append("--%s=%s:%s" % ("bind-ro" if bind["readonly"] else "bind",
                                    bind["source"], bind["target"]))
    argv += list(extra_args)
    return argv


def network_file(net):
    """systemd-networkd configuration of the container's end of the veth."""
    return ("# vmhost.virt test harness: static address on the nspawn veth\n"
            "[Match]\nName=%s\n\n[Network]\nAddress=%s/%d\nGateway=%s\n"
            "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
            % (GUEST_IF, net["guest"], net["prefix"], net["host"]))


# Files the instance writes into its overlay (path -> content, or a symlink
# target prefixed with "->", or None to remove).  The cached tree is left
# alone: the overlay's upper directory takes every change.
def instance_files(name, pubkey, net):
    return {
        "/etc/hostname": name + "\n",
        "/etc/hosts": "127.0.0.1\tlocalhost\n127.0.1.1\t%s\n"
                      "::1\tlocalhost ip6-localhost ip6-loopback\n" % name,
        # nothing to mount: nspawn sets up / (the tree's fstab names /dev/vda)
        "/etc/fstab": "# vmhost.virt test harness: nspawn container, nothing to mount\n",
        "/root/.ssh/authorized_keys": pubkey.strip() + "\n",
        NETWORK_FILE: network_file(net),
        # ifupdown would run dhclient on host0 (and on a shared network, on the host's eth0)
        "/etc/systemd/system/networking.service": "->/dev/null",
        "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service":
            "->/lib/systemd/system/systemd-networkd.service",
        "/etc/systemd/system/sockets.target.wants/systemd-networkd.socket":
            "->/lib/systemd/system/systemd-networkd.socket",
        # no serial port in a container: the getty would wait 90 s for dev-ttyS0
        "/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service": None,
    }


# ------------------------------------------------------------------ runtime

def find_nspawn(which=None):
    import shutil
    path = (which or shutil.which)(NSPAWN)
    if not path:
        raise HarnessError("%s not found: install it with `apt-get install systemd-container`"
                           % NSPAWN)
    return path


def _ip_json(*args):
    proc = subprocess.run(["ip", "-j", "-4"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise HarnessError("ip %s failed: %s" % (" ".join(args),
                                                 proc.stderr.decode().strip()))
    return json.loads(proc.stdout.decode() or "[]")


def host_subnets_in_use():
    return subnets_in_use(_ip_json("addr", "show"), _ip_json("route", "show", "table", "all"))


def write_instance_files(root, files):
    """Write ``files`` (see :func:`instance_files`) under ``root``."""
    for rel, content in sorted(files.items()):
        path = os.path.join(root, rel.lstrip("/"))
        if os.path.lexists(path):
            os.unlink(path)
        if content is None:
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if content.startswith("->"):
            os.symlink(content[2:], path)
            continue
        with open(path, "w") as f:
            f.write(content)
        if rel.startswith("/root/.ssh/"):
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o600)
        else:
            os.chmod(path, 0o644)


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4].encode().decode("unicode_escape") == path:
                return True
    return False


def mount_overlay(lower, idir):
    """Mount the instance's overlay root at ``idir/root``; return that path."""
    root = os.path.join(idir, "root")
    for sub in ("upper", "work", "root"):
        os.makedirs(os.path.join(idir, sub), mode=0o755, exist_ok=True)
    # the upper dir's root becomes the container's /: same mode as the tree's
    os.chmod(os.path.join(idir, "upper"), os.stat(lower).st_mode & 0o7777)
    opts = "lowerdir=%s,upperdir=%s,workdir=%s" % (lower, os.path.join(idir, "upper"),
                                                   os.path.join(idir, "work"))
    proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, root],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise HarnessError("mounting the overlay root of %s failed: %s"
                           % (idir, proc.stdout.decode("utf-8", "replace").strip()))
    return root


def unmount(path, timeout=10):
    """Unmount ``path`` (lazily if it stays busy); True when it is no mount point."""
    deadline = time.monotonic() + timeout
    while is_mounted(path):
        subprocess.run(["umount", path], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        if not is_mounted(path):
            break
        if time.monotonic() > deadline:
            subprocess.run(["umount", "-l", path], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
            break
        time.sleep(0.2)
    return not is_mounted(path)


def cgroup_dirs(name, root=CGROUP_ROOT):
    """The instance's cgroup directory in each hierarchy nspawn and the
    container's systemd use: the unified one (cgroup v2 or the hybrid
    ``unified`` mount) and the ``name=systemd`` one."""
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return [os.path.join(root, CGROUP_PREFIX + name)]         # pure cgroup v2
    dirs = []
    for hier in ("systemd", "unified"):
        if os.path.isdir(os.path.join(root, hier)):
            dirs.append(os.path.join(root, hier, CGROUP_PREFIX + name))
    return dirs


def make_cgroups(dirs):
    """Create the instance's cgroups; return those that exist (nspawn still
    runs in the caller's cgroup where one cannot be made)."""
    made = []
    for d in dirs:
        try:
            os.makedirs(d, exist_ok=True)
            made.append(d)
        except OSError:
            continue
    return made


def enter_cgroups(dirs):
    """Run in the child before exec: join the instance's cgroups."""
    for d in dirs:
        try:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write("%d\n" % os.getpid())
        except OSError:
            pass


def cgroup_pids(dirs):
    pids = set()
    for top in dirs:
        for dirpath, _dirs, files in os.walk(top):
            if "cgroup.procs" in files:
                try:
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        pids.update(int(x) for x in f.read().split())
                except (OSError, ValueError):
                    pass
    return pids


def remove_cgroups(dirs):
    for top in dirs:
        if not os.path.isdir(top):
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def start(argv, idir, name, cgroups):
    """Start nspawn detached (own session) with its console in console.log;
    write nspawn.pid and nspawn.argv.  Returns the PID."""
    with open(os.path.join(idir, "nspawn.argv"), "w") as f:
        json.dump(argv, f)
    cgroups = make_cgroups(cgroups)
    log = open(os.path.join(idir, "console.log"), "ab")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True,
                                preexec_fn=lambda: enter_cgroups(cgroups))
    finally:
        log.close()
    with open(os.path.join(idir, PIDFILE), "w") as f:
        f.write("%d\n" % proc.pid)
    # the `up` process does not wait for it: let init reap it when it ends
    proc.returncode = 0
    return proc.pid


def configure_host_end(ifname, net, alive, timeout=30):
    """Wait for nspawn to create the host end of the veth, then address it."""
    deadline = time.monotonic() + timeout
    while not os.path.exists("/sys/class/net/%s" % ifname):
        if not alive():
            return False
        if time.monotonic() > deadline:
            raise HarnessError("systemd-nspawn created no interface %s within %ds"
                               % (ifname, timeout))
        time.sleep(0.05)
    for args in (["addr", "replace", "%s/%d" % (net["host"], net["prefix"]), "dev", ifname],
                 ["link", "set", ifname, "up"]):
        proc = subprocess.run(["ip"] + args, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            if not alive():
                return False
            raise HarnessError("ip %s failed: %s"
                               % (" ".join(args), proc.stdout.decode().strip()))
    return True


def delete_link(ifname):
    if ifname and os.path.exists("/sys/class/net/%s" % ifname):
        subprocess.run(["ip", "link", "delete", ifname], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(idir, name, pid, pid_is_ours, grace=20):
    """SIGTERM to nspawn (the container shuts down cleanly), SIGKILL after
    ``grace`` s, then SIGKILL whatever is left in the instance's cgroups."""
    stopped = False
    if pid and _alive(pid) and pid_is_ours(pid):
        stopped = True
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    dirs = cgroup_dirs(name)
    deadline = time.monotonic() + 10
    while True:
        _reap(pid) if pid else None
        left = [p for p in cgroup_pids(dirs) if _alive(p)]
        if pid and _alive(pid) and pid_is_ours(pid):
            left.append(pid)
        if not left or time.monotonic() > deadline:
            break
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    remove_cgroups(dirs)
    return stopped


_IFNAME_RE = re.compile(r"^%s\d{1,3}$" % IF_PREFIX)


def cleanup(idir, name, pid, pid_is_ours, ifname=None):
    """Everything ``down`` does for an nspawn instance, in an order that is
    safe on a half-created one: stop, drop the veth, unmount, (caller removes
    the directory).  Returns False if the root could not be unmounted (the
    caller must then not remove the directory)."""
    stop(idir, name, pid, pid_is_ours)
    if ifname and _IFNAME_RE.match(ifname):
        delete_link(ifname)
    return unmount(os.path.join(idir, "root"))
