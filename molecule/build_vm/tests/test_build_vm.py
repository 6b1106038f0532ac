"""testinfra checks of the build_vm scenario: issue 16's acceptance list, on the build host.

Runs after converge and idempotence. Tests run in file order: the last ones kill QEMU,
then stop build-vm-x86 to run the VM without secrets alone (one guest at a time).
"""

import json
import os
import re
import time

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

UNIT = "build-vm-x86.service"
ROOT = "/etc/vmhost/build-vms/x86"
KEY = "/etc/vmhost/offload/ssh/x86"
KNOWN = "/etc/vmhost/offload/known_hosts"
PINNED_SSH = ("ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s -i %s "
              "-p 11022 offloading@127.0.0.1" % (KNOWN, KEY))
# A derivation no binary cache can have (the name carries the time): with --max-jobs 0 the
# host cannot build it, so it is built in the VM or not at all.
DRV = r'''derivation {
  name = "vmhost-offload-%d";
  system = "x86_64-linux";
  builder = "/bin/sh";
  args = [ "-c" "echo built-in-$(uname -n) > $out" ];
}
'''


def _show(host, unit, *props):
    out = host.check_output("systemctl show %s %s" % (" ".join("--property=" + p for p in props), unit))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _wait(what, check, deadline, host=None, unit=UNIT):
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(3)
    tail = host.run("journalctl -u %s -n 40 --no-pager" % unit).stdout if host else ""
    raise AssertionError("%s not within %ds (last: %r)\n%s" % (what, deadline, last, tail))


def _qemu_listeners(host):
    """[(address, port)] of TCP listeners whose process is a QEMU."""
    out = host.check_output("ss -Htlnp")
    found = []
    for line in out.splitlines():
        parts = line.split()
        if "qemu-system" in line:
            addr, port = parts[3].rsplit(":", 1)
            found.append((addr, int(port)))
    return found


def _run_ssh(host, command):
    """(rc, stdout, stderr) of an ssh command; testinfra's ssh backend would raise on ssh's 255."""
    res = host.run("%s; echo \"rc=$?\" >&2" % command)
    err, _sep, rc = res.stderr.rstrip().rpartition("rc=")
    return int(rc), res.stdout, err


def _guest_key(host):
    return " ".join(host.file(ROOT + "/etc/ssh/ssh_host_ed25519_key.pub").content_string.split()[:2])


def test_unit_is_active_and_hardened(host):
    props = _show(host, UNIT, "ActiveState", "User", "Group", "ProtectSystem", "ProtectHome",
                  "PrivateTmp", "NoNewPrivileges", "Restart", "RuntimeDirectoryMode", "StateDirectoryMode")
    assert props["ActiveState"] == "active", props
    assert (props["User"], props["Group"]) == ("build-vm-x86", "kvm")
    assert props["ProtectSystem"] == "strict" and props["ProtectHome"] == "yes"
    assert props["PrivateTmp"] == "yes" and props["NoNewPrivileges"] == "yes"
    assert props["Restart"] == "always"
    assert props["RuntimeDirectoryMode"] == "0700" and props["StateDirectoryMode"] == "0700"
    assert "kvm" in host.user("build-vm-x86").groups


def test_qemu_runs_as_the_vm_user_with_the_references_settings(host):
    pid = _show(host, UNIT, "MainPID")["MainPID"]
    argv = host.file("/proc/%s/cmdline" % pid).content.split(b"\0")
    argv = [a.decode() for a in argv if a]
    assert host.check_output("ps -o user= -p %s" % pid).strip() == "build-vm-x86"
    assert "-snapshot" in argv and "-no-reboot" in argv
    assert argv[argv.index("-rtc") + 1] == "base=2020-01-01"
    assert argv[argv.index("-cpu") + 1] == "Skylake-Client"


def test_secrets_were_delivered_and_pinned_ssh_works(host):
    out = host.run(PINNED_SSH + " true")
    assert out.rc == 0, out.stderr
    assert "Warning" not in out.stderr and "yes/no" not in out.stderr


def test_guest_host_key_is_the_secret_roots(host):
    guest = host.check_output(PINNED_SSH + " cat /etc/ssh/ssh_host_ed25519_key.pub")
    assert " ".join(guest.split()[:2]) == _guest_key(host)


def test_ssh_config_entry_pins_through_the_alias(host):
    assert host.run("ssh build-vm-x86 true").rc == 0
    # A wrong pinned key is refused: same entry, known_hosts pinning another real key.
    host.run("rm -f /tmp/wrong_key /tmp/wrong_key.pub")
    host.check_output("ssh-keygen -q -t ed25519 -N '' -f /tmp/wrong_key")
    wrong = " ".join(host.file("/tmp/wrong_key.pub").content_string.split()[:2])
    host.check_output("printf '%%s\\n' 'build-vm-x86 %s' > /tmp/wrong_known" % wrong)
    rc, _out, err = _run_ssh(host, "ssh -o UserKnownHostsFile=/tmp/wrong_known build-vm-x86 true")
    assert rc != 0 and "IDENTIFICATION HAS CHANGED" in err.upper(), err


def test_real_offloaded_nix_build_is_signed_by_the_guest(host):
    host.check_output("cat > /root/offload.nix <<'EOF'\n%sEOF" % (DRV % int(time.time())))
    build = host.run("nix-build --max-jobs 0 --no-out-link /root/offload.nix")
    assert build.rc == 0, build.stderr[-3000:]
    out = build.stdout.strip().splitlines()[-1]
    assert out.startswith("/nix/store/")
    assert host.file(out).content_string.startswith("built-in-")
    key_name = host.file(ROOT + "/etc/nix/signing-key.pub").content_string.strip().split(":")[0]
    info = json.loads(host.check_output("nix path-info --json --sigs %s" % out))
    entry = info[0] if isinstance(info, list) else info[out]
    assert any(sig.startswith(key_name + ":") for sig in entry.get("signatures", [])), entry
    verify = host.run("nix store verify --sigs-needed 1 %s" % out)
    assert verify.rc == 0, verify.stderr


def test_only_loopback_listeners_belong_to_qemu_and_no_secrets_port(host):
    listeners = _qemu_listeners(host)
    assert listeners, "QEMU listens nowhere?"
    assert {addr for addr, _port in listeners} == {"127.0.0.1"}, listeners
    assert {port for _addr, port in listeners} == {11022}, listeners   # virtio-serial: no 11044


def test_another_user_cannot_reach_the_secrets_socket(host):
    sock = "/run/build-vm-x86/secrets.sock"
    assert host.file(sock).is_socket
    assert oct(host.file("/run/build-vm-x86").mode) == "0o700"
    out = host.run("runuser -u mallory -- python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); "
                   "s.connect(\"%s\")'" % sock)
    assert out.rc != 0 and "PermissionError" in out.stderr, out.stderr


def test_killed_qemu_is_restarted_and_gets_its_secrets_again(host):
    before = _show(host, UNIT, "MainPID", "NRestarts")
    host.check_output("kill -9 %s" % before["MainPID"])

    def back():
        now = _show(host, UNIT, "MainPID", "NRestarts", "ActiveState")
        if now["ActiveState"] == "active" and now["MainPID"] not in ("0", before["MainPID"]):
            return now
        return None
    now = _wait("restart with secrets delivered", back, 900, host)
    assert int(now["NRestarts"]) == int(before["NRestarts"]) + 1
    # "active" means the secrets arrived; sshd starts right after them in the guest.
    guest = _wait("ssh after the restart",
                  lambda: _run_ssh(host, PINNED_SSH + " cat /etc/ssh/ssh_host_ed25519_key.pub")[1], 300, host)
    assert " ".join(guest.split()[:2]) == _guest_key(host)


def test_guest_without_secrets_reboots_and_the_unit_fails(host):
    host.check_output("systemctl stop %s" % UNIT)       # one guest at a time
    unit = "build-vm-nosecrets.service"
    host.run("systemctl reset-failed %s" % unit)
    host.check_output("systemctl start %s" % unit)

    def failed():
        now = _show(host, unit, "ActiveState", "Result", "NRestarts")
        return now if now["ActiveState"] == "failed" else None
    now = _wait("nosecrets unit to fail", failed, 900, host, unit)
    assert now["Result"] == "start-limit-hit", now
    # Bounded: restart_limit 2 means two boots; the refused third start may count.
    assert 1 <= int(now["NRestarts"]) <= 2, now
    journal = host.check_output("journalctl -u %s --no-pager" % unit)
    assert len(re.findall(r"secret", journal, re.I)) >= 2, journal[-2000:]
    assert "start request repeated too quickly" in journal or "Start request repeated too quickly" in journal
    host.check_output("systemctl start %s" % UNIT)
