"""testinfra checks of the guest_agent role on every instance (VM and container).

The agent's options depend on the release: Debian 13's qemu-ga 10.0 runs with the
allow-list (--allow-rpcs), Debian 12's 7.2 with the default block-list (converge has
already checked that it refuses an allow-list). Host-side checks through the VM's
agent socket are in test_guest_agent_host.py.
"""

import testinfra.utils.ansible_runner

from conftest import inventory

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(inventory()).get_hosts("all")

DROPIN = "/etc/systemd/system/qemu-guest-agent.service.d/vmhost-virt.conf"
DEFAULT_BLOCKED = ["guest-exec", "guest-exec-status", "guest-file-open", "guest-file-close",
                   "guest-file-read", "guest-file-write", "guest-file-seek", "guest-file-flush"]
HANDSHAKE = ["guest-sync-delimited", "guest-sync", "guest-ping"]
# molecule.yml: test_guest_agent_allowed_rpcs
ALLOWED = ["guest-get-osinfo", "guest-info", "guest-network-get-interfaces", "guest-shutdown"]


def rpc_option(version):
    """The one RPC filter option the role must give qemu-ga on this release."""
    if int(version) >= 13:
        return "--allow-rpcs=" + ",".join(HANDSHAKE + ALLOWED)
    return "--block-rpcs=" + ",".join(DEFAULT_BLOCKED)


def test_package_installed(host):
    assert host.package("qemu-guest-agent").is_installed


def test_dropin_configures_the_agent(host, release):
    f = host.file(DROPIN)
    assert f.is_file
    assert f.user == "root" and f.mode == 0o644
    text = f.content_string
    assert "ExecStart=\n" in text
    assert "--path=/dev/virtio-ports/org.qemu.guest_agent.0" in text
    assert "--statedir=/run/qemu-ga" in text
    assert "--logfile=/var/log/qemu-ga.log" in text
    assert rpc_option(release[1]) in text
    other = "--block-rpcs=" if int(release[1]) >= 13 else "--allow-rpcs="
    assert other not in text
    assert "RuntimeDirectory=qemu-ga" in text


def test_agent_is_enabled(host):
    assert host.run("systemctl is-enabled qemu-guest-agent.service").stdout.strip() in (
        "enabled", "static", "indirect")


def test_agent_runs_where_its_channel_exists(host, harness, release):
    """VM with the channel: running with the role's options. Container (no channel):
    configured but not started, and not failed."""
    svc = host.service("qemu-guest-agent")
    if harness["kind"] == "nspawn":
        assert not host.file("/dev/virtio-ports/org.qemu.guest_agent.0").exists
        assert not svc.is_running
        assert host.run("systemctl is-failed qemu-guest-agent.service").stdout.strip() != "failed"
        return
    assert host.file("/dev/virtio-ports/org.qemu.guest_agent.0").exists
    assert svc.is_running
    pid = host.run("systemctl show -P MainPID qemu-guest-agent.service").stdout.strip()
    assert pid not in ("", "0")
    argv = host.file("/proc/%s/cmdline" % pid).content.split(b"\0")
    assert rpc_option(release[1]).encode() in argv
    assert b"--statedir=/run/qemu-ga" in argv
    state = host.file("/run/qemu-ga")
    assert state.is_directory and state.mode == 0o700
    assert host.file("/var/log/qemu-ga.log").is_file
