"""The build_vm role refuses bad machine lists before it changes anything.

Runs the role in check mode on this machine (no systemd as PID 1): every bad entry must
fail the role's assert task, with a message naming the VM and the field, while no task
reports a change. A valid list must pass validation and predict changes without
writing anything.
"""
import os
import socket

import pytest

ASSERT_TASK = "Check every build VM entry (names the VM and the field of each problem)"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the role stats and probes as root")


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _run(ansible_module, machines, tmp_path):
    """The role in check mode; return (failure or None, how many tasks changed, records)."""
    play = [{
        "hosts": "localhost", "gather_facts": True,
        "vars": {"build_vm_machines": machines,
                 "build_vm_nix": "never", "build_vm_guix": "never", "build_vm_manage_packages": False,
                 "build_vm_state_file": str(tmp_path / "state.json"),
                 "build_vm_ssh_config_file": str(tmp_path / "ssh.conf"),
                 "build_vm_known_hosts_file": str(tmp_path / "known_hosts")},
        "tasks": [{"name": "Include it", "ansible.builtin.include_role": {"name": "vmhost.virt.build_vm"}}]}]
    records, proc = ansible_module.recorded(play, check=True)
    failed = [r for r in records if r["status"] == "failed"]
    assert proc.returncode == (2 if failed else 0), proc.stdout[-3000:] + proc.stderr[-3000:]
    failure = {"task": failed[0]["task"], "msg": failed[0]["msg"]} if failed else None
    return failure, sum(1 for r in records if r["changed"]), records


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "guest.qcow2"
    path.write_bytes(b"\0" * 4096)
    return str(path)


def _bad_cases(image, taken):
    port = _free_port()
    return [
        ([{"name": "a", "image": image, "ssh_port": port, "systems": ["mips-linux"]}],
         "VM 'a'", "field 'systems'", "unknown system type 'mips-linux'"),
        ([{"name": "a", "image": image, "ssh_port": 70000}], "VM 'a'", "field 'ssh_port'", "out of range"),
        ([{"name": "a", "image": image, "ssh_port": taken}], "VM 'a'", "field 'ssh_port'",
         "port %d is already listening on this host" % taken),
        ([{"name": "a", "image": image + ".missing", "ssh_port": port}], "VM 'a'", "field 'image'",
         "does not exist on the host"),
        ([{"name": "a", "image": image, "ssh_port": port}, {"name": "b", "image": image, "ssh_port": port}],
         "VM 'b'", "field 'ssh_port'", "already used by build_vm_machines[0] (VM 'a')"),
        ([{"name": "Not/Valid", "image": image, "ssh_port": port}], "build_vm_machines[0]", "field 'name'",
         "not a valid unit/user name"),
        ([{"name": "a" * 30, "image": image, "ssh_port": port}], "build_vm_machines[0]", "field 'name'",
         "more than 32"),
    ]


def test_bad_inputs_fail_before_any_change(image, tmp_path, ansible_module):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    taken = listener.getsockname()[1]
    try:
        for index, (machines, vm, field, words) in enumerate(_bad_cases(image, taken)):
            case_dir = tmp_path / ("case%d" % index)
            case_dir.mkdir()
            failure, changed, out = _run(ansible_module, machines, case_dir)
            assert failure is not None, "case %d passed validation:\n%s" % (index, out[-2000:])
            assert failure["task"] == ASSERT_TASK, failure
            assert vm in failure["msg"] and field in failure["msg"] and words in failure["msg"], failure["msg"]
            assert changed == 0, out[-2000:]
            assert not (case_dir / "state.json").exists()
    finally:
        listener.close()


def test_valid_list_passes_validation_and_writes_nothing_in_check_mode(image, tmp_path, ansible_module):
    name = "chk%d" % (os.getpid() % 100000)
    machines = [{"name": name, "image": image, "ssh_port": _free_port(), "accelerator": "tcg"}]
    failure, changed, out = _run(ansible_module, machines, tmp_path)
    assert failure is None, failure
    assert changed > 0
    assert "Write each build VM's systemd unit" in [r["task"] for r in out], out
    for path in ("/etc/systemd/system/build-vm-%s.service" % name, "/etc/vmhost/build-vms/%s" % name,
                 str(tmp_path / "state.json"), str(tmp_path / "ssh.conf")):
        assert not os.path.exists(path), path
