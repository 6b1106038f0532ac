"""testinfra checks of molecule/libvirt on Debian 12 (libvirt 9.0, in systemd-nspawn).

Runs after converge, idempotence and side_effect (which set libvirt_max_clients to 4001).
"""

import os

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("bookworm")

VERSION = "virsh -c qemu:///system version"


def _virsh_as(host, user, cmd=VERSION):
    return host.run("runuser -u %s -- %s" % (user, cmd))


def test_root_reaches_the_daemon(host):
    out = host.run(VERSION)
    assert out.rc == 0, out.stderr
    assert "Running hypervisor" in out.stdout


def test_socket_group_member_reaches_the_daemon(host):
    assert "libvirt" in host.user("alice").groups
    out = _virsh_as(host, "alice")
    assert out.rc == 0, out.stderr


def test_non_member_is_refused(host):
    assert "libvirt" not in host.user("bob").groups
    out = _virsh_as(host, "bob")
    assert out.rc != 0
    assert "ermission denied" in out.stderr, out.stderr


def test_socket_files_have_the_configured_group_and_modes(host):
    host.run(VERSION)
    for name, mode in (("libvirt-sock", 0o770), ("libvirt-sock-ro", 0o777),
                       ("libvirt-admin-sock", 0o700)):
        f = host.file("/run/libvirt/" + name)
        assert f.is_socket, name
        assert f.user == "root"
        assert f.group == "libvirt", name
        assert f.mode == mode, (name, oct(f.mode))


def test_libvirtd_conf_holds_the_configured_values(host):
    text = host.file("/etc/libvirt/libvirtd.conf").content_string
    for line in ("max_clients = 4001", 'log_filters = "3:remote 4:event 3:util.json"',
                 "listen_tcp = 1", 'listen_addr = "127.0.0.1"', 'tcp_port = "16519"',
                 'unix_sock_group = "libvirt"', 'unix_sock_rw_perms = "0770"',
                 'unix_sock_admin_perms = "0700"', 'auth_tcp = "sasl"',
                 'sasl_allowed_username_list = ["vmtest"]', "tls_no_verify_certificate = 0",
                 "keepalive_required = 0", '# host_uuid = ""'):
        assert line + "\n" in text, line


def test_libvirtd_runs_with_that_configuration(host):
    assert host.run(VERSION).rc == 0
    assert host.service("libvirtd").is_running
    # virt-admin asks the running daemon what it loaded.
    # libvirt 9 reports filters as globs: 3:*remote* 4:*event* ...
    filters = host.check_output("virt-admin -c libvirtd:///system daemon-log-filters").replace("*", "")
    assert "3:remote 4:event 3:util.json" in filters
    limits = host.check_output("virt-admin -c libvirtd:///system srv-clients-info libvirtd")
    assert "4001" in limits, limits
    journal = host.check_output("journalctl -b -u libvirtd.service -p warning -o cat --no-pager")
    for word in ("config", "unknown", "must be"):
        assert word not in journal.lower(), journal


def test_never_listen_flag_with_socket_activation(host):
    args = [line for line in host.file("/etc/default/libvirtd").content_string.splitlines()
            if line.startswith("LIBVIRTD_ARGS=")]
    assert args == ['LIBVIRTD_ARGS="--timeout 120"']
    cmdline = host.check_output("cat /proc/$(systemctl show -p MainPID --value libvirtd)/cmdline | tr '\\0' ' '")
    assert "--listen" not in cmdline


def test_tcp_socket_listens_on_the_configured_address_and_port(host):
    assert host.service("libvirtd-tcp.socket").is_enabled
    assert host.service("libvirtd-tcp.socket").is_running
    assert host.socket("tcp://127.0.0.1:16519").is_listening
    assert not host.socket("tcp://0.0.0.0:16509").is_listening
    assert not host.service("libvirtd-tls.socket").is_running


def test_virsh_over_tcp_with_sasl(host):
    out = host.run("LIBVIRT_AUTH_FILE=/root/libvirt-auth.conf virsh -c qemu+tcp://127.0.0.1:16519/system version")
    assert out.rc == 0, out.stderr
    assert "Running hypervisor" in out.stdout


def test_tcp_refuses_a_wrong_password(host):
    host.run("sed 's/password=.*/password=wrong/' /root/libvirt-auth.conf > /root/libvirt-bad.conf")
    out = host.run("LIBVIRT_AUTH_FILE=/root/libvirt-bad.conf virsh -c qemu+tcp://127.0.0.1:16519/system version")
    host.run("rm -f /root/libvirt-bad.conf")
    assert out.rc != 0


def test_virtlogd_runs_with_its_configuration(host):
    text = host.file("/etc/libvirt/virtlogd.conf").content_string
    for line in ("log_level = 3", 'log_filters = "3:remote 4:event 2:logging"',
                 'log_outputs = "3:syslog:virtlogd"', "max_clients = 1024",
                 "max_size = 2097152", "max_backups = 5"):
        assert line + "\n" in text, line
    assert host.service("virtlogd.socket").is_running
    # Connecting to virtlogd's admin socket starts it (socket activation).
    filters = host.check_output("virt-admin -c virtlogd:///system daemon-log-filters").replace("*", "")
    assert "3:remote 4:event 2:logging" in filters
    assert host.service("virtlogd").is_running


def test_qemu_conf_only_stdio_handler_changed(host):
    text = host.file("/etc/libvirt/qemu.conf").content_string
    assert 'stdio_handler = "logd"\n' in text
    assert text.count("stdio_handler") == 1
    # The rest of the shipped, commented file (970 lines in libvirt 9.0) is still there.
    assert "#vnc_listen" in text and len(text.splitlines()) > 900
