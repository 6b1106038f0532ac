"""Harness smoke checks on every instance (VM and container, both releases)."""

import testinfra.utils.ansible_runner

from conftest import inventory

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(inventory()).get_hosts("all")


def test_release_is_the_recipes(host, release):
    suite, version = release
    info = host.system_info
    assert info.distribution == "debian"
    assert info.release.split(".")[0] == version
    assert info.codename == suite


def test_systemd_is_pid_1_and_running(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), state


def test_instance_kind_is_the_platforms(host, harness):
    virt = host.run("systemd-detect-virt").stdout.strip()
    if harness["kind"] == "nspawn":
        assert virt == "systemd-nspawn"
    else:
        assert virt == ("kvm" if harness["accel"] == "kvm" else "qemu"), virt


def test_converge_wrote_its_file(host, release):
    f = host.file("/etc/vmhost-molecule-default")
    assert f.is_file
    assert f.mode == 0o644
    assert "distribution=Debian" in f.content_string
    assert "version=%s" % release[1] in f.content_string
    assert "service_mgr=systemd" in f.content_string


def test_sshd_accepts_keys_only(host):
    cfg = host.run("sshd -T").stdout.lower()
    assert "passwordauthentication no" in cfg
    assert "permitrootlogin without-password" in cfg or "permitrootlogin prohibit-password" in cfg
