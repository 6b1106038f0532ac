"""The guest_agent role on a machine that is not a QEMU guest and runs no systemd.

This test machine is exactly that case (PID 1 is not systemd, no virtio port): the role
must install, configure and not fail, skip the service and its handler, and be
idempotent. It writes only the role's own drop-in, which the test removes again.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
DROPIN_DIR = pathlib.Path("/etc/systemd/system/qemu-guest-agent.service.d")
DROPIN = DROPIN_DIR / "vmhost-virt.conf"


def _run_role(extra_vars, check=False):
    fd, result_file = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    play = [{
        "hosts": "localhost", "gather_facts": True,
        "vars": dict({"ansible_python_interpreter": sys.executable}, **extra_vars),
        "tasks": [
            {"name": "Apply the role", "block": [
                {"name": "Include it", "ansible.builtin.include_role": {"name": "vmhost.virt.guest_agent"}}],
             "rescue": [
                 {"name": "Record the failure", "ansible.builtin.set_fact": {
                     "failure": {"task": "{{ ansible_failed_task.name }}", "msg": "{{ ansible_failed_result.msg }}"}}}]},
            {"name": "Save", "check_mode": False, "ansible.builtin.copy": {
                "content": "{{ {'failure': failure | default(None)} | to_json }}", "dest": result_file,
                "mode": "0600"}},
        ]}]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(play, f)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".tmp" / "collections"))
    cmd = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", f.name]
    if check:
        cmd.append("--check")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        saved = json.loads(pathlib.Path(result_file).read_text())
    finally:
        os.unlink(f.name)
        os.unlink(result_file)
    recap = [ln for ln in proc.stdout.splitlines() if ln.startswith("localhost")][-1]
    return saved["failure"], proc.stdout, recap


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


def _status(out, task):
    """The first result word ("ok", "changed", "skipping") under a task's banner."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if (line.startswith("TASK [") or line.startswith("RUNNING HANDLER [")) and (": %s]" % task) in line:
            for following in lines[i + 1:]:
                if following.strip():
                    return following.split(":")[0]
    return None


def _changed(recap):
    """Changed tasks of the role: the recap's count minus the result-saving copy."""
    return int(recap.split("changed=")[1].split()[0]) - 1


def test_no_init_no_device(clean_host):
    failure, out, recap = _run_role({}, check=True)
    assert failure is None, out
    assert not DROPIN.exists(), "check mode wrote the drop-in"
    assert "changed: [localhost]" in out
    failure, out, recap = _run_role({})
    assert failure is None, out
    text = DROPIN.read_text()
    assert "--block-rpcs=guest-exec," in text
    assert oct(DROPIN.stat().st_mode & 0o777) == "0o644"
    # service tasks and the restart handler are skipped without a running systemd
    assert _status(out, "Enable the guest agent") == "skipping"
    assert _status(out, "Start the guest agent where its device exists") == "skipping"
    assert _status(out, "Restart the guest agent") == "skipping"
    first_changed = _changed(recap)
    assert first_changed >= 1
    failure, out, recap = _run_role({})
    assert failure is None, out
    assert _changed(recap) == 0, out
    failure, out, recap = _run_role({}, check=True)
    assert _changed(recap) == 0, out


def test_allow_list_refused_before_any_change(clean_host):
    failure, out, recap = _run_role({"guest_agent_allowed_rpcs": ["guest-get-osinfo"]})
    assert failure is not None, out
    assert failure["task"] == "Refuse an allow-list the agent cannot enforce"
    version = subprocess.run(["/usr/sbin/qemu-ga", "--version"], capture_output=True, text=True,
                             check=True).stdout.split()[-1]
    if tuple(int(x) for x in version.split(".")[:2]) < (8, 0):
        assert "needs qemu-ga 8.0 or newer" in failure["msg"]
        assert version in failure["msg"]
    assert not DROPIN.exists()


def test_bad_variables_refused(clean_host):
    failure, out, recap = _run_role({"guest_agent_blocked_rpcs": ["guest-sync-delimited"]})
    assert failure is not None, out
    assert failure["task"] == "Check the platform and the variables"
    assert "cannot be blocked" in failure["msg"]
    failure, out, recap = _run_role({"guest_agent_log_file": "relative.log"})
    assert failure is not None and "absolute paths" in failure["msg"]
    assert not DROPIN.exists()
