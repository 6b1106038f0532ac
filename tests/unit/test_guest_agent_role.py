"""The guest_agent role's systemd drop-in, rendered with Ansible's own templating."""
import pathlib
import shlex

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

try:  # ansible-core >= 2.19 templates only strings marked as trusted templates
    from ansible.template import trust_as_template
except ImportError:  # ansible-core < 2.19 trusts every string
    def trust_as_template(text):
        return text

ROLE = pathlib.Path(__file__).resolve().parents[2] / "roles" / "guest_agent"
TEMPLATE = ROLE / "templates/etc/systemd/system/qemu-guest-agent.service.d/vmhost-virt.conf.j2"


def _vars(**overrides):
    values = {"ansible_managed": "Ansible managed"}
    values.update(yaml.safe_load((ROLE / "defaults/main.yml").read_text()))
    values.update(yaml.safe_load((ROLE / "vars/main.yml").read_text()))
    values.update(yaml.safe_load((ROLE / "vars/Debian.yml").read_text()))
    values.update(overrides)
    return values


def render(**overrides):
    templar = Templar(loader=DataLoader(), variables=_vars(**overrides))
    return templar.template(trust_as_template(TEMPLATE.read_text()), escape_backslashes=False)


def exec_start(text):
    lines = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
    assert lines[0] == "ExecStart=", "the packaged ExecStart must be reset first"
    assert len(lines) == 2, lines
    return shlex.split(lines[1][len("ExecStart=-"):])


def test_defaults():
    text = render()
    assert text.startswith("#")  # ansible_managed comment
    assert "[Service]\n" in text
    assert "RuntimeDirectory=qemu-ga\nRuntimeDirectoryMode=0700\nRuntimeDirectoryPreserve=yes\n" in text
    assert exec_start(text) == [
        "/usr/sbin/qemu-ga", "--method=virtio-serial",
        "--path=/dev/virtio-ports/org.qemu.guest_agent.0",
        "--statedir=/run/qemu-ga", "--logfile=/var/log/qemu-ga.log",
        "--block-rpcs=guest-exec,guest-exec-status,guest-file-open,guest-file-close,"
        "guest-file-read,guest-file-write,guest-file-seek,guest-file-flush",
    ]
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_nothing_blocked_journal_log_and_persistent_state_dir():
    argv = exec_start(render(guest_agent_blocked_rpcs=[], guest_agent_log_file="",
                             guest_agent_state_dir="/var/lib/qemu-ga"))
    assert argv == ["/usr/sbin/qemu-ga", "--method=virtio-serial",
                    "--path=/dev/virtio-ports/org.qemu.guest_agent.0", "--statedir=/var/lib/qemu-ga"]
    assert "RuntimeDirectory" not in render(guest_agent_state_dir="/var/lib/qemu-ga")


def test_allow_list_keeps_handshake_and_drops_blocked():
    argv = exec_start(render(guest_agent_allowed_rpcs=["guest-get-osinfo", "guest-exec", "guest-ping"]))
    assert argv[-1] == "--allow-rpcs=guest-sync-delimited,guest-sync,guest-ping,guest-get-osinfo"
    assert not [a for a in argv if a.startswith("--block-rpcs")]


def test_nested_run_state_dir_and_custom_path():
    text = render(guest_agent_state_dir="/run/vm/agent", guest_agent_device_path="/dev/vport1p1")
    assert "RuntimeDirectory=vm/agent\n" in text
    assert "--path=/dev/vport1p1" in exec_start(text)


@pytest.mark.parametrize("family,binary", [("Debian", "/usr/sbin/qemu-ga"), ("RedHat", "/usr/bin/qemu-ga")])
def test_os_vars(family, binary):
    data = yaml.safe_load((ROLE / "vars" / ("%s.yml" % family)).read_text())
    assert data["__guest_agent_binary"] == binary
    assert data["__guest_agent_packages"] == ["qemu-guest-agent"]
    assert data["__guest_agent_service"] == "qemu-guest-agent.service"
