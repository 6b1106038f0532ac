# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vmhost.virt.build_vm_secrets through ansible-playbook, checked with OpenSSH's own tools.

Everything happens under pytest's tmp_path (secret root, offloading key, a stand-in
for the host's /etc/guix); the machine's real /etc/guix and /etc/nix are never touched.
"""
import base64
import os
import shutil
import socket
import stat
import subprocess
import time

import pytest

from build_vm_secrets_common import base_args, b64_body, play, remove_task, run, write_task

from ansible_collections.vmhost.virt.plugins.module_utils.keys import guix, sexp, ssh, trust
from tests.fs_state import tree
from tests.bad_inputs import SECRETS_BAD

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs openssh-client (bindep)")]

TYPES = ("ed25519", "ecdsa", "rsa")


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def secret_files(args):
    root = args["secret_root"]
    files = {}
    for kind in args.get("ssh_host_key_types", TYPES):
        files["etc/ssh/ssh_host_%s_key" % kind] = 0o600
        files["etc/ssh/ssh_host_%s_key.pub" % kind] = 0o644
    files.update({"etc/ssh/authorized_keys.d/offloading": 0o644, "etc/guix/signing-key.sec": 0o600,
                  "etc/guix/signing-key.pub": 0o644, "etc/guix/acl": 0o644, "etc/nix/signing-key.sec": 0o600,
                  "etc/nix/signing-key.pub": 0o644})
    out = dict((os.path.join(root, k), v) for k, v in files.items())
    out[args["offloading_key"]] = 0o600
    out[args["offloading_key"] + ".pub"] = 0o644
    return out


def snapshot(args):
    return dict((p, open(p, "rb").read()) for p in secret_files(args) if os.path.exists(p))


@pytest.fixture
def args(tmp_path):
    """Module arguments; RSA only where a test is about RSA or all types (it is the slow one)."""
    return base_args(tmp_path, host_nix_conf=str(tmp_path / "host-nix" / "nix.conf"),
                     ssh_host_key_types=["ed25519", "ecdsa"])


def test_check_run_check_run_modes_and_public_results(args, ansible_module):
    args = dict(args, ssh_host_key_types=list(TYPES))
    results, _out = play(ansible_module, [(args, True), (args, False), (args, True), (args, False)])
    predicted, done, again_check, again = results
    assert predicted["changed"] is True and not predicted.get("failed"), predicted
    assert predicted["ssh_host_keys"] == {} and predicted["offloading_public_key"] is None
    assert done["changed"] is True and not done.get("failed"), done
    # Check mode predicted exactly what the run did.
    assert predicted["actions"] == done["actions"]
    assert predicted["diff"]["after"] == done["diff"]["after"]
    assert again_check["changed"] is False and again_check["actions"] == [], again_check
    assert again["changed"] is False and again["actions"] == [], again
    for key in ("ssh_host_keys", "known_hosts", "offloading_public_key", "guix_public_key", "nix_public_key"):
        assert again[key] == done[key] == again_check[key]

    # Modes.
    assert mode(args["secret_root"]) == 0o700
    assert mode(os.path.join(args["secret_root"], "etc/ssh/authorized_keys.d")) == 0o555
    for path, want in secret_files(args).items():
        assert mode(path) == want, path

    # Results: public material matching the files and OpenSSH's view of them.
    for kind in TYPES:
        info = done["ssh_host_keys"][kind]
        pub = os.path.join(args["secret_root"], "etc/ssh/ssh_host_%s_key.pub" % kind)
        assert info["path"] == pub
        assert open(pub).read().strip() == info["public_key"]
        listing = subprocess.run(["ssh-keygen", "-l", "-f", pub], capture_output=True, text=True, check=True).stdout
        bits, fingerprint = listing.split()[:2]
        assert fingerprint == info["fingerprint"] and int(bits) == info["bits"]
        assert "[localhost]:11022 " + info["public_key"] in done["known_hosts"]
    assert done["ssh_host_keys"]["rsa"]["bits"] == 3072
    assert done["offloading_public_key"] == open(args["offloading_key"] + ".pub").read().strip()
    assert done["guix_public_key"] == open(os.path.join(args["secret_root"], "etc/guix/signing-key.pub")).read()
    assert done["nix_public_key"] == open(os.path.join(args["secret_root"], "etc/nix/signing-key.pub")).read()
    assert done["nix_public_key"].startswith("vm1-1:")

    # Diff lists files, never content.
    secrets = [open(p, "rb").read() for p, m in secret_files(args).items() if m == 0o600]
    for body in secrets:
        for line in b64_body(body) if body.startswith(b"-----") else [body.decode()]:
            assert line not in done["diff"]["after"] and line not in done["diff"]["before"]


def test_ssh_keygen_reads_every_key(args, ansible_module):
    args = dict(args, ssh_host_key_types=list(TYPES))
    run(ansible_module, args)
    pairs = [(os.path.join(args["secret_root"], "etc/ssh/ssh_host_%s_key" % k),) for k in TYPES]
    pairs.append((args["offloading_key"],))
    for (priv,) in pairs:
        pub = priv + ".pub"
        subprocess.run(["ssh-keygen", "-l", "-f", pub], check=True, capture_output=True)
        derived = subprocess.run(["ssh-keygen", "-y", "-f", priv], check=True, capture_output=True, text=True).stdout
        assert derived.strip() == open(pub).read().strip()
    authorized = os.path.join(args["secret_root"], "etc/ssh/authorized_keys.d/offloading")
    subprocess.run(["ssh-keygen", "-l", "-f", authorized], check=True, capture_output=True)
    assert open(authorized).read() == open(args["offloading_key"] + ".pub").read()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, deadline=20.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError("sshd exited: %s" % proc.stderr.read())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("sshd did not listen on %d within %ss" % (port, deadline))


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/sbin/sshd"), reason="needs root and sshd")
def test_sshd_with_generated_host_keys_accepts_offloading_key_pinned_by_known_hosts(tmp_path, ansible_module):
    port = free_port()
    args = base_args(tmp_path, offloading_user="root", ssh_port=port, signing_keys=[])
    done = run(ansible_module, args)
    assert not done.get("failed"), done
    root = args["secret_root"]
    config = tmp_path / "sshd_config"
    config.write_text("\n".join(
        ["Port %d" % port, "ListenAddress 127.0.0.1", "AddressFamily inet"]
        + ["HostKey %s/etc/ssh/ssh_host_%s_key" % (root, k) for k in TYPES]
        + ["AuthorizedKeysFile %s/etc/ssh/authorized_keys.d/%%u" % root, "PermitRootLogin prohibit-password",
           "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
           "PidFile %s/sshd.pid" % tmp_path, "LogLevel VERBOSE"]) + "\n")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port, sshd)
        algorithms = {"ed25519": "ssh-ed25519", "ecdsa": "ecdsa-sha2-nistp256", "rsa": "rsa-sha2-512"}
        for kind, line in zip(TYPES, done["known_hosts"]):
            assert line.startswith("[localhost]:%d " % port) and done["ssh_host_keys"][kind]["public_key"] in line
            known = tmp_path / ("known_hosts_" + kind)
            known.write_text(line + "\n")
            proc = subprocess.run(
                ["ssh", "-4", "-p", str(port), "-i", args["offloading_key"], "-o", "IdentitiesOnly=yes",
                 "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=%s" % known,
                 "-o", "GlobalKnownHostsFile=/dev/null", "-o", "HostKeyAlgorithms=%s" % algorithms[kind],
                 "-o", "ConnectTimeout=10", "root@localhost", "echo", "pinned-%s-ok" % kind],
                capture_output=True, text=True, timeout=60, check=False)
            assert proc.returncode == 0 and proc.stdout.strip() == "pinned-%s-ok" % kind, proc.stderr
        # The pin is real: another host key for the same name is refused.
        other = ssh.generate_ssh_key("ed25519")[1]
        wrong = tmp_path / "known_hosts_wrong"
        wrong.write_text(ssh.known_hosts_line("localhost", port, other) + "\n")
        proc = subprocess.run(
            ["ssh", "-4", "-p", str(port), "-i", args["offloading_key"], "-o", "IdentitiesOnly=yes",
             "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=%s" % wrong,
             "-o", "GlobalKnownHostsFile=/dev/null", "-o", "HostKeyAlgorithms=ssh-ed25519",
             "root@localhost", "true"], capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode != 0 and "HOST IDENTIFICATION HAS CHANGED" in proc.stderr
    finally:
        sshd.terminate()
        try:
            sshd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sshd.kill()
            sshd.wait()


def test_missing_public_halves_are_derived_again(args, ansible_module):
    removed = [p for p, m in secret_files(args).items() if m == 0o644 and not p.endswith("/acl")]
    (first, predicted, done, again), _out = play(ansible_module, [(args, False)] + [remove_task(p) for p in removed]
                                                 + [(args, True), (args, False), (args, False)])
    assert done["changed"] is True and not done.get("failed"), done
    assert predicted["actions"] == done["actions"] and predicted["changed"] is True
    assert sorted(a.split()[1] for a in done["actions"]) == sorted(removed)
    assert all(a.startswith("re-derived ") for a in done["actions"])
    for key in ("ssh_host_keys", "offloading_public_key", "guix_public_key", "nix_public_key"):
        assert done[key] == first[key]
    assert again["changed"] is False


def test_wrong_modes_are_fixed(args, ansible_module):
    run(ansible_module, args)
    os.chmod(args["secret_root"], 0o755)
    os.chmod(args["offloading_key"], 0o644)
    (predicted, done), _out = play(ansible_module, [(args, True), (args, False)])
    assert mode(args["secret_root"]) == 0o700 and mode(args["offloading_key"]) == 0o600
    assert done["changed"] is True and predicted["actions"] == done["actions"] == [
        "chmod %s 0700" % args["secret_root"], "chmod %s 0600" % args["offloading_key"]]


@pytest.mark.parametrize("rel", ["etc/ssh/ssh_host_ed25519_key", "etc/guix/signing-key.sec",
                                 "etc/nix/signing-key.sec", "OFFLOADING"])
def test_corrupt_private_key_fails_naming_the_file_unless_always(args, rel, ansible_module):
    path = args["offloading_key"] if rel == "OFFLOADING" else os.path.join(args["secret_root"], rel)
    (_first, failed, fixed, again), _out = play(ansible_module, [
        (args, False), write_task(path, "-----BEGIN OPENSSH PRIVATE KEY-----\ntruncated"),
        (args, False), (dict(args, regenerate="always"), False), (args, False)])
    assert failed.get("failed") and path in failed["msg"] and "regenerate=always" in failed["msg"], failed
    assert failed["changed"] is False
    assert not fixed.get("failed") and fixed["changed"] is True, fixed
    assert again["changed"] is False


def test_host_acl_entries_kept_guest_key_added_once_and_guest_acl(tmp_path, args, ansible_module):
    host = tmp_path / "host-guix"
    host.mkdir()
    other_secret, other_public = guix.generate_guix_key()
    host_secret, host_public = guix.generate_guix_key()
    (host / "signing-key.pub").write_bytes(host_public)
    existing = trust.acl_dump([sexp.sexp_parse(other_public)])
    (host / "acl").write_bytes(existing)
    done = run(ansible_module, args)
    assert not done.get("failed"), done
    guest_pub = sexp.sexp_parse(done["guix_public_key"].encode())
    host_keys = trust.parse_acl((host / "acl").read_bytes())
    assert host_keys == [guest_pub, sexp.sexp_parse(other_public)]
    guest_acl = trust.parse_acl(open(os.path.join(args["secret_root"], "etc/guix/acl"), "rb").read())
    assert guest_acl == [sexp.sexp_parse(host_public), sexp.sexp_parse(other_public)]
    acl_bytes = (host / "acl").read_bytes()
    # Second run: nothing added twice, nothing rewritten.
    assert run(ansible_module, args)["changed"] is False
    assert (host / "acl").read_bytes() == acl_bytes
    # Replacing the guest key swaps it in the host ACL, still once.
    again = run(ansible_module, dict(args, regenerate="always"))
    new_pub = sexp.sexp_parse(again["guix_public_key"].encode())
    assert trust.parse_acl((host / "acl").read_bytes()) == [new_pub, sexp.sexp_parse(other_public)]
    nix_conf = open(args["host_nix_conf"]).read()
    assert again["nix_public_key"] in nix_conf and done["nix_public_key"] not in nix_conf


def test_nix_conf_line_edited_in_place(tmp_path, args, ansible_module):
    conf = tmp_path / "host-nix" / "nix.conf"
    conf.parent.mkdir()
    conf.write_text("# managed elsewhere\ntrusted-public-keys = cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=\n"
                    "sandbox = true\n")
    done = run(ansible_module, args)
    lines = conf.read_text().splitlines()
    assert lines[0] == "# managed elsewhere" and lines[2] == "sandbox = true"
    assert lines[1] == ("trusted-public-keys = cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY= "
                        + done["nix_public_key"])
    assert run(ansible_module, args)["changed"] is False


def test_private_material_never_in_verbose_output(args, ansible_module):
    args = dict(args, ssh_host_key_types=list(TYPES))
    results, output = play(ansible_module, [(args, False), (args, False)], verbosity=3)
    assert not results[0].get("failed"), results[0]
    assert "ESTABLISH LOCAL CONNECTION" in output or "<localhost>" in output  # really -vvv
    leaked = []
    for path, want in secret_files(args).items():
        if want != 0o600:
            continue
        body = open(path, "rb").read()
        if body.startswith(b"-----"):
            # The OpenSSH private key file embeds its public key: skip lines that are plain public data.
            public = open(path + ".pub").read().split()[1]
            needles = [line for line in b64_body(body) if len(line) >= 16 and line not in public]
            key = ssh.load_ssh_private(body)
            numbers = [getattr(key.private_numbers(), n) for n in ("private_value", "d", "p", "q")
                       if hasattr(key, "private_numbers") and hasattr(key.private_numbers(), n)]
            if not numbers:  # ed25519: the seed
                from cryptography.hazmat.primitives import serialization as ser
                numbers = [int.from_bytes(key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw,
                                                            ser.NoEncryption()), "big")]
            for value in numbers:
                raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
                needles += ["%x" % value, "%X" % value, base64.b64encode(raw).decode()[:24]]
        elif body.startswith(b"(private-key"):
            d = sexp.sexp_find(sexp.sexp_find(sexp.sexp_parse(body), b"ecc"), b"d")[1]
            needles = [d.hex().upper(), d.hex()]
        else:
            needles = [body.decode().split(":", 1)[1]]
        leaked += [(path, n) for n in needles if n in output]
    assert not leaked, leaked


# Each bad input and (a part of) the message the user sees; docs/security.md lists them.
BAD_INPUTS = SECRETS_BAD + [
    # refused by the argument spec, before the backend runs
    ({"ssh_host_key_types": ["ed25519", "dsa"]}, "value of ssh_host_key_types must be one or more of"),
    ({"signing_keys": ["guix", "pgp"]}, "value of signing_keys must be one or more of"),
    ({"regenerate": "sometimes"}, "value of regenerate must be one of"),
]


def test_bad_inputs_fail_clearly(tmp_path, args, ansible_module):
    before = tree(tmp_path)
    results, _out = play(ansible_module, [(dict(args, **change), check) for change, _msg in BAD_INPUTS
                                          for check in (True, False)])
    for (change, msg), done in zip([case for case in BAD_INPUTS for _check in (True, False)], results):
        assert done.get("failed") and msg in done["msg"], (change, done)
        # ansible-core >= 2.19 adds exception="(traceback unavailable)" to every failure;
        # what matters is that no Python traceback reached the user.
        assert "Traceback" not in done["msg"], (change, done)
        assert "Traceback" not in done.get("exception", ""), (change, done)
        assert not done.get("changed"), (change, done)
    assert tree(tmp_path) == before
    assert not os.path.exists(args["secret_root"])


def test_host_acl_that_is_not_an_acl_fails(tmp_path, args, ansible_module):
    host = tmp_path / "host-guix"
    host.mkdir()
    (host / "acl").write_text("(public-key (ecc (curve Ed25519) (q #00#)))\n")
    done = run(ansible_module, args)
    assert done.get("failed") and str(host / "acl") in done["msg"] and "not a Guix ACL" in done["msg"], done
    assert not os.path.exists(args["secret_root"])
    (host / "acl").unlink()
    (host / "acl").mkdir()  # unreadable as a file
    done = run(ansible_module, args)
    assert done.get("failed") and "cannot read Guix ACL" in done["msg"] and str(host / "acl") in done["msg"], done


def test_regenerate_fail_refuses_a_smaller_rsa_key(args, ansible_module):
    run(ansible_module, dict(args, ssh_host_key_types=["rsa"], ssh_rsa_bits=3072, signing_keys=[]))
    done = run(ansible_module, dict(args, ssh_host_key_types=["rsa"], ssh_rsa_bits=4096, signing_keys=[], regenerate="fail"))
    assert done.get("failed") and "3072-bit" in done["msg"] and "ssh_host_rsa_key" in done["msg"], done
    kept = run(ansible_module, dict(args, ssh_host_key_types=["rsa"], ssh_rsa_bits=4096, signing_keys=[]))
    assert kept["changed"] is False and kept["ssh_host_keys"]["rsa"]["bits"] == 3072


# -- finding 4: links and foreign owners inside secret_root are refused --------
@pytest.mark.parametrize("where", ["etc/ssh", "etc/ssh/ssh_host_ed25519_key", "etc",
                                   "etc/guix/signing-key.sec", "root"])
def test_finding4_symlinks_in_secret_root_are_refused(tmp_path, where, ansible_module):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "victim"
    victim.write_text("keep\n")
    os.chmod(str(victim), 0o644)
    args = base_args(tmp_path, ssh_host_key_types=["ed25519"])
    root = tmp_path / "secrets" / "vm1"
    if where == "root":
        (tmp_path / "secrets").mkdir()
        os.symlink(str(elsewhere), str(root))
    else:
        target = root / where
        target.parent.mkdir(parents=True)
        os.symlink(str(victim) if "key" in where or "sec" in where else str(elsewhere), str(target))
    before = tree(tmp_path)
    res = run(ansible_module, args)
    assert res.get("failed") and "symbolic link" in res["msg"], res
    assert tree(tmp_path) == before
    assert victim.read_text() == "keep\n" and (victim.stat().st_mode & 0o777) == 0o644


def test_finding4_foreign_owner_refused(tmp_path, ansible_module):
    args = base_args(tmp_path, ssh_host_key_types=["ed25519"])
    root = tmp_path / "secrets" / "vm1"
    root.mkdir(parents=True)
    os.chown(str(root), 12345, 12345)
    res = run(ansible_module, args)
    assert res.get("failed") and "owned by uid 12345" in res["msg"], res
    assert os.listdir(str(root)) == []


def test_finding4_host_files_behind_links_are_followed_and_stay_links(tmp_path, ansible_module):
    real_guix = tmp_path / "real-guix"
    real_guix.mkdir()
    host_guix = tmp_path / "host-guix"
    host_guix.mkdir()
    os.symlink(str(real_guix / "acl"), str(host_guix / "acl"))
    real_conf = tmp_path / "real-nix.conf"
    real_conf.write_text("sandbox = true\n")
    conf = tmp_path / "nix.conf"
    os.symlink(str(real_conf), str(conf))
    args = base_args(tmp_path, ssh_host_key_types=["ed25519"], host_nix_conf=str(conf))
    res = run(ansible_module, args)
    assert not res.get("failed"), res
    assert os.path.islink(str(host_guix / "acl")) and os.path.islink(str(conf))
    assert b"(acl" in (real_guix / "acl").read_bytes()
    assert res["nix_public_key"] in real_conf.read_text()
    assert sorted(os.listdir(str(real_guix))) == ["acl"]
