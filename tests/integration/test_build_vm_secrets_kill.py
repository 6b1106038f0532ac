# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SIGKILL the module at random points, again and again, and check that no key pair is half-written.

The module runs as Ansible runs it on a host (``python -m <module> <args.json>``),
with O(regenerate=always) on most runs so that every run replaces every pair and
a kill can land in any write. After each kill: a private key never exists without
its public half(s), every pair present matches, every file present parses in full.
A final uninterrupted run repairs what the kills left (missing pairs, stale
temporary files) and the run after it changes nothing.
(The exact kill points of the grouped write itself are covered step by step in
tests/unit/test_keys.py.)
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from build_vm_secrets_common import base_args

from ansible_collections.vmhost.virt.plugins.module_utils.keys import guix, install, nix, sexp, ssh, trust
from ansible_collections.vmhost.virt.plugins.module_utils.keys.errors import KeysError
from ansible_collections.vmhost.virt.plugins.module_utils.keys.layout import secret_layout

pytestmark = pytest.mark.root

MODULE = "ansible_collections.vmhost.virt.plugins.modules.build_vm_secrets"


def _env():
    env = dict(os.environ)
    coll_root = os.path.abspath(os.path.join(os.path.dirname(install.__file__), *[".."] * 6))
    env["PYTHONPATH"] = os.pathsep.join([coll_root] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _start(tmp_path, args):
    path = tmp_path / ("args-%d.json" % random.randrange(1 << 30))
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    return subprocess.Popen([sys.executable, "-m", MODULE, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env())


def _finish(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (out, err)
    return json.loads(out)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def check_invariants(args, when):
    root = args["secret_root"]
    layout = secret_layout(root, args["ssh_host_key_types"])
    pairs = [(priv, [pub], "ssh") for priv, pub in layout["host_keys"].values()]
    pairs.append((args["offloading_key"], [args["offloading_key"] + ".pub", layout["authorized"]], "ssh"))
    pairs.append((layout["guix_sec"], [layout["guix_pub"]], "guix"))
    pairs.append((layout["nix_sec"], [layout["nix_pub"]], "nix"))
    for priv, pubs, kind in pairs:
        secret = _read(priv)
        publics = [_read(p) for p in pubs]
        # Whatever exists parses in full (no partly written file).
        if kind == "ssh":
            expected = ssh.ssh_public_line(ssh.load_ssh_private(secret, what=priv)) if secret is not None else None
            for p, data in zip(pubs, publics):
                if data is not None:
                    ssh.ssh_public_blob(data.decode())
        elif kind == "guix":
            expected = guix.parse_guix_secret(secret, what=priv)[1] if secret is not None else None
            for p, data in zip(pubs, publics):
                if data is not None:
                    guix.parse_guix_public(data, what=p)
        else:
            expected = nix.parse_nix_secret(secret, what=priv)[2] if secret is not None else None
            for p, data in zip(pubs, publics):
                if data is not None:
                    nix.parse_nix_public(data, what=p)
        if secret is None:
            continue
        for p, data in zip(pubs, publics):
            assert data is not None, "%s: private key %s without its public half %s" % (when, priv, p)
            if kind == "ssh":
                assert ssh.same_ssh_public(data.decode(), expected), "%s: %s does not match %s" % (when, p, priv)
            elif kind == "guix":
                assert guix.parse_guix_public(data) == expected, "%s: %s does not match %s" % (when, p, priv)
            else:
                assert data.decode().strip() == expected, "%s: %s does not match %s" % (when, p, priv)
        assert os.stat(priv).st_mode & 0o077 == 0, "%s: %s readable by others" % (when, priv)


def check_old_keys_not_trusted(args, seen, when):
    """Finding 4: a guest signing key that was replaced is never left trusted by the host,
    whatever step the run was killed at."""
    layout = secret_layout(args["secret_root"], args["ssh_host_key_types"])
    secret = _read(layout["guix_sec"])
    current = guix.parse_guix_secret(secret)[1] if secret is not None else None
    if current is not None:
        seen["guix"].add(current)
    acl = _read(os.path.join(args["host_guix_dir"], "acl"))
    trusted = set()
    for tree in (trust.parse_acl(acl) if acl else []):
        try:
            trusted.add(guix.parse_guix_public(sexp.sexp_dump(tree)))
        except KeysError:
            pass
    stale = (trusted & seen["guix"]) - set([current])
    assert not stale, "%s: the host ACL still trusts %d replaced guest key(s)" % (when, len(stale))
    secret = _read(layout["nix_sec"])
    current = nix.parse_nix_secret(secret)[2] if secret is not None else None
    if current is not None:
        seen["nix"].add(current)
    conf = (_read(args["host_nix_conf"]) or b"").decode()
    stale = set(k for k in seen["nix"] if k != current and k in conf)
    assert not stale, "%s: nix.conf still trusts replaced guest key(s) %s" % (when, sorted(stale))


def _dirs(args, tmp_path):
    return (args["secret_root"] + "/etc/ssh", args["secret_root"] + "/etc/guix", args["secret_root"] + "/etc/nix",
            args["secret_root"] + "/etc/ssh/authorized_keys.d", os.path.dirname(args["offloading_key"]),
            args["host_guix_dir"], str(tmp_path))


def test_sigkill_at_random_points_never_leaves_a_half_written_pair(tmp_path):
    args = base_args(tmp_path, name="kill", ssh_host_key_types=["ed25519", "ecdsa"],
                     host_nix_conf=str(tmp_path / "nix.conf"))
    rng = random.Random(int(os.environ.get("VMHOST_TEST_SEED", "0")) or None)

    _finish(_start(tmp_path, dict(args, regenerate="always")))
    # time a second full run: the first one pays for cold caches and would put most kill
    # points after the end of the (faster) rounds
    begin = time.monotonic()
    _finish(_start(tmp_path, dict(args, regenerate="always")))
    full = time.monotonic() - begin
    check_invariants(args, "after a full run")

    kills = 0
    mid_write = 0
    seen = {"guix": set(), "nix": set()}
    check_old_keys_not_trusted(args, seen, "after a full run")
    for round_ in range(30):
        regenerate = "always" if round_ % 4 else "never"
        if round_ % 7 == 3:
            # Start some rounds from scratch so first-time creation is killed too.
            for path in [args["secret_root"] + "/etc/ssh/ssh_host_ed25519_key", args["offloading_key"]]:
                if os.path.exists(path):
                    os.unlink(path)
        proc = _start(tmp_path, dict(args, regenerate=regenerate))
        if round_ % 2:
            # Anywhere in the run.
            time.sleep(rng.uniform(0.3, 1.0) * full)
        else:
            # In the write phase: once the first temporary file shows up, a little later.
            deadline = time.monotonic() + 2 * full + 5
            while proc.poll() is None and time.monotonic() < deadline and not install.temp_files(
                    args["secret_root"] + "/etc/ssh"):
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.2))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate()
        check_invariants(args, "round %d (%s, rc %s)" % (round_, regenerate, proc.returncode))
        check_old_keys_not_trusted(args, seen, "round %d (%s, rc %s)" % (round_, regenerate, proc.returncode))
        if any(install.stale_temp_files(d) for d in _dirs(args, tmp_path)):
            mid_write += 1
    assert kills >= 10, "too few runs were killed mid-way (%d); the machine is too fast for this test" % kills
    print("killed %d runs, %d of them between writing a temporary file and renaming it" % (kills, mid_write))

    repaired = _finish(_start(tmp_path, args))
    check_invariants(args, "after repair")
    for directory in _dirs(args, tmp_path):
        assert install.stale_temp_files(directory) == [], directory
    assert not repaired.get("failed")
    again = _finish(_start(tmp_path, args))
    assert again["changed"] is False, again["actions"]


_KILL_AFTER = r"""
import os, runpy, signal, sys
from ansible_collections.vmhost.virt.plugins.module_utils.keys import install
original = install.write_group
suffix = sys.argv[2]
def write_group(files, *args, **kwargs):
    original(files, *args, **kwargs)
    if any(path.endswith(suffix) for path, _content, _mode in files):
        os.kill(os.getpid(), signal.SIGKILL)
install.write_group = write_group
sys.argv = [sys.argv[0], sys.argv[1]]
runpy.run_module("%s", run_name="__main__")
""" % MODULE


@pytest.mark.parametrize("secret", ["etc/guix/signing-key.sec", "etc/nix/signing-key.sec"])
def test_killed_right_after_regenerating_leaves_old_key_untrusted(tmp_path, secret):
    """Finding 4: SIGKILL just after the new guest key is installed, before the host files are
    updated: the replaced key must already be out of the host's ACL / nix.conf."""
    args = base_args(tmp_path, name="k2", ssh_host_key_types=["ed25519"],
                     host_nix_conf=str(tmp_path / "nix.conf"))
    _finish(_start(tmp_path, args))
    seen = {"guix": set(), "nix": set()}
    check_old_keys_not_trusted(args, seen, "first run")
    path = tmp_path / "args-kill.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, regenerate="always")}))
    proc = subprocess.run([sys.executable, "-c", _KILL_AFTER, str(path), secret],
                          capture_output=True, env=_env(), check=False)
    assert proc.returncode == -9, proc.stderr
    check_old_keys_not_trusted(args, seen, "killed after installing %s" % secret)
    assert len(seen["guix"] if "guix" in secret else seen["nix"]) == 2
    _finish(_start(tmp_path, args))
    check_old_keys_not_trusted(args, seen, "next run")
