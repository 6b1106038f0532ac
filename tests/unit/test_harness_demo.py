"""Unit tests of the demo's plan (tests/harness/demo.py): the inventory site.yml
runs with, the build VM built from the image record, the image cache key and the
printed offloaded-build command. Pure functions, nothing boots."""

import os
import shlex

import pytest

from tests.harness import __main__ as cli
from tests.harness import demo
from tests.harness.errors import HarnessError

VM = {"name": "vmhost-demo", "address": "127.0.0.1", "port": 2200, "user": "root",
      "identity_file": "/state/instances/vmhost-demo/id_ed25519"}
BUILD = {"name": "vmhost-demo-build", "address": "10.99.3.2", "port": 22, "user": "root",
         "identity_file": "/state/instances/vmhost-demo-build/id_ed25519"}
RECORD = {"image": "/var/tmp/x/build-vm.qcow2", "kernel": "/var/tmp/x/build-vm.vmlinuz",
          "initrd": "/var/tmp/x/build-vm.initrd",
          "append": "root=PARTUUID=abc rw console=ttyS0 systemd.ssh_auto=no"}


def test_build_machine_points_at_the_bound_image_and_keeps_append():
    m = demo.build_machine(RECORD)
    assert m["name"] == "demo"
    assert m["image"] == "/srv/build-vm-image/build-vm.qcow2"
    assert m["kernel"] == "/srv/build-vm-image/build-vm.vmlinuz"
    assert m["initrd"] == "/srv/build-vm-image/build-vm.initrd"
    assert m["append"] == RECORD["append"]
    assert "x86_64-linux" in m["systems"]
    assert demo.build_machine(RECORD, target="/srv/img/")["image"] == "/srv/img/build-vm.qcow2"


@pytest.mark.parametrize("field", ["image", "kernel", "initrd", "append"])
def test_build_machine_refuses_an_incomplete_record(field):
    rec = dict(RECORD)
    del rec[field]
    with pytest.raises(HarnessError, match=field):
        demo.build_machine(rec)


def test_inventory_with_both_hosts():
    m = demo.build_machine(RECORD)
    inv = demo.inventory(VM, BUILD, m)["all"]
    assert set(inv["hosts"]) == {"vmhost-demo", "vmhost-demo-build"}
    # the VM host as before: every group, no build VM of its own
    for g in ("vm_hosts", "build_hosts", "guests"):
        assert "vmhost-demo" in inv["children"][g]["hosts"]
    assert "build_vm_machines" not in inv["hosts"]["vmhost-demo"]
    # the build host: build_hosts only, one build VM, Nix offloading forced on
    assert [g for g, c in inv["children"].items() if "vmhost-demo-build" in c["hosts"]] \
        == ["build_hosts"]
    bh = inv["hosts"]["vmhost-demo-build"]
    assert bh["build_vm_machines"] == [m]
    assert bh["build_vm_nix"] == "always"
    assert (bh["ansible_host"], bh["ansible_port"]) == ("10.99.3.2", 22)
    assert bh["ansible_ssh_private_key_file"] == BUILD["identity_file"]
    assert inv["vars"] == demo.DEMO_VARS


def test_inventory_of_one_part_has_only_its_groups():
    only_build = demo.inventory(None, BUILD, demo.build_machine(RECORD))["all"]
    assert set(only_build["hosts"]) == {"vmhost-demo-build"}
    assert set(only_build["children"]) == {"build_hosts"}
    only_vm = demo.inventory(VM)["all"]
    assert set(only_vm["hosts"]) == {"vmhost-demo"}
    assert set(only_vm["children"]) == {"vm_hosts", "build_hosts", "guests"}


def test_inventory_refuses_nothing_or_a_build_host_without_its_vm():
    with pytest.raises(HarnessError, match="at least one host"):
        demo.inventory()
    with pytest.raises(HarnessError, match="build VM"):
        demo.inventory(VM, BUILD, None)


def _tree(root):
    for rel, text in [("playbooks/build_vm_image.yml", "a"),
                      ("roles/build_vm_guest/tasks/main.yml", "b"),
                      ("roles/build_vm_guest/files/x", "c"),
                      ("plugins/module_utils/secret_service.py", "d"),
                      ("tests/harness/recipes.py", "e")]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_image_key_follows_every_input_and_ignores_bytecode(tmp_path):
    _tree(tmp_path)
    k = demo.image_key(str(tmp_path))
    assert len(k) == 16 and k == demo.image_key(str(tmp_path))
    cache = tmp_path / "roles/build_vm_guest/__pycache__"
    cache.mkdir()
    (cache / "m.pyc").write_text("z")
    assert demo.image_key(str(tmp_path)) == k
    seen = {k}
    for rel in ("playbooks/build_vm_image.yml", "roles/build_vm_guest/files/x",
                "plugins/module_utils/secret_service.py", "tests/harness/recipes.py"):
        (tmp_path / rel).write_text("changed " + rel)
        seen.add(demo.image_key(str(tmp_path)))
    assert len(seen) == 5
    # a renamed file changes the key even with the same content
    os.rename(tmp_path / "roles/build_vm_guest/files/x", tmp_path / "roles/build_vm_guest/files/y")
    assert demo.image_key(str(tmp_path)) not in seen


def test_image_key_refuses_a_missing_input(tmp_path):
    _tree(tmp_path)
    os.remove(tmp_path / "tests/harness/recipes.py")
    with pytest.raises(HarnessError, match="recipes.py"):
        demo.image_key(str(tmp_path))


def test_image_key_of_this_checkout():
    assert len(demo.image_key(demo.top_dir())) == 16


def test_image_argv_builds_into_the_cache_with_the_playbook():
    argv = demo.image_argv("/v/bin/ansible-playbook", "/top", "/trees/t", "/state/img")
    assert argv[:2] == ["/v/bin/ansible-playbook", "/top/playbooks/build_vm_image.yml"]
    extra = dict(a.split("=", 1) for a in argv[3::2])
    assert extra == {"build_vm_image_tree": "/trees/t", "build_vm_image_output_dir": "/state/img",
                     "build_vm_image_name": "build-vm", "build_vm_image_size": "3G"}
    assert all(a == "-e" for a in argv[2::2])


def test_offload_command_parses_back_to_the_harness_ssh_call():
    words = shlex.split(demo.offload_command(BUILD, "/work/my tree", "/work/my tree/.venv/bin/python"))
    assert words[:4] == ["cd", "/work/my tree", "&&", ".venv/bin/python"]
    words = words[3:]
    assert words[1:6] == ["-m", "tests.harness", "ssh", "--name", "vmhost-demo-build"]
    assert words[6] == "--" and len(words) == 8
    remote = words[7]
    assert "nix-build --max-jobs 0" in remote and demo.OFFLOAD_NIX in remote
    assert "nix store verify --sigs-needed 1" in remote
    # the CLI passes it on as one remote command
    args = cli._parser().parse_args(words[3:])
    assert args.cmd == "ssh" and args.command == ["--", remote]


def test_offload_command_keeps_an_interpreter_outside_the_tree_absolute():
    words = shlex.split(demo.offload_command(BUILD, "/top", "/usr/bin/python3"))
    assert words[:4] == ["cd", "/top", "&&", "/usr/bin/python3"]
    assert shlex.split(demo.offload_command(BUILD, "/top", "/topper/python"))[3] == "/topper/python"


def test_offload_derivation_is_new_at_every_evaluation():
    assert "builtins.currentTime" in demo.OFFLOAD_DRV
    assert 'system = "x86_64-linux"' in demo.OFFLOAD_DRV


def test_demo_cli_parts_and_image_flag():
    p = cli._parser()
    assert p.parse_args(["demo", "up"]).part == "all"
    assert p.parse_args(["demo", "up", "--part", "build-host"]).part == "build-host"
    assert p.parse_args(["demo", "destroy", "--image"]).image is True
    assert p.parse_args(["demo", "destroy"]).image is False
    with pytest.raises(SystemExit):
        p.parse_args(["demo", "up", "--part", "nothing"])
    with pytest.raises(HarnessError, match="part"):
        demo.up(part="nothing")


def test_demo_release_defaults_to_debian_13_and_keeps_debian_12(monkeypatch):
    from tests.harness import recipes
    monkeypatch.delenv(demo.RELEASE_ENV, raising=False)
    release, vm_recipe, build_recipe = demo.release_recipes()
    assert release == "trixie"
    assert recipes.resolve(vm_recipe)[1]["suite"] == "trixie"
    # build_vm is tested on Debian 12 build hosts only
    assert recipes.resolve(build_recipe)[1]["suite"] == "bookworm"
    release, vm_recipe, build_recipe = demo.release_recipes("bookworm")
    assert (vm_recipe, build_recipe) == ("default", "build-host")
    for recipe in (vm_recipe, build_recipe):
        assert recipes.resolve(recipe)[1]["suite"] == "bookworm"
    monkeypatch.setenv(demo.RELEASE_ENV, "bookworm")
    assert demo.release_recipes()[0] == "bookworm"
    assert demo.release_recipes("trixie")[0] == "trixie"
    # the demo's build host boots a tree with what build_vm needs on both releases
    for recipe in ("trixie", "build-host"):
        pkgs = recipes.resolve(recipe)[1]["packages"]
        assert {"nix-bin", "qemu-system-x86", "python3-cryptography"} <= set(pkgs)


def test_demo_release_cli_and_refusal(monkeypatch):
    p = cli._parser()
    assert p.parse_args(["demo", "up"]).release is None
    assert p.parse_args(["demo", "up", "--release", "bookworm"]).release == "bookworm"
    with pytest.raises(SystemExit):
        p.parse_args(["demo", "up", "--release", "sid"])
    monkeypatch.setenv(demo.RELEASE_ENV, "sid")
    with pytest.raises(HarnessError, match="unknown demo release 'sid'"):
        demo.up(part="all")
