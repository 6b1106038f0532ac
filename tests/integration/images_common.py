# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared helpers for the disk_image / partition_table integration tests."""
import json
import os
import subprocess
import sys
import tempfile

from ansible_local import ansible_env

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_play(play, check=False, diff=False, env=None, verbosity=0, prefix=()):
    """Run ``play`` (a list of plays) with ansible-playbook on localhost; return the process.

    ``prefix`` is put before the command (e.g. ``["faketime", "2031-01-01"]``)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        json.dump(play, handle)
    cmd = list(prefix) + [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                          "-i", "localhost,", "-c", "local",
                          "-e", "ansible_python_interpreter=" + sys.executable, handle.name]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if verbosity:
        cmd.append("-" + "v" * verbosity)
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, env=ansible_env(env), check=False)
    finally:
        os.unlink(handle.name)


def run_module(module, args, check=False, diff=False, env=None, verbosity=0, output=None, prefix=()):
    """Run vmhost.virt.<module> on localhost through ansible-playbook; return its result.

    With ``output`` (a list), ansible-playbook's stdout and stderr are appended to it
    (tests grep ``-vvv`` output for secrets)."""
    fd, result_file = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    play = [{"hosts": "localhost", "gather_facts": False,
             "tasks": [{"name": "module", "vmhost.virt." + module: args,
                        "register": "out", "ignore_errors": True},
                       {"name": "save", "ansible.builtin.copy": {
                           "content": "{{ out | to_json }}", "dest": result_file},
                        "check_mode": False, "diff": False, "no_log": True}]}]
    proc = run_play(play, check, diff, env, verbosity, prefix)
    if output is not None:
        output.extend([proc.stdout, proc.stderr])
    try:
        with open(result_file) as handle:
            return json.load(handle)
    except ValueError:
        raise AssertionError("ansible-playbook saved no result:\n%s\n%s"
                             % (proc.stdout[-3000:], proc.stderr[-2000:]))
    finally:
        os.unlink(result_file)
