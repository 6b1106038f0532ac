"""testinfra checks of molecule/site: what playbooks/site.yml (run as vmhost.virt.site)
left on the VM host (site-vm: vm_hosts, build_hosts, guests) and on the nspawn build host
(site-build: build_hosts). Runs after converge and idempotence."""

import json
import os

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

MISC = "/proc/sys/fs/binfmt_misc"
VM_ROOT = "/etc/vmhost/build-vms/site"


def _only(host, name):
    if host.backend.get_hostname() != name:
        pytest.skip("checked on %s only" % name)


def test_libvirtd_and_virtlogd_configured_and_reachable(host):
    _only(host, "site-vm")
    out = host.run("virsh -c qemu:///system version")
    assert out.rc == 0, out.stderr
    assert "Running hypervisor" in out.stdout
    assert "libvirt" in host.user("alice").groups
    out = host.run("runuser -u alice -- virsh -c qemu:///system version")
    assert out.rc == 0, out.stderr
    conf = host.file("/etc/libvirt/libvirtd.conf").content_string
    assert 'unix_sock_group = "libvirt"\n' in conf
    assert any("Ansible managed" in line for line in conf.splitlines()[:3])
    assert "max_backups = 4\n" in host.file("/etc/libvirt/virtlogd.conf").content_string
    assert host.service("virtlogd.socket").is_running


def test_vm_host_registers_its_platforms_and_the_build_vms(host):
    """riscv64 from vm_hosts' qemu_binfmt_platforms, aarch64 from the declared build VM's
    systems; x86_64 (the host's own family) never."""
    _only(host, "site-vm")
    for platform in ("riscv64", "aarch64"):
        entry = host.file("%s/qemu-%s" % (MISC, platform)).content_string.splitlines()
        assert entry[0] == "enabled", entry
        assert "interpreter /usr/bin/qemu-%s-static" % platform in entry
        assert "flags: PF" in entry
        assert host.file("/etc/binfmt.d/qemu-%s.conf" % platform).exists
    assert not host.file(MISC + "/qemu-x86_64").exists
    assert not host.file(MISC + "/qemu-i386").exists


def test_guest_agent_runs_on_the_guest(host):
    _only(host, "site-vm")
    assert host.service("qemu-guest-agent").is_running


def test_build_vm_declared_with_keys_unit_and_offload_entries(host):
    unit = host.file("/etc/systemd/system/build-vm-site.service")
    assert unit.exists
    assert "qemu-system-x86_64" in unit.content_string
    # auto_start: false -> installed, neither enabled nor started
    assert not host.service("build-vm-site.service").is_enabled
    assert not host.service("build-vm-site.service").is_running
    for key in ("etc/ssh/ssh_host_ed25519_key", "etc/nix/signing-key.sec"):
        f = host.file("%s/%s" % (VM_ROOT, key))
        assert f.exists and f.user == "root" and f.mode & 0o077 == 0, key
    machines = host.file("/etc/nix/machines").content_string
    assert any("x86_64-linux,aarch64-linux" in line for line in machines.splitlines()), machines
    state = json.loads(host.file("/var/lib/vmhost-virt/build_vm.json").content_string)
    assert state["managed"] == ["site"]


def test_container_build_host_leaves_the_kernel_table_alone(host):
    """site_build_vm_binfmt: false on the container: nothing persisted for aarch64."""
    _only(host, "site-build")
    assert not host.file("/etc/binfmt.d/qemu-aarch64.conf").exists
