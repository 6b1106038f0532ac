# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared helpers for the disk_image / partition_table integration tests."""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

# One way to run a module through Ansible for every integration test (the conftest fixture
# ansible_module wraps the same functions); re-exported for the image tests.
from ansible_local import ansible_env, run_module, run_play

__all__ = ["ansible_env", "forged_raw", "module_result", "run_module", "run_play", "sha256_of",
           "sigkill_rounds", "start_module"]

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sha256_of(path):
    """Hex SHA-256 of the file at ``path`` (read in 1 MiB blocks)."""
    import hashlib
    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


MODULES = "ansible_collections.vmhost.virt.plugins.modules."


def start_module(module, args, directory):
    """Start vmhost.virt.<module> directly (as Ansible runs it) in a process group of its own,
    so that a test can SIGKILL it and every tool it started; returns the Popen."""
    fd, args_file = tempfile.mkstemp(prefix="args-", suffix=".json", dir=str(directory))
    with os.fdopen(fd, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    return subprocess.Popen([sys.executable, "-m", MODULES + module, args_file],
                            env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def module_result(proc):
    """Wait for a process from :func:`start_module`; its parsed JSON result."""
    stdout, stderr = proc.communicate()
    try:
        return json.loads(stdout)
    except ValueError:
        raise AssertionError("the module printed no result (rc %s): %s %s"
                             % (proc.returncode, stdout[-2000:], stderr[-2000:]))


def sigkill_rounds(start, check, full_seconds, rounds=30):
    """Start a run with ``start(round)`` ``rounds`` times and SIGKILL its process group at a
    random point within ``full_seconds`` (the time a whole run takes); ``check(round)`` then
    asserts the target is whole.  Returns how many runs were killed before they finished.
    VMHOST_TEST_SEED fixes the random points."""
    import random
    import signal
    import time
    rng = random.Random(int(os.environ.get("VMHOST_TEST_SEED", "0")) or None)
    kills = 0
    for round_ in range(rounds):
        proc = start(round_)
        time.sleep(rng.uniform(0.05, 1.0) * full_seconds)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate()
        check(round_)
    return kills


def forged_raw(directory, size=4 << 20):
    """A raw guest image whose first bytes a guest wrote as a qcow2 header naming a host file
    (``directory``/host-secret) as its backing file: ``(image, secret)`` paths."""
    from ansible_collections.vmhost.virt.plugins.module_utils import qemu_img
    directory = str(directory)
    secret = os.path.join(directory, "host-secret")
    with open(secret, "wb") as handle:
        handle.write(b"root:HOSTSECRET-1:19000:0:99999:7:::\n" * 100)
    evil = os.path.join(directory, "evil.qcow2")
    qemu_img.create(evil, "qcow2", "1M", secret, "raw")
    raw = os.path.join(directory, "guest.raw")
    with open(evil, "rb") as source, open(raw, "wb") as handle:
        handle.write(source.read())
        handle.truncate(size)
    os.unlink(evil)
    return pathlib.Path(raw), pathlib.Path(secret)
