"""The guest_agent role on a machine that is not a QEMU guest and runs no systemd.

This test machine is exactly that case (PID 1 is not systemd, no virtio port): the role
must install, configure and not fail, skip the service and its handler, and be
idempotent. It writes only the role's own drop-in, which the test removes again.
"""
import os
import pathlib
import shutil
import subprocess

import pytest

DROPIN_DIR = pathlib.Path("/etc/systemd/system/qemu-guest-agent.service.d")
DROPIN = DROPIN_DIR / "vmhost-virt.conf"


def _run_role(ansible_module, extra_vars, check=False):
    """Apply the role; return (failure or None, records of the role's tasks)."""
    play = [{"hosts": "localhost", "gather_facts": True, "vars": extra_vars,
             "tasks": [{"name": "Include it", "ansible.builtin.include_role": {"name": "vmhost.virt.guest_agent"}}]}]
    records, proc = ansible_module.recorded(play, check=check)
    failed = [r for r in records if r["status"] == "failed"]
    assert proc.returncode == (2 if failed else 0), proc.stdout[-3000:] + proc.stderr[-2000:]
    failure = {"task": failed[0]["task"], "msg": failed[0]["msg"]} if failed else None
    return failure, [r for r in records if (r["role"] or "").endswith("guest_agent")]


@pytest.fixture
def clean_host():
    if os.geteuid() != 0:
        pytest.skip("needs root: the role installs a package and writes under /etc")
    if pathlib.Path("/run/systemd/system").exists():
        pytest.skip("this machine runs systemd: the no-init case is tested where PID 1 is not systemd")
    if DROPIN.exists():
        pytest.skip("%s already exists here; not touching it" % DROPIN)
    if pathlib.Path("/dev/virtio-ports/org.qemu.guest_agent.0").exists():
        pytest.skip("this machine is a QEMU guest with an agent port")
    if shutil.which("qemu-ga") is None and not os.path.exists("/usr/sbin/qemu-ga"):
        pytest.fail("qemu-guest-agent is missing: `make deps` installs it (bindep.txt)")
    existed = DROPIN_DIR.exists()
    yield
    if DROPIN.exists():
        DROPIN.unlink()
    if not existed and DROPIN_DIR.exists():
        DROPIN_DIR.rmdir()


def _status(records, task):
    """The status ("ok", "changed", "skipped", "failed") of the role's task or handler ``task``."""
    found = [r["status"] for r in records if r["task"] == task]
    return found[0] if found else None


def _changed(records):
    """How many of the role's tasks changed something."""
    return sum(1 for r in records if r["changed"])


def test_no_init_no_device(clean_host, ansible_module):
    failure, out = _run_role(ansible_module, {}, check=True)
    assert failure is None, out
    assert not DROPIN.exists(), "check mode wrote the drop-in"
    assert _changed(out) >= 1, out
    failure, out = _run_role(ansible_module, {})
    assert failure is None, out
    text = DROPIN.read_text()
    assert "--block-rpcs=guest-exec," in text
    assert oct(DROPIN.stat().st_mode & 0o777) == "0o644"
    # service tasks and the restart handler are skipped without a running systemd
    assert _status(out, "Enable the guest agent and start it where its device exists") == "skipped"
    assert _status(out, "Restart the guest agent") == "skipped"
    first_changed = _changed(out)
    assert first_changed >= 1
    failure, out = _run_role(ansible_module, {})
    assert failure is None, out
    assert _changed(out) == 0, out
    failure, out = _run_role(ansible_module, {}, check=True)
    assert _changed(out) == 0, out


def test_allow_list_refused_before_any_change(clean_host, ansible_module):
    failure, out = _run_role(ansible_module, {"guest_agent_allowed_rpcs": ["guest-get-osinfo"]})
    assert failure is not None, out
    assert failure["task"] == "Refuse an allow-list the agent cannot enforce"
    version = subprocess.run(["/usr/sbin/qemu-ga", "--version"], capture_output=True, text=True,
                             check=True).stdout.split()[-1]
    if tuple(int(x) for x in version.split(".")[:2]) < (8, 0):
        assert "needs qemu-ga 8.0 or newer" in failure["msg"]
        assert version in failure["msg"]
    assert not DROPIN.exists()


def test_bad_variables_refused(clean_host, ansible_module):
    failure, out = _run_role(ansible_module, {"guest_agent_blocked_rpcs": ["guest-sync-delimited"]})
    assert failure is not None, out
    assert failure["task"] == "Check the platform and the variables"
    assert "cannot be blocked" in failure["msg"]
    failure, out = _run_role(ansible_module, {"guest_agent_log_file": "relative.log"})
    assert failure is not None and "absolute paths" in failure["msg"]
    assert not DROPIN.exists()
