"""``make demo``: the two hosts site.yml is for, brought up and configured.

* ``vmhost-demo``: a QEMU VM in ``vm_hosts``, ``build_hosts`` and ``guests``
  (libvirt, virtlogd, qemu_binfmt, guest_agent).
* ``vmhost-demo-build``: a systemd-nspawn build host (a TCG guest inside a TCG
  VM is unusable) in ``build_hosts`` with one build VM in ``build_vm_machines``;
  its guest image comes from playbooks/build_vm_image.yml, built once and cached
  under the harness state dir, bound read-only into the container.

One ``ansible-playbook -i inventory playbooks/site.yml`` configures both; the
summary ends with the command that runs an offloaded Nix build on the build host.
``demo destroy`` removes both instances (``--image``: the cached image too).

``demo up --part build-host`` (or ``--part vm-host``) brings up one of them only
(for development: the VM host alone takes most of the time under TCG).
"""

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import yaml

from . import api, paths
from .errors import HarnessError

NAME = "vmhost-demo"
BUILD_NAME = "vmhost-demo-build"
GROUPS = ("vm_hosts", "build_hosts", "guests")
BUILD_GROUPS = ("build_hosts",)
MEMORY = 2048
PARTS = ("all", "vm-host", "build-host")
# Debian release of the demo -> (VM host recipe, build host recipe). Debian 13 by default;
# `demo up --release bookworm` (or VMHOST_DEMO_RELEASE=bookworm make demo) keeps Debian 12
# selectable. The build host stays Debian 12 on both: build_vm is only tested there
# (molecule/build_vm has no Debian 13 build host yet).
RELEASES = {"trixie": ("trixie", "build-host"), "bookworm": ("default", "build-host")}
DEFAULT_RELEASE = "trixie"
RELEASE_ENV = "VMHOST_DEMO_RELEASE"

# What the demo asks of site.yml beyond the roles' defaults: the roles register no
# binfmt handler until told which platforms, so the demo names two.
DEMO_VARS = {"qemu_binfmt_platforms": ["aarch64", "riscv64"]}

# The build VM: the image directory on the controller is bound read-only at IMAGE_TARGET.
BUILD_VM = "demo"
IMAGE_NAME = "build-vm"
IMAGE_TARGET = "/srv/build-vm-image"
IMAGE_SIZE = "3G"
IMAGE_RECIPE = "build-vm-guest"
# What the image is built from: a change in any of these rebuilds it.
IMAGE_INPUTS = ("playbooks/build_vm_image.yml", "roles/build_vm_guest",
                "plugins/module_utils/secret_service.py", "tests/harness/recipes.py")
# The user's part of the build host's Nix (docs/build_vm.md step 1): a root Nix
# without a daemon and without a reachable binary cache. The role adds the rest.
NIX_CONF = ("build-users-group =\nsandbox = false\nsubstituters =\n"
            "experimental-features = nix-command\n")
# A derivation the build host may not build itself (--max-jobs 0). Its `stamp`
# is the evaluation time, so every run is a new derivation and really offloads.
OFFLOAD_NIX = "/root/offload.nix"
OFFLOAD_DRV = """derivation {
  name = "hello-from-the-build-vm";
  system = "x86_64-linux";
  builder = "/bin/sh";
  # no PATH in a build: shell built-ins and /proc only (the kernel is the build VM's)
  args = [ "-c" "read h < /proc/sys/kernel/hostname; read k < /proc/version; echo \\"built at $stamp on $h: $k\\" > $out" ];
  stamp = toString builtins.currentTime;
}
"""
OFFLOAD_CMD = ("out=$(nix-build --max-jobs 0 --no-out-link %s) && cat $out && "
               "nix path-info --sigs $out && nix store verify --sigs-needed 1 $out && "
               "echo verified" % OFFLOAD_NIX)

SUMMARY_CHECKS = (
    ("os", ". /etc/os-release && echo \"$PRETTY_NAME\""),
    # socket-activated daemons exit when idle: report service and socket
    ("libvirtd", "echo service $(systemctl is-active libvirtd.service), "
                 "socket $(systemctl is-active libvirtd.socket)"),
    ("virtlogd", "echo service $(systemctl is-active virtlogd.service), "
                 "socket $(systemctl is-active virtlogd.socket)"),
    ("qemu-guest-agent", "systemctl is-active qemu-guest-agent || true"),
    ("binfmt handlers", "ls /proc/sys/fs/binfmt_misc 2>/dev/null | grep '^qemu-' | xargs echo || true"),
    ("virsh", "virsh -c qemu:///system version --daemon 2>/dev/null | sed -n 's/^Running hypervisor: //p' || true"),
)

BUILD_SUMMARY_CHECKS = (
    ("unit", "systemctl is-active build-vm-%s.service || true" % BUILD_VM),
    ("accelerator", "grep -o -- '-accel [a-z]*' /etc/systemd/system/build-vm-%s.service "
                    "| head -n1 || true" % BUILD_VM),
    ("pinned ssh", "ssh -o BatchMode=yes -o ConnectTimeout=10 build-vm-%s "
                   "'echo $(id -un)@$(uname -n)' 2>&1 | tail -n1" % BUILD_VM),
    ("nix machines", "grep -v '^#' /etc/nix/machines | cut -d' ' -f1-4 || true"),
)


def top_dir():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def demo_dir():
    return os.path.join(paths.state_dir(), "demo")


def image_dir():
    """The cached build VM image (kept by ``demo destroy`` unless ``--image``)."""
    return os.path.join(paths.state_dir(), "demo-build-vm-image")


def _host_vars(info):
    return {
        "ansible_host": info["address"],
        "ansible_port": info["port"],
        "ansible_user": info["user"],
        "ansible_ssh_private_key_file": info["identity_file"],
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def build_machine(image_record, target=IMAGE_TARGET):
    """The demo's one ``build_vm_machines`` entry, from the ``NAME.json`` record
    build_vm_image.yml writes (controller paths), with the files at ``target``."""
    missing = [k for k in ("image", "kernel", "initrd", "append") if not image_record.get(k)]
    if missing:
        raise HarnessError("build VM image record lacks %s" % ", ".join(missing))
    where = target.rstrip("/")
    return {
        "name": BUILD_VM,
        "image": "%s/%s" % (where, os.path.basename(image_record["image"])),
        "kernel": "%s/%s" % (where, os.path.basename(image_record["kernel"])),
        "initrd": "%s/%s" % (where, os.path.basename(image_record["initrd"])),
        "append": image_record["append"],
        "systems": ["x86_64-linux", "i686-linux"],
        "cpu_count": 2,
        "memory": 1024,
        "max_jobs": 1,
        # TCG: the first boot (secrets, then sshd) takes a minute or more on busy cores
        "secrets_timeout": 300,
        "start_timeout": 600,
    }


def inventory(info=None, build_info=None, machine=None):
    """The demo inventory: the VM host in every group site.yml configures, the
    build host in ``build_hosts`` only, with ``machine`` as its one build VM."""
    if info is None and build_info is None:
        raise HarnessError("the demo inventory needs at least one host")
    if build_info is not None and machine is None:
        raise HarnessError("the build host needs its build VM")
    hosts, children = {}, {g: {"hosts": {}} for g in GROUPS}
    if info is not None:
        hosts[info["name"]] = _host_vars(info)
        for g in GROUPS:
            children[g]["hosts"][info["name"]] = None
    if build_info is not None:
        hosts[build_info["name"]] = dict(_host_vars(build_info), build_vm_nix="always",
                                         build_vm_machines=[machine])
        for g in BUILD_GROUPS:
            children[g]["hosts"][build_info["name"]] = None
    children = {g: c for g, c in children.items() if c["hosts"]}
    return {"all": {"hosts": hosts, "vars": dict(DEMO_VARS), "children": children}}


def image_key(top):
    """A short hash of every file the guest image is built from."""
    files = []
    for rel in IMAGE_INPUTS:
        path = os.path.join(top, rel)
        if os.path.isdir(path):
            for base, dirs, names in os.walk(path):
                dirs[:] = [d for d in dirs if d != "__pycache__"]
                files += [os.path.join(base, n) for n in names]
        elif os.path.exists(path):
            files.append(path)
        else:
            raise HarnessError("image input %s is missing" % rel)
    h = hashlib.sha256()
    for path in sorted(files):
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        h.update(("%s %s\n" % (digest, os.path.relpath(path, top))).encode())
    return h.hexdigest()[:16]


def image_argv(playbook_bin, top, tree, out_dir):
    return [playbook_bin, os.path.join(top, "playbooks", "build_vm_image.yml"),
            "-e", "build_vm_image_tree=%s" % tree, "-e", "build_vm_image_output_dir=%s" % out_dir,
            "-e", "build_vm_image_name=%s" % IMAGE_NAME, "-e", "build_vm_image_size=%s" % IMAGE_SIZE]


def offload_command(build_info, top, python):
    """The command (run on the controller, any directory) that offloads a Nix build on
    the build host: ``python`` is the harness's interpreter (relative when under ``top``)."""
    if os.path.isabs(python) and python.startswith(top.rstrip("/") + "/"):
        python = os.path.relpath(python, top)
    return "cd %s && %s -m tests.harness ssh --name %s -- %s" % (
        shlex.quote(top), shlex.quote(python), build_info["name"], shlex.quote(OFFLOAD_CMD))


def ssh_command(info):
    return "ssh -i %s -p %d -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@%s" % (
        shlex.quote(info["identity_file"]), info["port"], info["address"])


def _playbook_bin():
    playbook_bin = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    if not os.path.exists(playbook_bin):
        playbook_bin = shutil.which("ansible-playbook") or "ansible-playbook"
    return playbook_bin


def _env(top):
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(top, ".tmp", "collections"))
    env.setdefault("ANSIBLE_HOST_KEY_CHECKING", "False")
    env.setdefault("ANSIBLE_PIPELINING", "True")
    return env


def _write_atomic(path, text, mode=0o644):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.chmod(path + ".tmp", mode)
    os.replace(path + ".tmp", path)


def ensure_image(top, env):
    """Build the guest image with playbooks/build_vm_image.yml unless the cached one
    was built from the same inputs; return its ``NAME.json`` record."""
    out = paths.makedirs(image_dir(), 0o755)
    key = image_key(top)
    stamp = os.path.join(out, IMAGE_NAME + ".key")
    record = os.path.join(out, IMAGE_NAME + ".json")
    try:
        with open(stamp) as f:
            cached = f.read().strip() == key and os.path.exists(record)
    except OSError:
        cached = False
    t0 = time.monotonic()
    if not cached:
        tree = api.tree(recipe=IMAGE_RECIPE)["tree"]
        argv = image_argv(_playbook_bin(), top, tree, out)
        print("== building the build VM image: %s" % " ".join(shlex.quote(a) for a in argv),
              flush=True)
        if subprocess.call(argv, cwd=top, env=env) != 0:
            raise HarnessError("playbooks/build_vm_image.yml failed (see above)")
        _write_atomic(stamp, key + "\n")
    # the VM users in the container read it through the bind, which keeps modes
    subprocess.run(["chmod", "-R", "a+rX", out], check=True)
    with open(record) as f:
        data = json.load(f)
    state = "cached" if cached else "built"
    print("== build VM image %s (%s, %.1f s)" % (data["image"], state, time.monotonic() - t0),
          flush=True)
    return data


def _prepare_build_host(build_info):
    """The user's part of the build host (docs/build_vm.md step 1) and the demo's
    derivation; everything about offloading is left to site.yml."""
    # once: a rerun keeps what site.yml added (trusted-public-keys, builders), else the
    # role sees its keys gone and restarts the build VM
    script = ("mkdir -p /etc/nix && grep -qxF 'build-users-group =' /etc/nix/nix.conf 2>/dev/null"
              " || cat > /etc/nix/nix.conf <<'EOF'\n%sEOF\n"
              "cat > %s <<'EOF'\n%sEOF\n" % (NIX_CONF, OFFLOAD_NIX, OFFLOAD_DRV))
    # python3-cryptography (build_vm_secrets) comes with the build-host tree (bfd3171).
    api.ssh(build_info, script, timeout=60)


def _wait_pinned_ssh(build_info, timeout=600):
    """Wait until the build VM answers SSH through its pinned alias on the build host."""
    deadline = time.monotonic() + timeout
    cmd = "ssh -o BatchMode=yes -o ConnectTimeout=10 build-vm-%s true" % BUILD_VM
    while True:
        active = api.ssh(build_info, "systemctl is-active build-vm-%s.service" % BUILD_VM,
                         timeout=60, check=False).stdout.strip()
        if active == "active" and api.ssh(build_info, cmd, timeout=60, check=False).returncode == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(5)


def _check(info, cmd):
    try:
        out = api.ssh(info, cmd, timeout=60, check=False).stdout.strip() or "-"
    except subprocess.TimeoutExpired:
        out = "(timed out)"
    return out.splitlines()[0] if out else "-"


def release_recipes(release=None):
    """``(release, VM host recipe, build host recipe)``; ``release`` None: $VMHOST_DEMO_RELEASE
    or Debian 13."""
    release = release or os.environ.get(RELEASE_ENV) or DEFAULT_RELEASE
    if release not in RELEASES:
        raise HarnessError("unknown demo release %r; known: %s"
                           % (release, ", ".join(sorted(RELEASES))))
    return (release,) + RELEASES[release]


def up(part="all", release=None):
    if part not in PARTS:
        raise HarnessError("part must be one of %s" % ", ".join(PARTS))
    release, vm_recipe, build_recipe = release_recipes(release)
    started = time.monotonic()
    top = top_dir()
    env = _env(top)
    info = build_info = machine = None
    if part in ("all", "vm-host"):
        info = api.up(name=NAME, recipe=vm_recipe, memory=MEMORY, cpus=2, guest_agent=True,
                      reuse=True)
    if part in ("all", "build-host"):
        image = ensure_image(top, env)
        machine = build_machine(image)
        build_info = api.up(name=BUILD_NAME, kind="nspawn", recipe=build_recipe, reuse=True,
                            binds=[{"source": image_dir(), "target": IMAGE_TARGET,
                                    "readonly": True}])
        _prepare_build_host(build_info)
    d = paths.makedirs(demo_dir(), 0o700)
    inv = os.path.join(d, "inventory.yml")
    _write_atomic(inv, yaml.safe_dump(inventory(info, build_info, machine),
                                      default_flow_style=False, sort_keys=True), 0o600)
    argv = [_playbook_bin(), "-i", inv, os.path.join(top, "playbooks", "site.yml")]
    print("== running %s" % " ".join(shlex.quote(a) for a in argv), flush=True)
    rc = subprocess.call(argv, cwd=top, env=env)
    ready = _wait_pinned_ssh(build_info) if build_info is not None and rc == 0 else False
    if info is not None:
        print("\n== %s summary (VM host)" % NAME)
        print("  %-16s: %s" % ("release", release))
        print("  %-16s: %s" % ("accelerator", info["accel"]))
        print("  %-16s: %s" % ("groups", ", ".join(GROUPS)))
        print("  %-16s: %s" % ("site.yml", "ok" if rc == 0 else "FAILED (exit %d)" % rc))
        for label, cmd in SUMMARY_CHECKS:
            print("  %-16s: %s" % (label, _check(info, cmd)))
        print("  %-16s: %s" % ("console log", info["console_log"]))
    if build_info is not None:
        print("\n== %s summary (build host, systemd-nspawn)" % BUILD_NAME)
        print("  %-16s: %s (recipe %s)" % ("groups", ", ".join(BUILD_GROUPS), build_recipe))
        print("  %-16s: %s" % ("site.yml", "ok" if rc == 0 else "FAILED (exit %d)" % rc))
        print("  %-16s: %s" % ("build VM", "build-vm-%s (%s, %d MiB, %d vCPUs)" % (
            BUILD_VM, machine["image"], machine["memory"], machine["cpu_count"])))
        for label, cmd in BUILD_SUMMARY_CHECKS:
            print("  %-16s: %s" % (label, _check(build_info, cmd)))
        print("  %-16s: %s" % ("image cache", image_dir()))
    print("  %-16s: %s" % ("inventory", inv))
    print("  %-16s: %.0f s" % ("wall time", time.monotonic() - started))
    if info is not None:
        print("\nReach the VM host with:\n  %s" % ssh_command(info))
    if build_info is not None:
        print("\nReach the build host with:\n  %s" % ssh_command(build_info))
        print("\nRun an offloaded Nix build there (--max-jobs 0: only the build VM may build it;\n"
              "%s is a new derivation at every run):\n  %s"
              % (OFFLOAD_NIX, offload_command(build_info, top, sys.executable)))
    print("\nRemove it with: make demo-destroy")
    return 0 if rc == 0 and (build_info is None or ready) else 1


def destroy(image=False):
    removed = [n for n in (NAME, BUILD_NAME) if api.down(n)]
    shutil.rmtree(demo_dir(), ignore_errors=True)
    for n in (NAME, BUILD_NAME):
        print("%s %s" % (n, "removed" if n in removed else "was not running"))
    if image:
        shutil.rmtree(image_dir(), ignore_errors=True)
        print("build VM image cache %s removed" % image_dir())
    return 0


__all__ = ["up", "destroy", "inventory", "build_machine", "image_key", "offload_command",
           "HarnessError"]
