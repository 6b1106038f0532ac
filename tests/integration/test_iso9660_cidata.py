"""A cidata seed from vmhost.virt.iso9660, attached as a CD to a harness VM that has cloud-init, creates the
user and authorized key it describes: SSH as that user works.

The shared `default` recipe has no cloud-init, so this test boots an inline recipe (`default` plus the
cloud-init package), which the harness caches under its own hash."""
import subprocess

import pytest

from iso9660_helpers import run_module

pytestmark = [pytest.mark.slow, pytest.mark.root]

NAME = "iso9660-cidata"
RECIPE = {"base": "default", "name": "cloudinit", "extra_packages": ["cloud-init"]}


def test_cidata_seed_creates_user_with_key(tmp_path):
    from tests.harness import api

    key = tmp_path / "alice_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@iso9660-test", "-f", str(key)],
                   check=True)
    pub = (tmp_path / "alice_ed25519.pub").read_text().strip()
    seed = tmp_path / "seed.iso"
    result, failed = run_module({"path": str(seed), "cidata": {
        "user_data": {
            "users": [{"name": "alice", "shell": "/bin/bash", "sudo": "ALL=(ALL) NOPASSWD:ALL",
                       "ssh_authorized_keys": [pub]}],
            "disable_root": False,          # the harness reaches the VM as root
            "ssh_deletekeys": False,
        },
        "meta_data": {"instance-id": "iso9660-cidata-1", "local-hostname": "seeded"},
        # the harness image already configures eth0; keep cloud-init from writing a second stanza
        "network_config": {"config": "disabled"},
    }})
    assert not failed and result["volume_id"] == "CIDATA", result

    info = api.up(name=NAME, recipe=RECIPE, drives=["file=%s,media=cdrom,if=ide,readonly=on" % seed],
                  timeout=900)
    try:
        status = api.ssh(info, "cloud-init status --wait --long || true", timeout=900)
        alice = dict(info, user="alice", identity_file=str(key))
        who = api.ssh(alice, "id -un; hostname; sudo -n true && echo sudo-ok", timeout=120)
        assert who.stdout.split() == ["alice", "seeded", "sudo-ok"], (who.stdout, status.stdout)
        ds = api.ssh(info, "cloud-init query v1.platform 2>/dev/null || cloud-id", timeout=120, check=False)
        assert "nocloud" in ds.stdout.lower(), ds.stdout + ds.stderr
    finally:
        api.down(NAME)
