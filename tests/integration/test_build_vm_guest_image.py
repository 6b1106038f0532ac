"""playbooks/build_vm_image.yml + roles/build_vm_guest, booted under QEMU (TCG).

The image is built once per test session from the harness's `build-vm-guest`
tree; keys come from the build_vm_secrets module.  One boot proves the
secret service, the pinned SSH login and (when this host has Nix) a real
offloaded build signed by the guest; a second boot without a sender proves
the guest reboots after the kernel command line's timeout.

Every boot holds /tmp/vmhost-qemu-slot-A.lock (one QEMU at a time for this test).
"""
import base64
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_local import ROOT, ansible_env

pytestmark = [pytest.mark.root, pytest.mark.slow]

LOCK = "/tmp/vmhost-qemu-slot-A.lock"
PROGRAM = str(ROOT / "plugins" / "module_utils" / "secret_service.py")
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
import secret_service as ss  # noqa: E402  pylint: disable=wrong-import-position

FIGURES = {}
LIVE = []  # at most one Guest: this process holds the slot lock once


def need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        pytest.skip("needs root and %s" % ", ".join(missing or tools))


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def guest_image(tmp_path_factory):
    need("qemu-system-x86_64", "qemu-img", "mkfs.ext4", "ansible-playbook", "mmdebstrap")
    tree = subprocess.run([sys.executable, "-m", "tests.harness", "tree", "--recipe", "build-vm-guest"],
                          cwd=str(ROOT), capture_output=True, text=True, check=True).stdout.strip()
    out = tmp_path_factory.mktemp("image")
    start = time.monotonic()
    proc = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local", str(ROOT / "playbooks" / "build_vm_image.yml"),
         "-e", "ansible_python_interpreter=%s" % sys.executable,
         "-e", "build_vm_image_tree=%s" % tree, "-e", "build_vm_image_output_dir=%s" % out,
         "-e", "build_vm_image_name=guest"],
        env=ansible_env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    FIGURES["image build seconds"] = round(time.monotonic() - start, 1)
    desc = json.loads((out / "guest.json").read_text())
    assert set(desc) == {"image", "kernel", "initrd", "append"}
    for key in ("image", "kernel", "initrd"):
        assert os.path.isfile(desc[key]), desc[key]
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", desc["image"]],
                                     capture_output=True, check=True).stdout)
    assert info["format"] == "qcow2"
    assert desc["append"].startswith("root=UUID=") and "console=ttyS0" in desc["append"]
    # The source tree is untouched: the playbook configured a copy.
    assert not os.path.exists(os.path.join(tree, "etc/systemd/system/vmhost-secret-service.service"))
    assert not (out / "guest.tree").exists()
    yield desc
    shutil.rmtree(str(out), ignore_errors=True)  # about 1 GB


@pytest.fixture(scope="session")
def secrets(tmp_path_factory):
    base = tmp_path_factory.mktemp("secrets")
    (base / "guix").mkdir()
    proc = subprocess.run(
        ["ansible", "-i", "localhost,", "-c", "local", "localhost", "-m", "vmhost.virt.build_vm_secrets",
         "-e", "ansible_python_interpreter=%s" % sys.executable,
         "-a", "name=guest secret_root=%s offloading_key=%s host_guix_dir=%s" % (
             base / "root", base / "offload", base / "guix")],
        env=ansible_env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return base


class Guest:
    """One QEMU guest booted from the image, under the slot lock."""

    def __init__(self, desc, workdir, append_extra=""):
        for other in list(LIVE):
            other.stop()
        self.workdir = workdir
        self.ssh_port = free_port()
        self.sock = os.path.join(workdir, "secrets.sock")
        self.console = os.path.join(workdir, "console.log")
        self.lock = open(LOCK, "w")  # pylint: disable=consider-using-with
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "1024", "-smp", "2",
             "-display", "none", "-no-reboot", "-snapshot", "-nodefaults",
             "-kernel", desc["kernel"], "-initrd", desc["initrd"],
             "-append", (desc["append"] + " " + append_extra).strip(),
             "-drive", "file=%s,if=virtio,format=qcow2" % desc["image"],
             "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22" % self.ssh_port,
             "-device", "virtio-net-pci,netdev=n0",
             "-chardev", "socket,id=secrets,path=%s,server=on,wait=off" % self.sock,
             "-device", "virtio-serial-pci,id=vs0",
             "-device", "virtserialport,bus=vs0.0,chardev=secrets,name=org.vmhost.secrets.0",
             "-serial", "file:%s" % self.console],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        LIVE.append(self)

    def stop(self):
        if self not in LIVE:
            return
        LIVE.remove(self)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        fcntl.flock(self.lock, fcntl.LOCK_UN)
        self.lock.close()

    def console_text(self):
        try:
            with open(self.console, "rb") as handle:
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""


def ssh_args(secrets, port, known_hosts):
    return ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", "UserKnownHostsFile=%s" % known_hosts, "-o", "IdentitiesOnly=yes",
            "-o", "ConnectTimeout=20", "-i", str(secrets / "offload"), "-p", str(port), "offloading@127.0.0.1"]


@pytest.fixture(scope="module")
def booted(guest_image, secrets, tmp_path_factory):
    workdir = tempfile.mkdtemp(prefix="bvg", dir="/tmp")  # unix socket paths: keep them short
    os.chmod(workdir, 0o700)
    guest = Guest(guest_image, workdir)
    try:
        events = {}

        def log(msg):
            events.setdefault(msg.split(";")[0], time.monotonic())
        count = ss.send_secrets(("unix", guest.sock), str(secrets / "root"), timeout=600, log=log)
        done = time.monotonic()
        assert count == 12
        FIGURES["boot to greeting seconds"] = round(events["guest greeted"] - guest.started, 1)
        FIGURES["boot to secrets installed seconds"] = round(done - guest.started, 1)
        known = tmp_path_factory.mktemp("known") / "known_hosts"
        pub = (secrets / "root" / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
        known.write_text("[127.0.0.1]:%d %s\n" % (guest.ssh_port, " ".join(pub)))
        deadline = time.monotonic() + 300
        while True:
            proc = subprocess.run(ssh_args(secrets, guest.ssh_port, known) + ["true"],
                                  capture_output=True, text=True, timeout=60, check=False)
            if proc.returncode == 0:
                break
            assert time.monotonic() < deadline, proc.stderr + guest.console_text()[-3000:]
            time.sleep(2)
        FIGURES["boot to SSH seconds"] = round(time.monotonic() - guest.started, 1)
        yield guest, known
    finally:
        guest.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        print("\nbuild VM guest figures: %s" % json.dumps(FIGURES, sort_keys=True))


def test_secrets_delivered_and_pinned_ssh(booted, secrets):
    guest, known = booted
    run = subprocess.run(
        ssh_args(secrets, guest.ssh_port, known)
        + ["cat /etc/ssh/ssh_host_ed25519_key.pub; stat -c '%n %a %U' /etc/ssh/ssh_host_ed25519_key "
           "/etc/nix/signing-key.sec /etc/ssh/authorized_keys.d/offloading; "
           "systemctl is-active vmhost-secret-service ssh nix-daemon; id -nG"],
        capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert run[0].split()[:2] == (secrets / "root" / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
    assert run[1] == "/etc/ssh/ssh_host_ed25519_key 600 root"
    assert run[2] == "/etc/nix/signing-key.sec 600 root"
    assert run[3] == "/etc/ssh/authorized_keys.d/offloading 644 root"
    assert run[4:7] == ["active", "active", "active"]
    assert "nix-users" in run[7].split()
    # A wrong pinned key is refused: the guest really presents the delivered one.
    # (The offloading key is an ed25519 key the guest does not hold as host key.)
    wrong = known.parent / "wrong_known_hosts"
    other = (secrets / "offload.pub").read_text().split()[:2]
    wrong.write_text("[127.0.0.1]:%d %s\n" % (guest.ssh_port, " ".join(other)))
    refused = subprocess.run(ssh_args(secrets, guest.ssh_port, wrong) + ["true"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode != 0 and "REMOTE HOST IDENTIFICATION HAS CHANGED" in refused.stderr
    # Root cannot log in (locked, PermitRootLogin no, AllowUsers).
    root = subprocess.run(ssh_args(secrets, guest.ssh_port, known)[:-1] + ["root@127.0.0.1", "true"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert root.returncode != 0


def test_offloaded_nix_build_signed_by_guest(booted, secrets, tmp_path):
    if shutil.which("nix-build") is None:
        pytest.skip("no nix-build on this host")
    guest, _known = booted
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        "Host build-vm-guest\n  HostName 127.0.0.1\n  Port %d\n  User offloading\n  IdentityFile %s\n"
        "  IdentitiesOnly yes\n  HostKeyAlias build-vm-guest\n  StrictHostKeyChecking yes\n  BatchMode yes\n"
        % (guest.ssh_port, secrets / "offload"))
    expr = tmp_path / "drv.nix"
    expr.write_text('{ stamp }: derivation { name = "vmhost-offload-${stamp}"; system = "x86_64-linux"; '
                    'builder = "/bin/sh"; args = [ "-c" "echo built-in-the-build-vm > $out" ]; }\n')
    host_key = base64.b64encode(
        " ".join((secrets / "root" / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]).encode()).decode()
    nix_key = (secrets / "root" / "etc/nix/signing-key.pub").read_text().strip()
    opts = ["--option", "build-users-group", "", "--option", "sandbox", "false",
            "--option", "substituters", "", "--option", "trusted-public-keys", nix_key]
    env = dict(os.environ, NIX_SSHOPTS="-F %s" % ssh_config)
    start = time.monotonic()
    build = subprocess.run(
        ["nix-build", str(expr), "--argstr", "stamp", "%d-%d" % (time.time(), os.getpid()), "-j0", "--no-out-link",
         "--builders", "ssh-ng://build-vm-guest x86_64-linux %s 1 1 - - %s" % (secrets / "offload", host_key)]
        + opts, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert build.returncode == 0, build.stderr[-3000:]
    FIGURES["offloaded nix build seconds"] = round(time.monotonic() - start, 1)
    out = build.stdout.strip().splitlines()[-1]
    with open(out, encoding="utf-8") as handle:
        assert handle.read() == "built-in-the-build-vm\n"
    nix = ["nix", "--extra-experimental-features", "nix-command"]
    sigs = subprocess.run(nix + ["path-info", "--sigs", out], capture_output=True, text=True, check=True).stdout
    assert nix_key.split(":")[0] + ":" in sigs
    subprocess.run(nix + ["store", "verify", "--sigs-needed", "1", "--option", "trusted-public-keys", nix_key, out],
                   capture_output=True, text=True, check=True)
    wrong = subprocess.run(nix + ["store", "verify", "--sigs-needed", "1", "--option", "trusted-public-keys",
                                  "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=", out],
                           capture_output=True, text=True, check=False)
    assert wrong.returncode != 0
    # A wrong pinned host key in the machines line is refused (the guest's
    # ECDSA key would be accepted: it is the guest's too).
    bad_key = base64.b64encode(" ".join((secrets / "offload.pub").read_text().split()[:2]).encode()).decode()
    refused = subprocess.run(
        ["nix-build", str(expr), "--argstr", "stamp", "bad-%d" % time.time(), "-j0", "--no-out-link",
         "--builders", "ssh-ng://build-vm-guest x86_64-linux %s 1 1 - - %s" % (secrets / "offload", bad_key)]
        + opts, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert refused.returncode != 0 and "HOST IDENTIFICATION HAS CHANGED" in refused.stderr


def test_no_sender_guest_reboots_after_cmdline_timeout(guest_image):
    workdir = tempfile.mkdtemp(prefix="bvg", dir="/tmp")
    guest = Guest(guest_image, workdir, append_extra="vmhost.secrets_timeout=15")
    try:
        code = guest.proc.wait(600)  # -no-reboot: the guest's reboot ends QEMU
        FIGURES["boot to reboot without secrets seconds"] = round(time.monotonic() - guest.started, 1)
        console = guest.console_text()
        assert code == 0, guest.proc.stderr.read()
        assert "waiting up to 15s for secrets" in console
        assert "no secrets installed: no host connected" in console
        assert "rebooting" in console
        assert not re.search(r"Started .*OpenBSD Secure Shell server", console)
    finally:
        guest.stop()
        shutil.rmtree(workdir, ignore_errors=True)
