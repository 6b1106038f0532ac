# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding 5: no option that can carry a secret reaches `-vvv` output.

Each test plants a unique secret, runs the module (or the libvirt role's TLS
tasks) with ansible-playbook -vvv and greps everything Ansible printed."""
import uuid


def _secret():
    return "PLANTED-%s" % uuid.uuid4().hex


def test_iso9660_cidata_and_content_not_logged(tmp_path, ansible_module):
    key, password, body = _secret(), _secret(), _secret()
    out = []
    res = ansible_module("iso9660", {
        "path": str(tmp_path / "seed.iso"),
        "content": [{"dest": "/secret.txt", "content": body}],
        "cidata": {"user_data": {"users": [{"name": "u", "ssh_authorized_keys": [key],
                                            "passwd": password}]},
                   "meta_data": {"instance-id": "i-1"}}}, verbosity=3, output=out)
    assert res["changed"] and not res.get("failed"), res
    text = "".join(out)
    assert "module_args" in text              # -vvv printed the invocation
    for secret in (key, password, body):
        assert secret not in text


def test_guest_agent_exec_arguments_not_logged(tmp_path, ansible_module):
    secret = _secret()
    out = []
    res = ansible_module("guest_agent_exec", {
        "socket": str(tmp_path / "no-such.sock"), "command": "guest-exec",
        "arguments": {"path": "/bin/sh", "arg": ["-c", "echo %s" % secret]}},
        verbosity=3, output=out)
    assert res.get("failed"), res
    text = "".join(out)
    assert "module_args" in text and secret not in text


def test_libvirt_tls_deploy_does_not_print_keys(tmp_path, ansible_module):
    key, cert, ca = _secret(), _secret(), _secret()
    play = [{"hosts": "localhost", "gather_facts": False,
             "vars": {"libvirt_key_file": str(tmp_path / "private" / "key.pem"),
                      "libvirt_cert_file": str(tmp_path / "cert.pem"),
                      "libvirt_ca_file": str(tmp_path / "ca" / "ca.pem"),
                      "libvirt_tls_key_content": key, "libvirt_tls_cert_content": cert,
                      "libvirt_tls_ca_content": ca, "__libvirt_init_running": False},
             "tasks": [{"name": "TLS files", "ansible.builtin.include_role": {
                 "name": "vmhost.virt.libvirt", "tasks_from": "tls_deploy"}}],
             "handlers": []}]
    proc = ansible_module.play(play, verbosity=3, env={"ANSIBLE_ROLES_PATH": ""})
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    assert (tmp_path / "private" / "key.pem").read_text() == key, text[-3000:]
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o700
    for secret in (key, cert, ca):
        assert secret not in text, text[-3000:]
