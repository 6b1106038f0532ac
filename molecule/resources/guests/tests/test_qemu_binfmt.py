"""testinfra checks of the qemu_binfmt role on the VMs (binfmt_misc is the kernel's),
run after the side effect's reboot: the handlers came back from our /etc/binfmt.d files
and a real arm64 busybox runs through them (Debian 12: qemu-user-static 7.2; Debian 13:
qemu-user 10.0, whose -static names are links)."""
import testinfra.utils.ansible_runner

from conftest import inventory

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(inventory()).get_hosts("vms")


def test_the_vm_did_reboot(host):
    before = host.file("/var/tmp/boot-id-before-reboot")
    assert before.exists, "the side effect did not run"
    now = host.file("/proc/sys/kernel/random/boot_id").content_string.strip()
    assert now and now != before.content_string.strip()


def test_arm64_program_runs_after_reboot(host):
    res = host.run("/opt/arm64/bin/busybox uname -m")
    assert res.rc == 0, res.stderr
    assert res.stdout.strip() == "aarch64"
    echo = host.run("/opt/arm64/bin/busybox echo hello-from-arm64")
    assert echo.stdout.strip() == "hello-from-arm64"


def test_handlers_are_ours_not_debians(host):
    for platform in ("aarch64", "riscv64"):
        entry = host.file("/proc/sys/fs/binfmt_misc/qemu-%s" % platform).content_string.splitlines()
        assert "enabled" in entry
        assert "interpreter /usr/bin/qemu-%s-static" % platform in entry
        assert "flags: PF" in entry


def test_host_family_not_registered(host):
    assert not host.file("/proc/sys/fs/binfmt_misc/qemu-x86_64").exists
    assert not host.file("/proc/sys/fs/binfmt_misc/qemu-i386").exists


def test_persistent_files(host):
    conf = host.file("/etc/binfmt.d/qemu-aarch64.conf")
    assert conf.is_file and conf.mode == 0o644 and conf.user == "root"
    rule = [line for line in conf.content_string.splitlines() if line.startswith(":")]
    assert len(rule) == 1 and rule[0].startswith(":qemu-aarch64:M:0:\\x7f\\x45\\x4c\\x46")
    assert rule[0].endswith(":/usr/bin/qemu-aarch64-static:PF")


def test_systemd_binfmt_ran_at_boot(host):
    svc = host.service("systemd-binfmt.service")
    assert svc.is_running or host.run("systemctl is-active systemd-binfmt.service").stdout.strip() == "active"
    assert host.run("systemctl is-enabled systemd-binfmt.service").stdout.strip() in ("static", "enabled")
