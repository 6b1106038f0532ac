"""testinfra checks of molecule/libvirt on Debian 13: roles libvirt + virtlogd (libvirt 11.3).

Runs after converge, idempotence and side_effect (libvirt_max_clients 4001, the transient
domain ``sitter`` started before a daemon restart and a refused switch to modular daemons).
"""

import os

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("trixie")

VERSION = "virsh -c qemu:///system version"
TCP = "LIBVIRT_AUTH_FILE=%s virsh -c qemu+tcp://127.0.0.1:16529/system version"
MONOLITHIC_SOCKETS = ("libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket",
                      "libvirtd-tcp.socket")


def test_debian_13_with_libvirt_11(host):
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.split(".")[0] == "13"
    assert "libvirt 11." in host.check_output(VERSION)


def test_debian_13_ships_no_modular_daemons(host):
    # the role's automatic mode therefore chose the monolithic daemon
    for binary in ("virtqemud", "virtproxyd", "virtnetworkd"):
        assert not host.file("/usr/sbin/" + binary).exists, binary
    assert not host.file("/etc/libvirt/virtqemud.conf").exists


def test_monolithic_units_enabled_and_running(host):
    assert host.service("libvirtd").is_enabled
    assert host.service("libvirtd").is_running
    for unit in MONOLITHIC_SOCKETS:
        assert host.service(unit).is_enabled, unit
        assert host.service(unit).is_running, unit
    assert not host.service("libvirtd-tls.socket").is_running
    assert not host.service("libvirtd-tls.socket").is_enabled


def test_no_two_socket_units_bind_the_same_address(host):
    units = host.check_output("systemctl list-units --type=socket --state=active --plain "
                              "--no-legend --no-pager | awk '{print $1}'").split()
    seen = {}
    for unit in units:
        for line in host.check_output("systemctl show -p Listen --value %s" % unit).splitlines():
            address = line.rsplit(" (", 1)[0].strip()
            if address:
                assert address not in seen, (address, unit, seen.get(address))
                seen[address] = unit
    assert seen["/run/libvirt/libvirt-sock"] == "libvirtd.socket"
    assert seen["127.0.0.1:16529"] == "libvirtd-tcp.socket"


def test_local_socket_access(host):
    out = host.run(VERSION)
    assert out.rc == 0, out.stderr
    assert "Running hypervisor: QEMU 10." in out.stdout
    assert host.run("runuser -u alice -- %s" % VERSION).rc == 0
    denied = host.run("runuser -u bob -- %s" % VERSION)
    assert denied.rc != 0 and "ermission denied" in denied.stderr, denied.stderr


def test_virsh_over_tcp_with_sasl(host):
    assert host.socket("tcp://127.0.0.1:16529").is_listening
    assert not host.socket("tcp://0.0.0.0:16509").is_listening
    out = host.run(TCP % "/root/libvirt-auth.conf")
    assert out.rc == 0, out.stderr
    assert "Running hypervisor" in out.stdout
    host.run("sed 's/password=.*/password=wrong/' /root/libvirt-auth.conf > /root/libvirt-bad.conf")
    bad = host.run(TCP % "/root/libvirt-bad.conf")
    host.run("rm -f /root/libvirt-bad.conf")
    assert bad.rc != 0


def test_libvirtd_conf_fields_and_extra_settings(host):
    text = host.file("/etc/libvirt/libvirtd.conf").content_string
    for line in ("max_clients = 4001", "keepalive_required = 1", "admin_keepalive_required = 0",
                 "listen_tcp = 1", 'tcp_port = "16529"', "test_shared_knob = 3",
                 'test_libvirtd_only = "mono"'):
        assert line + "\n" in text, line
    # the virtqemud section concerns virtqemud.conf only
    assert "test_virtqemud_only" not in text
    # the running daemon loaded the file (virt-admin asks it)
    limits = host.check_output("virt-admin -c libvirtd:///system srv-clients-info libvirtd")
    assert "4001" in limits, limits


def test_transient_domain_survived_the_restart(host):
    out = host.run("virsh -c qemu:///system domstate sitter")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "running"
    assert host.process.filter(comm="qemu-system-x86")


def test_virtlogd_configuration(host):
    text = host.file("/etc/libvirt/virtlogd.conf").content_string
    for line in ("admin_max_clients = 7", "max_backups = 5", "max_clients = 1024"):
        assert line + "\n" in text, line
    assert host.service("virtlogd.socket").is_running
    # virtlogd reads admin_max_clients when it starts; the role's reload re-executes it
    # and restores its servers (limits included) from its saved state, so the running
    # daemon keeps the limits it started with until its next real start
    # (src/logging/log_daemon.c: virLogDaemonNewPostExecRestart)
    assert host.check_output("virt-admin -c virtlogd:///system srv-list").split().count("admin") == 1
    qemu_conf = host.file("/etc/libvirt/qemu.conf").content_string
    assert 'stdio_handler = "logd"\n' in qemu_conf
    # the domain's console goes through virtlogd
    assert host.file("/var/log/libvirt/qemu/sitter.log").exists
