"""``make demo``: boot the VM vmhost-demo, apply playbooks/site.yml to it,
print what was configured and how to reach it.  ``demo destroy`` removes it."""

import os
import shlex
import shutil
import subprocess
import sys

import yaml

from . import api, paths
from .errors import HarnessError

NAME = "vmhost-demo"
GROUPS = ("vm_hosts", "build_hosts", "guests")
MEMORY = 2048

# (label, shell command run in the VM) for the closing summary
# What the demo asks of site.yml beyond the roles' defaults: the roles register no
# binfmt handler until told which platforms, so the demo names two.
DEMO_VARS = {"qemu_binfmt_platforms": ["aarch64", "riscv64"]}

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


def top_dir():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def demo_dir():
    return os.path.join(paths.state_dir(), "demo")


def inventory(info):
    """The demo inventory: one host in every group site.yml configures."""
    host = {
        "ansible_host": info["address"],
        "ansible_port": info["port"],
        "ansible_user": info["user"],
        "ansible_ssh_private_key_file": info["identity_file"],
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    return {"all": {"hosts": {info["name"]: host}, "vars": dict(DEMO_VARS),
                    "children": {g: {"hosts": {info["name"]: None}} for g in GROUPS}}}


def ssh_command(info):
    return "ssh -i %s -p %d -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@%s" % (
        shlex.quote(info["identity_file"]), info["port"], info["address"])


def up():
    info = api.up(name=NAME, memory=MEMORY, cpus=2, guest_agent=True, reuse=True)
    d = paths.makedirs(demo_dir(), 0o700)
    inv = os.path.join(d, "inventory.yml")
    with open(inv + ".tmp", "w") as f:
        yaml.safe_dump(inventory(info), f, default_flow_style=False, sort_keys=True)
    os.replace(inv + ".tmp", inv)
    top = top_dir()
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(top, ".tmp", "collections"))
    env.setdefault("ANSIBLE_HOST_KEY_CHECKING", "False")
    env.setdefault("ANSIBLE_PIPELINING", "True")
    playbook_bin = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    if not os.path.exists(playbook_bin):
        playbook_bin = shutil.which("ansible-playbook") or "ansible-playbook"
    argv = [playbook_bin, "-i", inv, os.path.join(top, "playbooks", "site.yml")]
    print("== running %s" % " ".join(shlex.quote(a) for a in argv), flush=True)
    rc = subprocess.call(argv, cwd=top, env=env)
    print("\n== vmhost-demo summary")
    print("  %-16s: %s" % ("accelerator", info["accel"]))
    print("  %-16s: %s" % ("groups", ", ".join(GROUPS)))
    print("  %-16s: %s" % ("site.yml", "ok" if rc == 0 else "FAILED (exit %d)" % rc))
    for label, cmd in SUMMARY_CHECKS:
        try:
            out = api.ssh(info, cmd, timeout=60, check=False).stdout.strip() or "-"
        except subprocess.TimeoutExpired:
            out = "(timed out)"
        print("  %-16s: %s" % (label, out.splitlines()[0] if out else "-"))
    print("  %-16s: %s" % ("inventory", inv))
    print("  %-16s: %s" % ("console log", info["console_log"]))
    print("\nReach it with:\n  %s\nRemove it with: make demo-destroy" % ssh_command(info))
    return 0 if rc == 0 else 1


def destroy():
    removed = api.down(NAME)
    shutil.rmtree(demo_dir(), ignore_errors=True)
    print("vmhost-demo %s" % ("removed" if removed else "was not running"))
    return 0


__all__ = ["up", "destroy", "inventory", "HarnessError"]
