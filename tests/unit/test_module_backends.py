"""The module backends on the shared base, without Ansible: build_vm_secrets, qemu_binfmt,
guest_agent_exec and qemu_accel_probe.  Every bad input fails with the message the user
sees (the module passes it on unchanged) and writes nothing, in check mode and in a real run.
(The integration tests run the same modules through Ansible.)"""
import os
import shutil
import stat
import tempfile

import pytest

from ansible_collections.vmhost.virt.plugins.module_utils._build_vm_secrets import SecretsBackend
from ansible_collections.vmhost.virt.plugins.module_utils._guest_agent_exec import AgentExecBackend
from ansible_collections.vmhost.virt.plugins.module_utils._module import ModuleFailure
from ansible_collections.vmhost.virt.plugins.module_utils._qemu_accel_probe import AccelProbeBackend
from ansible_collections.vmhost.virt.plugins.module_utils._qemu_binfmt import BinfmtBackend
from ansible_collections.vmhost.virt.plugins.module_utils import binfmt as B
from qga_fake import FakeAgent
from tests.fs_state import tree
from tests.bad_inputs import SECRETS_BAD


def refused(backend_class, params, top, modes=(True, False), **kwargs):
    """The message of the refusal, checked identical in check mode and a real run (``modes``),
    and that neither wrote anything under ``top``."""
    before = tree(top)
    messages = []
    for check in modes:
        with pytest.raises(ModuleFailure) as err:
            backend_class(params, check_mode=check, **kwargs).execute(diff=True)
        assert err.value.result["changed"] is False, err.value.result
        assert tree(top) == before
        messages.append(err.value.msg)
    assert len(set(messages)) == 1, messages
    return messages[0]


# --------------------------------------------------------------------------- build_vm_secrets

def secrets_params(tmp_path, **extra):
    params = dict(name="vm1", secret_root=str(tmp_path / "secrets" / "vm1"),
                  offloading_key=str(tmp_path / "offload" / "vm1"), offloading_user="offloading",
                  ssh_host_key_types=["ed25519"], ssh_rsa_bits=3072, ssh_port=11022,
                  signing_keys=["guix", "nix"], nix_key_name=None, host_guix_dir=str(tmp_path / "host-guix"),
                  host_guix_acl=True, host_nix_conf=str(tmp_path / "nix.conf"), regenerate="never")
    params.update(extra)
    return params


def test_secrets_check_run_again(tmp_path):
    params = secrets_params(tmp_path)
    predicted = SecretsBackend(params, check_mode=True).execute(diff=True)
    assert predicted["changed"] and tree(tmp_path) == {}
    done = SecretsBackend(params).execute(diff=True)
    assert done["changed"] and done["actions"] == predicted["actions"]
    assert done["diff"]["after"] == predicted["diff"]["after"]
    assert done["nix_public_key"].startswith("vm1-1:") and done["guix_public_key"].startswith("(public-key")
    assert stat.S_IMODE(os.stat(params["secret_root"]).st_mode) == 0o700
    again = SecretsBackend(params).execute()
    assert again["changed"] is False and again["actions"] == []
    assert again["offloading_public_key"] == done["offloading_public_key"]
    assert done["nix_public_key"] in (tmp_path / "nix.conf").read_text()


@pytest.mark.parametrize("change,message", SECRETS_BAD, ids=[m.split(" ")[0] for _c, m in SECRETS_BAD])
def test_secrets_bad_input_refused_and_nothing_written(tmp_path, change, message):
    assert refused(SecretsBackend, secrets_params(tmp_path, **change), tmp_path).startswith(message)


def test_secrets_bad_host_files_refused_and_nothing_written(tmp_path):
    host = tmp_path / "host-guix"
    host.mkdir()
    (host / "acl").write_text("(public-key (ecc (curve Ed25519) (q #00#)))\n")
    msg = refused(SecretsBackend, secrets_params(tmp_path), tmp_path)
    assert msg.startswith("%s is not a Guix ACL: it does not start with (acl" % (host / "acl"))
    (host / "acl").write_text("(acl (entry (public-key (ecc)) (tag (guix import)))")
    assert "not a Guix ACL" in refused(SecretsBackend, secrets_params(tmp_path), tmp_path)
    (host / "acl").unlink()
    (host / "signing-key.pub").write_text("(private-key)")
    msg = refused(SecretsBackend, secrets_params(tmp_path), tmp_path)
    assert msg == "%s is not a Guix public key: it does not start with (public-key" % (host / "signing-key.pub")
    (host / "signing-key.pub").unlink()
    (tmp_path / "nix.conf").write_bytes(b"trusted-public-keys = \xff\n")
    assert refused(SecretsBackend, secrets_params(tmp_path), tmp_path) == "%s is not UTF-8 text" % (tmp_path / "nix.conf")


def test_secrets_links_refused_and_nothing_written(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "secrets").mkdir()
    os.symlink(str(target), str(tmp_path / "secrets" / "vm1"))
    msg = refused(SecretsBackend, secrets_params(tmp_path), tmp_path)
    assert msg.startswith("secret_root %s is a symbolic link" % (tmp_path / "secrets" / "vm1"))
    os.unlink(str(tmp_path / "secrets" / "vm1"))
    (tmp_path / "offload").mkdir()
    os.symlink(str(target / "k"), str(tmp_path / "offload" / "vm1"))
    msg = refused(SecretsBackend, secrets_params(tmp_path), tmp_path)
    assert msg == "offloading_key %s is a symbolic link; refusing to write a key through it" % (tmp_path / "offload" / "vm1")


# --------------------------------------------------------------------------- qemu_binfmt

INTERP = B.interpreter_path("aarch64", "/usr/bin", "-static")


def binfmt_params(tmp_path, **extra):
    params = dict(platforms=["aarch64"], state="present", interpreter_dir="/usr/bin", interpreter_suffix="-static",
                  flags=dict(B.DEFAULT_FLAGS), skip_host_family=True, persistent=True,
                  binfmt_d_path=str(tmp_path / "binfmt.d"), binfmt_misc_path=str(tmp_path / "misc"),
                  match_file=None, distribution_services=[], mask_binfmt_d=[])
    params.update(extra)
    return params


def never_run(argv):
    raise AssertionError("nothing may be run: %r" % (argv,))


def _static_binary(path):
    """A copy of a real static interpreter, renamed (the right machine check needs an ELF file)."""
    shutil.copy(INTERP, str(path))
    return str(path)


def _binfmt_bad_cases(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "qemu-aarch64-static").write_text("#!/bin/sh\n")
    shutil.copy("/bin/true", str(tmp_path / "true"))
    dyn = tmp_path / "dyn"
    dyn.mkdir()
    shutil.copy("/bin/true", str(dyn / "qemu-aarch64-static"))
    plain = tmp_path / "plain"
    plain.write_text("")
    (tmp_path / "conf-file").write_text("")
    return [
        ({"platforms": ["aarch64", "arm64"]}, "unknown platform 'arm64'"),
        ({"interpreter_dir": "usr/bin"}, "'usr/bin' is relative"),
        ({"interpreter_suffix": "-static/../../tmp/x"}, "may not contain '/'"),
        ({"interpreter_dir": str(tmp_path / "none")}, "%s/none/qemu-aarch64-static does not exist" % tmp_path),
        ({"interpreter_dir": str(bad)}, "is not an ELF executable"),
        ({"interpreter_dir": str(dyn)}, "dynamically linked"),
        ({"flags": dict(B.DEFAULT_FLAGS, fast=True)}, "fast"),
        ({"match_file": str(tmp_path / "nothing")}, "match_file %s does not exist or is not a regular file"
         % (tmp_path / "nothing")),
        ({"binfmt_d_path": str(tmp_path / "conf-file")}, "binfmt_d_path %s exists and is not a directory"
         % (tmp_path / "conf-file")),
        ({"binfmt_misc_path": str(plain)}, "binfmt_misc is not mounted and its mount point %s is not a directory"
         % plain),
        ({"binfmt_misc_path": str(tmp_path / "nowhere")}, "binfmt_misc is not mounted and its mount point"),
        ({"distribution_services": ["binfmt support"]}, "'binfmt support' is not a systemd service name"),
        ({"distribution_services": ["../../x.service"]}, "is not a systemd service name"),
        ({"mask_binfmt_d": ["../qemu-{}.conf"]}, "must be a file name ending in .conf with {} once"),
        ({"mask_binfmt_d": ["qemu-aarch64.conf"]}, "must be a file name ending in .conf with {} once"),
        ({"mask_binfmt_d": ["qemu-{}.conf"]}, "qemu-{}.conf would mask this module's own file qemu-aarch64.conf"),
    ]


@pytest.mark.skipif(not os.path.exists(INTERP), reason="qemu-user-static is missing (bindep.txt)")
def test_binfmt_bad_input_refused_and_nothing_written(tmp_path):
    cases = _binfmt_bad_cases(tmp_path)
    assert len(cases) >= 10
    for change, words in cases:
        msg = refused(BinfmtBackend, binfmt_params(tmp_path, **change), tmp_path, host="x86_64",
                      run_command=never_run)
        assert words in msg, (change, msg)


@pytest.mark.skipif(not os.path.exists(INTERP), reason="qemu-user-static is missing (bindep.txt)")
def test_binfmt_plan_against_a_listing(tmp_path):
    """The plan reads entries as the kernel prints them; an unmounted directory plans a mount."""
    misc = tmp_path / "misc"
    misc.mkdir()
    calls = []

    def fake_mount(argv):
        calls.append(argv)
        return 1, "", "permission denied"
    params = binfmt_params(tmp_path)
    predicted = BinfmtBackend(params, check_mode=True, host="x86_64", run_command=never_run).execute(diff=True)
    assert predicted["actions"] == ["mount %s" % misc, "register qemu-aarch64",
                                    "write %s/binfmt.d/qemu-aarch64.conf" % tmp_path]
    assert predicted["diff"]["after"]["files"] == {
        str(tmp_path / "binfmt.d" / "qemu-aarch64.conf"): B.binfmt_d_content(B.wanted_entry("aarch64", INTERP, B.DEFAULT_FLAGS))}
    with pytest.raises(ModuleFailure) as err:
        BinfmtBackend(params, host="x86_64", run_command=fake_mount).execute()
    assert err.value.msg.startswith("mount -t binfmt_misc binfmt_misc %s failed (rc=1): permission denied" % misc)
    assert calls == [["mount", "-t", "binfmt_misc", "binfmt_misc", str(misc)]]
    assert not (tmp_path / "binfmt.d").exists()


@pytest.mark.skipif(not os.path.exists(INTERP), reason="qemu-user-static is missing (bindep.txt)")
@pytest.mark.parametrize("running", [True, False])
def test_binfmt_takes_over_from_the_distribution(tmp_path, running):
    """binfmt-support is stopped and disabled before registering; the distribution's binfmt.d
    file is masked; a second run finds nothing to do."""
    misc = tmp_path / "misc"
    misc.mkdir()
    (misc / "register").write_text("")
    (misc / "status").write_text("enabled\n")
    units = {"binfmt-support.service": ["enabled", "active"], "gone.service": ["", ""]}
    calls = []

    def systemctl(argv):
        calls.append(argv)
        assert argv[0] == "systemctl", argv
        if argv[1] == "disable":
            units[argv[-1]] = ["disabled", "inactive"]
            return 0, "", ""
        state = units[argv[2]][0 if argv[1] == "is-enabled" else 1]
        return (0 if state in ("enabled", "active") else 1), state + "\n", ""
    params = binfmt_params(tmp_path, distribution_services=["binfmt-support.service", "gone.service"],
                           mask_binfmt_d=["qemu-{}-static.conf"])
    mask = tmp_path / "binfmt.d" / "qemu-aarch64-static.conf"

    def backend(check_mode=False):
        b = BinfmtBackend(params, check_mode=check_mode, host="x86_64", run_command=systemctl)
        b.systemd_dir = str(tmp_path) if running else str(tmp_path / "no-systemd")
        return b
    predicted = backend(check_mode=True).execute(diff=True)
    verb = "stop and disable" if running else "disable"
    assert predicted["actions"] == ["%s binfmt-support.service" % verb, "register qemu-aarch64",
                                    "write %s/binfmt.d/qemu-aarch64.conf" % tmp_path, "mask %s" % mask]
    assert predicted["diff"]["before"]["services"] == {
        "binfmt-support.service": {"enabled": True, "active": running}}
    assert not [c for c in calls if c[1] == "disable"] and not mask.exists()
    done = backend().execute()
    assert done["actions"] == predicted["actions"]
    assert ["systemctl", "disable"] + (["--now"] if running else []) + ["binfmt-support.service"] in calls
    assert os.readlink(str(mask)) == "/dev/null"
    assert not [n for n in os.listdir(str(tmp_path / "binfmt.d")) if n.startswith(".")]
    again = backend().execute()
    assert "disable binfmt-support.service" not in " ".join(again["actions"])
    assert "mask %s" % mask not in again["actions"]


# --------------------------------------------------------------------------- guest_agent_exec

@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="qgab", dir="/tmp")  # unix socket paths are short
    yield d
    shutil.rmtree(d, ignore_errors=True)


def agent_params(socket, **extra):
    params = dict(socket=socket, command="guest-ping", arguments=None, timeout=5.0, wait_for=False, wait_timeout=300.0)
    params.update(extra)
    return params


def test_agent_read_runs_changing_command_is_planned(sockdir):
    agent = FakeAgent(os.path.join(sockdir, "a.sock"))
    try:
        res = AgentExecBackend(agent_params(agent.path, command="guest-get-osinfo")).execute(diff=True)
        assert res["changed"] is False and res["sent"] is True and res["result"]["id"] and "diff" not in res
        assert "actions" not in res
        before = [r["execute"] for r in agent.received if r.get("execute") not in ("guest-sync-delimited", "guest-sync")]
        checked = AgentExecBackend(agent_params(agent.path, command="guest-shutdown"), check_mode=True).execute()
        assert checked["changed"] is True and checked["sent"] is False and checked["result"] is None
        sent = [r["execute"] for r in agent.received if r.get("execute") not in ("guest-sync-delimited", "guest-sync")]
        assert sent == before + ["guest-ping"]
    finally:
        agent.close()


def test_agent_bad_input_refused(sockdir, tmp_path):
    fifo = os.path.join(sockdir, "fifo")
    os.mkfifo(fifo)
    cases = [
        ({"command": "  "}, "command must not be empty, for example guest-ping"),
        ({"command": ""}, "command must not be empty, for example guest-ping"),
        ({"timeout": 0}, "timeout must be a positive number of seconds, got 0"),
        ({"timeout": -1.5}, "timeout must be a positive number of seconds, got -1.5"),
        ({"wait_for": True, "wait_timeout": 0}, "wait_timeout must be a positive number of seconds, got 0"),
        ({"socket": os.path.join(sockdir, "missing.sock")}, "missing.sock"),
        ({"socket": fifo}, "fifo"),
        ({"socket": str(tmp_path)}, str(tmp_path)),
        ({"socket": os.path.join(sockdir, "missing.sock"), "command": "guest-shutdown"}, "missing.sock"),
        ({"socket": os.path.join(sockdir, "missing.sock"), "command": "guest-exec",
          "arguments": {"path": "/bin/true"}}, "missing.sock"),
    ]
    for change, words in cases:
        params = agent_params(os.path.join(sockdir, "x.sock"))
        params.update(change)
        msg = refused(AgentExecBackend, params, tmp_path)
        assert words in msg, (change, msg)


# --------------------------------------------------------------------------- qemu_accel_probe

class NoTools(object):
    @staticmethod
    def get_bin_path(name):
        return None


def accel_params(**extra):
    params = dict(qemu="/bin/true", policy="auto", kernel=None, system="x86_64-linux", timeout=20, cache_dir=None)
    params.update(extra)
    return params


def test_accel_probe_check_mode_before_install_predicts_tcg():
    res = AccelProbeBackend(accel_params(qemu="qemu-system-x86_64"), check_mode=True, tools=NoTools()).execute(diff=True)
    assert res == {"changed": False, "accel": "tcg", "cpu": "max", "qemu": "/usr/bin/qemu-system-x86_64",
                   "reason": "qemu-system-x86_64 is not installed yet (check mode): a real run probes"}


def test_accel_probe_bad_input_refused(tmp_path):
    plain = tmp_path / "qemu"
    plain.write_text("")
    cases = [
        ({"qemu": "qemu-system-nothing"}, "qemu-system-nothing not found in PATH: install the QEMU system emulator"),
        ({"qemu": "no-such-qemu-xyz"}, "no-such-qemu-xyz not found in PATH: install the QEMU system emulator"),
        ({"qemu": str(plain)}, "%s is not an executable" % plain),
        ({"qemu": str(tmp_path / "none")}, "%s/none is not an executable" % tmp_path),
        ({"qemu": str(tmp_path)}, "%s is not an executable" % tmp_path if not os.access(str(tmp_path), os.X_OK)
         else None),
        ({"system": "mips-linux"}, "unknown system type 'mips-linux' (known: "),
        ({"system": ""}, "unknown system type '' (known: "),
        ({"system": "x86_64"}, "unknown system type 'x86_64' (known: "),
        ({"kernel": str(tmp_path / "vmlinuz")}, "kernel %s/vmlinuz does not exist" % tmp_path),
        ({"kernel": str(tmp_path)}, "kernel %s does not exist" % tmp_path),
        ({"system": "aarch64-linux", "kernel": str(tmp_path / "k")}, "kernel %s/k does not exist" % tmp_path),
    ]
    checked = 0
    for change, words in cases:
        if words is None:
            continue  # a directory is "executable" for os.access(X_OK) as root: covered by the kernel cases
        # a name not in PATH is a prediction in check mode (test above), a refusal in a real run
        modes = (False,) if "/" not in change.get("qemu", "/") else (True, False)
        msg = refused(AccelProbeBackend, accel_params(**change), tmp_path, modes=modes, tools=NoTools())
        assert msg.startswith(words), (change, msg)
        checked += 1
    assert checked >= 10
