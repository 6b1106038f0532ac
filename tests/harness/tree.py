"""Bootstrap a root tree from a recipe and apply the harness post-steps.

The post-steps only write files (no chroot): network, fstab, hostname, sshd
settings, an empty machine-id, masked timers, and the per-instance first-boot
unit that reads the instance's SSH public key from the kernel command line.
The cached tree therefore holds no per-instance secret and no host keys: every
instance shares one read-only base image.
"""

import os
import shutil
import stat

from .errors import HarnessError

# Bump when a post-step below changes: it is part of the recipe hash.
POST_STEPS_VERSION = 4

# Kernel command line parameter carrying the instance's authorized key, as
# ``TYPE:BASE64`` (no spaces allowed on the command line).
KEY_PARAM = "vmhost.authorized_key"

FIRSTBOOT_SCRIPT = """#!/bin/sh
# vmhost.virt test harness: per-instance set-up on every boot.
# The instance's SSH public key arrives on the kernel command line as
# vmhost.authorized_key=TYPE:BASE64 (public, not secret); host keys are
# generated here so instances sharing one base image never share them.
set -eu
key=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        %(param)s=*) key="${arg#%(param)s=}" ;;
    esac
done
if [ -n "$key" ]; then
    install -d -m 0700 /root/.ssh
    umask 077
    printf '%%s %%s vmhost-harness\\n' "${key%%%%:*}" "${key#*:}" > /root/.ssh/authorized_keys.new
    mv /root/.ssh/authorized_keys.new /root/.ssh/authorized_keys
fi
# one ed25519 host key (RSA key generation takes ~20 s under TCG)
if [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then
    ssh-keygen -q -t ed25519 -N "" -C "" -f /etc/ssh/ssh_host_ed25519_key
fi
""" % {"param": KEY_PARAM}

FIRSTBOOT_UNIT = """[Unit]
Description=vmhost.virt test harness: authorized key and SSH host keys
DefaultDependencies=no
After=local-fs.target
Before=ssh.service sysinit.target
ConditionPathExists=/proc/cmdline

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/vmhost-harness-firstboot

[Install]
WantedBy=sysinit.target
"""

INTERFACES = """# vmhost.virt test harness: QEMU user networking gives eth0 a DHCP lease.
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
"""

FSTAB = "# vmhost.virt test harness\n/dev/vda / ext4 rw,errors=remount-ro 0 1\n"

SSHD_CONF = """# vmhost.virt test harness: root by key only.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
"""

HOSTNAME = "vmhost-guest"

# Units that only slow a test VM down or race with roles (apt-daily holds the
# dpkg lock while a role installs packages).
MASKED_UNITS = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service",
    "apt-daily-upgrade.service", "e2scrub_all.timer", "e2scrub_reap.service",
    "fstrim.timer", "man-db.timer", "systemd-networkd-wait-online.service",
)


def mmdebstrap_argv(spec, target):
    """The mmdebstrap command that bootstraps ``spec`` into ``target``."""
    argv = [
        "mmdebstrap",
        "--variant=%s" % spec.get("variant", "minbase"),
        "--mode=root",
        "--format=directory",
        # keep the package lists so small in-guest installs need no update
        "--skip=cleanup/apt/lists",
        "--aptopt=Acquire::Retries \"3\"",
        "--dpkgopt=force-unsafe-io",
    ]
    if spec.get("packages"):
        argv.append("--include=" + ",".join(sorted(set(spec["packages"]))))
    argv += [spec["suite"], target]
    argv += list(spec["mirrors"])
    return argv


def _write(root, rel, content, mode=0o644):
    path = os.path.join(root, rel.lstrip("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    with open(path, "w") as f:
        f.write(content)
    os.chmod(path, mode)


def _symlink(root, rel, target):
    path = os.path.join(root, rel.lstrip("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    os.symlink(target, path)


def post_steps(root, profile="harness"):
    """Apply the post-steps to the tree at ``root`` (file writes only).

    ``harness`` (instances of the harness): everything below.  ``image`` (a
    tree another playbook turns into a real image, e.g. the build VM guest):
    only what no image should carry (SSH host keys, a machine-id, root's
    authorized keys, apt timers racing the roles) plus eth0 DHCP; no harness
    first-boot unit, no root SSH login, no fstab.
    """
    if not os.path.isdir(os.path.join(root, "etc")):
        raise HarnessError("%s does not look like a root tree (no etc/)" % root)
    if profile not in ("harness", "image"):
        raise HarnessError("unknown post-step profile %r" % (profile,))
    _write(root, "/etc/network/interfaces", INTERFACES)
    if profile == "image":
        _neutral_steps(root)
        return
    _write(root, "/etc/fstab", FSTAB)
    _write(root, "/etc/hostname", HOSTNAME + "\n")
    _write(root, "/etc/hosts",
           "127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n"
           % HOSTNAME)
    _write(root, "/etc/ssh/sshd_config.d/vmhost-harness.conf", SSHD_CONF)
    # per-instance host keys: generated at first boot by the unit below
    _write(root, "/usr/local/sbin/vmhost-harness-firstboot", FIRSTBOOT_SCRIPT, 0o755)
    _write(root, "/etc/systemd/system/vmhost-harness-firstboot.service", FIRSTBOOT_UNIT)
    _symlink(root, "/etc/systemd/system/sysinit.target.wants/vmhost-harness-firstboot.service",
             "/etc/systemd/system/vmhost-harness-firstboot.service")
    # serial console: getty on ttyS0 (the generator does this for console=ttyS0
    # too; the explicit link keeps it when the command line changes)
    _symlink(root, "/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service",
             "/lib/systemd/system/serial-getty@.service")
    _neutral_steps(root)


def _neutral_steps(root):
    """What no shared tree may carry: host keys, machine-id, authorized keys;
    and the timers that race with roles."""
    sshdir = os.path.join(root, "etc/ssh")
    for name in os.listdir(sshdir) if os.path.isdir(sshdir) else []:
        if name.startswith("ssh_host_"):
            os.unlink(os.path.join(sshdir, name))
    for unit in MASKED_UNITS:
        _symlink(root, "/etc/systemd/system/" + unit, "/dev/null")
    # empty machine-id: systemd generates one per instance at boot
    _write(root, "/etc/machine-id", "", 0o444)
    dbus_id = os.path.join(root, "var/lib/dbus/machine-id")
    if os.path.lexists(dbus_id) and not os.path.islink(dbus_id):
        os.unlink(dbus_id)
        os.symlink("/etc/machine-id", dbus_id)
    # root's home: no stale keys
    ak = os.path.join(root, "root/.ssh/authorized_keys")
    if os.path.lexists(ak):
        os.unlink(ak)


def find_boot_files(root):
    """Return ``(kernel, initrd)`` absolute paths inside the tree."""
    boot = os.path.join(root, "boot")
    kernels = sorted(n for n in os.listdir(boot) if n.startswith("vmlinuz-")) \
        if os.path.isdir(boot) else []
    if not kernels:
        raise HarnessError("no kernel in %s: the recipe must include linux-image-amd64" % boot)
    version = kernels[-1][len("vmlinuz-"):]
    kernel = os.path.join(boot, "vmlinuz-" + version)
    initrd = os.path.join(boot, "initrd.img-" + version)
    if not os.path.exists(initrd):
        raise HarnessError("kernel %s has no initrd %s" % (kernel, initrd))
    return kernel, initrd


def tree_usage(root):
    """Bytes the tree occupies (allocated blocks) and its number of inodes."""
    total = 0
    inodes = 0
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            inodes += 1
            if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
                total += max(st.st_blocks * 512, 0)
    return total, inodes


def remove_tree(path):
    """Remove a (possibly half-built) tree; ignore it being gone."""
    if os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)
