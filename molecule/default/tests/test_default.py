"""testinfra checks of the harness smoke scenario (molecule/default)."""

import os

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")


def test_debian_12(host):
    info = host.system_info
    assert info.distribution == "debian"
    assert info.release.split(".")[0] == "12"


def test_systemd_is_pid_1_and_running(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), state


def test_converge_wrote_its_file(host):
    f = host.file("/etc/vmhost-molecule-default")
    assert f.is_file
    assert f.mode == 0o644
    assert "distribution=Debian" in f.content_string
    assert "version=12" in f.content_string
    assert "service_mgr=systemd" in f.content_string


def test_sshd_accepts_keys_only(host):
    cfg = host.run("sshd -T").stdout.lower()
    assert "passwordauthentication no" in cfg
    assert "permitrootlogin without-password" in cfg or "permitrootlogin prohibit-password" in cfg


def test_guest_agent_channel(host):
    assert host.file("/dev/virtio-ports/org.qemu.guest_agent.0").exists
