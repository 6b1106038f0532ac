"""Bad libvirt/virtlogd variables fail the play, naming the variable, before anything changes.

Runs only the roles' `validate` entry points against localhost (connection: local):
they check on the controller and touch no file, so libvirt is never configured here.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: vmhost.virt.{role}
        tasks_from: validate
"""


def _run(tmp_path, role, extra_vars):
    play = tmp_path / "play.yml"
    play.write_text(PLAYBOOK.format(role=role))
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".tmp" / "collections"))
    env["ANSIBLE_NOCOLOR"] = "1"
    cmd = [str(pathlib.Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,",
           "-e", "ansible_python_interpreter=" + sys.executable, "-e", json.dumps(extra_vars), str(play)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


def _snapshot():
    paths = [pathlib.Path("/etc/libvirt"), pathlib.Path("/etc/systemd/system"), pathlib.Path("/etc/default")]
    return {str(p): sorted((str(f), f.stat().st_mtime_ns) for f in p.rglob("*")) if p.exists() else None
            for p in paths}


@pytest.mark.parametrize("role, extra_vars, expected", [
    ("libvirt", {"libvirt_max_clients": "many"}, "libvirt_max_clients"),
    ("libvirt", {"libvirt_auth_tcp": "kerberos"}, "libvirt_auth_tcp"),
    ("libvirt", {"libvirt_log_level": 7}, "libvirt_log_level"),
    ("libvirt", {"libvirt_listen_tcp": True, "libvirt_auth_tcp": "none"}, "libvirt_allow_insecure"),
    ("libvirt", {"libvirt_listen_tls": True, "libvirt_tls_no_verify_certificate": True},
     "libvirt_tls_no_verify_certificate"),
    ("libvirt", {"libvirt_unix_sock_admin_perms": "0777"}, "libvirt_unix_sock_admin_perms"),
    ("libvirt", {"libvirt_tcp_port": "libvirt"}, "libvirt_tcp_port"),
    ("libvirt", {"libvirt_extra_settings": {"max_clients": 3}}, "libvirt_extra_settings.max_clients"),
    ("virtlogd", {"virtlogd_log_level": 7}, "virtlogd_log_level"),
    ("virtlogd", {"virtlogd_max_size": "big"}, "virtlogd_max_size"),
])
def test_bad_variables_fail_naming_the_variable(tmp_path, role, extra_vars, expected):
    before = _snapshot()
    proc = _run(tmp_path, role, extra_vars)
    assert proc.returncode != 0, proc.stdout
    assert expected in proc.stdout, proc.stdout[-3000:]
    assert _snapshot() == before


@pytest.mark.parametrize("role, extra_vars", [
    ("libvirt", {}),
    ("libvirt", {"libvirt_listen_tcp": True, "libvirt_max_clients": "42",
                 "libvirt_listen_tcp_is_unknown_but_ignored": 1}),
    ("libvirt", {"libvirt_listen_tcp": True, "libvirt_auth_tcp": "none", "libvirt_allow_insecure": True}),
    ("virtlogd", {"virtlogd_max_backups": 5}),
])
def test_good_variables_pass(tmp_path, role, extra_vars):
    proc = _run(tmp_path, role, extra_vars)
    assert proc.returncode == 0, proc.stdout[-3000:]
