# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way integration tests run Ansible on localhost (the ``ansible_module`` fixture of
conftest.py wraps :func:`run_module`): the environment, a play, and a module whose
registered result comes back parsed (never by reading ansible-playbook's stdout)."""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOP = str(ROOT)
# `make collection` links this tree here; an explicit ANSIBLE_COLLECTIONS_PATH wins.
COLL = str(ROOT / ".tmp" / "collections")


def ansible_env(extra=None):
    """os.environ plus quiet, deterministic Ansible settings and the collection path.

    SOURCE_DATE_EPOCH is dropped so a module's own default is what a test sees
    unless the test passes one in ``extra``.
    """
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", COLL)
    env.setdefault("PYTHONPATH", COLL)
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="False",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="False", ANSIBLE_RETRY_FILES_ENABLED="False",
               ANSIBLE_HOST_KEY_CHECKING="False")
    env.pop("SOURCE_DATE_EPOCH", None)
    env.update(extra or {})
    return env


def ansible_bin(name):
    """ansible-playbook (or another Ansible command) of the Python running the tests."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.exists(path) else name


def run_play(play, check=False, diff=False, env=None, verbosity=0, prefix=(), extra_args=(), timeout=None):
    """Run ``play`` (a list of plays) with ansible-playbook on localhost; return the process.

    ``prefix`` is put before the command (e.g. ``["faketime", "2031-01-01"]``)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        json.dump(play, handle)
    cmd = list(prefix) + [ansible_bin("ansible-playbook"), "-i", "localhost,", "-c", "local",
                          "-e", "ansible_python_interpreter=" + sys.executable, handle.name]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if verbosity:
        cmd.append("-" + "v" * verbosity)
    cmd.extend(extra_args)
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              env=ansible_env(env), check=False, timeout=timeout)
    finally:
        os.unlink(handle.name)


def run_module_steps(module, steps, diff=False, env=None, verbosity=0, output=None, prefix=()):
    """Run vmhost.virt.<module> once per ``(args, check_mode)`` step, in order, in one
    playbook on localhost; return the list of its registered results (failed steps
    included).  A step that is a dict is a plain task run in between (e.g. to corrupt a
    file); it has no result.

    With ``output`` (a list), ansible-playbook's stdout and stderr are appended to it
    (tests grep ``-vvv`` output for secrets)."""
    fd, result_file = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    tasks, registered = [], []
    for i, step in enumerate(steps):
        if isinstance(step, dict):
            tasks.append(dict(step, name=step.get("name", "helper step %d" % i)))
            continue
        args, check = step
        registered.append("out%d" % i)
        tasks.append({"name": "module, step %d" % i, "vmhost.virt." + module: args, "check_mode": bool(check),
                      "diff": bool(diff), "register": "out%d" % i, "ignore_errors": True})
    tasks.append({"name": "save", "ansible.builtin.copy": {
        "content": "{{ [%s] | to_json }}" % ", ".join(registered),
        "dest": result_file, "mode": "0600"}, "check_mode": False, "diff": False, "no_log": True})
    proc = run_play([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}],
                    env=env, verbosity=verbosity, prefix=prefix)
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


def run_recorded(play, check=False, env=None, timeout=600):
    """Run ``play`` and return ``(records, process)``: one record per task result, in order,
    ``{task, role, action, status, changed, msg}`` with ``status`` ok/changed/failed/skipped/
    unreachable (tests/integration/callback_plugins/vmhost_record.py writes them)."""
    fd, record_file = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    extra = {"ANSIBLE_CALLBACK_PLUGINS": os.path.join(os.path.dirname(os.path.abspath(__file__)), "callback_plugins"),
             "ANSIBLE_CALLBACKS_ENABLED": "vmhost_record", "VMHOST_RECORD_FILE": record_file}
    extra.update(env or {})
    try:
        proc = run_play(play, check=check, env=extra, timeout=timeout)
        with open(record_file) as handle:
            text = handle.read()
        if not text:
            raise AssertionError("ansible-playbook recorded nothing:\n%s\n%s"
                                 % (proc.stdout[-3000:], proc.stderr[-2000:]))
        return json.loads(text), proc
    finally:
        os.unlink(record_file)


def run_module(module, args, check=False, diff=False, env=None, verbosity=0, output=None, prefix=()):
    """Run vmhost.virt.<module> on localhost through ansible-playbook; return its result."""
    return run_module_steps(module, [(args, check)], diff, env, verbosity, output, prefix)[0]
