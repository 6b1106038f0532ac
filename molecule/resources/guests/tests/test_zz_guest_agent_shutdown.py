"""guest-shutdown from the host: check mode sends nothing, a real run powers the VM off.

Last file of the scenario on purpose (molecule runs the files in name order): the VM is
gone afterwards (destroy copes with that). guest-shutdown is on the Debian 13 allow-list.
"""

import time

import testinfra.utils.ansible_runner

from conftest import inventory

from ansible_collections.vmhost.virt.plugins.module_utils import qga  # noqa: E402
from tests.harness import api  # noqa: E402
from test_guest_agent_host import _playbook  # noqa: E402

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(inventory()).get_hosts("vms")


def test_shutdown_from_the_host_runs_last(host):
    info = api.instance_info(host.backend.get_hostname())
    sock, pid = info["qga_socket"], info["pid"]
    assert api.pid_alive(pid)
    tasks = [{"name": "Shut the guest down", "register": "down",
              "vmhost.virt.guest_agent_exec": {"socket": sock, "command": "guest-shutdown",
                                               "timeout": 60}},
             {"name": "Show", "ansible.builtin.debug": {"var": "down"}}]
    check = _playbook(tasks, ["--check"])
    assert check.returncode == 0, check.stdout + check.stderr
    assert '"sent": false' in check.stdout and "changed: [localhost]" in check.stdout
    assert qga.call(sock, "guest-ping", timeout=30) == {}, "check mode must not shut down"
    real = _playbook(tasks)
    assert real.returncode == 0, real.stdout + real.stderr
    assert '"sent": true' in real.stdout and "changed: [localhost]" in real.stdout
    deadline = time.monotonic() + 300
    while api.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(1)
    assert not api.pid_alive(pid), "QEMU (pid %d) still runs 300 s after guest-shutdown" % pid
