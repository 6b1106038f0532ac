"""Unit tests of the harness's pure parts: recipes and their hash, the QEMU
command line, port checks, post-steps on a fake tree, and error messages."""

import json
import os
import socket

import pytest

from tests.harness import api, build, qemu, recipes, tree
from tests.harness.errors import HarnessError


# --------------------------------------------------------------------- recipes

def test_default_recipe_resolves_with_required_packages():
    name, spec = recipes.resolve("default")
    assert name == "default"
    assert (spec["distribution"], spec["suite"], spec["variant"]) == ("debian", "bookworm", "minbase")
    for pkg in ("systemd-sysv", "linux-image-amd64", "openssh-server", "python3",
                "libvirt-daemon-system", "qemu-guest-agent", "qemu-user-static"):
        assert pkg in spec["packages"]
    assert "cloud-init" not in spec["packages"]


def test_each_release_has_its_own_cache_entry(tmp_path):
    """Debian 12 (`default`) and Debian 13 (`trixie`): own tree, image and lock names,
    the same post-steps and package set (plus trixie's split libvirt packages)."""
    keys = {}
    for recipe, suite in (("default", "bookworm"), ("trixie", "trixie")):
        name, spec, digest, key, cache = build._resolve(recipe, str(tmp_path))
        assert (name, spec["suite"]) == (recipe, suite)
        assert all(" %s" % suite in m and m.startswith("deb ") for m in spec["mirrors"])
        assert key.startswith(recipe + "-") and key == build.cache_key(name, digest)
        keys[suite] = (key, set(spec["packages"]), spec.get("post", "harness"))
    assert keys["bookworm"][0] != keys["trixie"][0]
    assert keys["bookworm"][1] < keys["trixie"][1]
    assert keys["bookworm"][2] == keys["trixie"][2] == "harness"
    assert recipes.resolve("build-host")[0] == "default"


def test_resolve_returns_a_copy():
    spec = recipes.resolve("default")[1]
    spec["packages"].append("xyz")
    assert "xyz" not in recipes.resolve("default")[1]["packages"]


def test_hash_ignores_package_order_and_duplicates():
    spec = recipes.resolve("default")[1]
    other = dict(spec, packages=list(reversed(spec["packages"])) + spec["packages"][:2])
    assert recipes.recipe_hash(spec, 1) == recipes.recipe_hash(other, 1)


@pytest.mark.parametrize("change", [
    {"suite": "bookworm", "mirrors": ["deb http://example.org/debian bookworm main"]},
    {"packages": ["vim"]},
    {"variant": "apt"},
])
def test_hash_changes_with_the_recipe(change):
    spec = recipes.resolve("default")[1]
    changed = dict(spec)
    if "packages" in change:
        changed["packages"] = spec["packages"] + change["packages"]
    else:
        changed.update(change)
    assert recipes.recipe_hash(spec, 1) != recipes.recipe_hash(changed, 1)


def test_hash_changes_with_post_steps_version():
    spec = recipes.resolve("default")[1]
    assert recipes.recipe_hash(spec, 1) != recipes.recipe_hash(spec, 2)
    assert len(recipes.recipe_hash(spec, 1)) == 64


def test_inline_recipe_with_base_and_extra_packages():
    name, spec = recipes.resolve({"base": "default", "extra_packages": ["vim"], "name": "withvim"})
    assert name == "withvim"
    assert "vim" in spec["packages"] and "openssh-server" in spec["packages"]
    assert recipes.recipe_hash(spec, 1) != recipes.recipe_hash(recipes.resolve("default")[1], 1)


@pytest.mark.parametrize("recipe, words", [
    ("nope", ["unknown recipe", "'nope'", "default"]),
    ({"base": "default", "distribution": "fedora"}, ["unknown distribution", "fedora", "debian"]),
    ({"base": "default", "suite": "sid2"}, ["unknown suite", "sid2", "bookworm"]),
    ({"base": "default", "packages": ["ok", "bad name"]}, ["bad package name"]),
    ({"base": "nope"}, ["unknown base recipe"]),
    (42, ["a recipe is a name or a dict"]),
])
def test_bad_recipes_are_refused_clearly(recipe, words):
    with pytest.raises(HarnessError) as exc:
        recipes.resolve(recipe)
    for w in words:
        assert w in str(exc.value)


def test_mmdebstrap_argv():
    spec = recipes.resolve("default")[1]
    argv = tree.mmdebstrap_argv(spec, "/t")
    assert argv[0] == "mmdebstrap"
    assert "--variant=minbase" in argv
    inc = [a for a in argv if a.startswith("--include=")][0]
    assert inc.split("=", 1)[1].split(",") == sorted(set(spec["packages"]))
    i = argv.index("bookworm")
    assert argv[i + 1] == "/t"
    assert argv[i + 2:] == spec["mirrors"]


# --------------------------------------------------------------------- post-steps

def _fake_tree(tmp_path):
    root = tmp_path / "root"
    for d in ("etc/ssh", "boot", "var/lib/dbus", "root/.ssh"):
        (root / d).mkdir(parents=True)
    (root / "etc/ssh/ssh_host_rsa_key").write_text("secret")
    (root / "etc/ssh/ssh_host_rsa_key.pub").write_text("pub")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "var/lib/dbus/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "root/.ssh/authorized_keys").write_text("ssh-ed25519 AAAA stale\n")
    (root / "boot/vmlinuz-6.1.0-1-amd64").write_text("k")
    (root / "boot/initrd.img-6.1.0-1-amd64").write_text("i")
    return root


def test_post_steps_write_the_instance_independent_files(tmp_path):
    root = _fake_tree(tmp_path)
    tree.post_steps(str(root))
    assert "iface eth0 inet dhcp" in (root / "etc/network/interfaces").read_text()
    assert (root / "etc/fstab").read_text().splitlines()[-1].startswith("/dev/vda / ext4")
    assert (root / "etc/machine-id").read_text() == ""
    assert os.readlink(root / "var/lib/dbus/machine-id") == "/etc/machine-id"
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert not (root / "root/.ssh/authorized_keys").exists()
    sshd = (root / "etc/ssh/sshd_config.d/vmhost-harness.conf").read_text()
    assert "PermitRootLogin prohibit-password" in sshd and "PasswordAuthentication no" in sshd
    script = root / "usr/local/sbin/vmhost-harness-firstboot"
    assert os.stat(script).st_mode & 0o777 == 0o755
    assert tree.KEY_PARAM + "=" in script.read_text()
    wants = root / "etc/systemd/system/sysinit.target.wants/vmhost-harness-firstboot.service"
    assert os.readlink(wants) == "/etc/systemd/system/vmhost-harness-firstboot.service"
    assert os.readlink(root / "etc/systemd/system/apt-daily.timer") == "/dev/null"


def test_post_steps_are_repeatable(tmp_path):
    root = _fake_tree(tmp_path)
    tree.post_steps(str(root))
    tree.post_steps(str(root))


def test_post_steps_refuse_a_non_tree(tmp_path):
    with pytest.raises(HarnessError, match="does not look like a root tree"):
        tree.post_steps(str(tmp_path))


def test_find_boot_files(tmp_path):
    root = _fake_tree(tmp_path)
    kernel, initrd = tree.find_boot_files(str(root))
    assert kernel.endswith("boot/vmlinuz-6.1.0-1-amd64")
    assert initrd.endswith("boot/initrd.img-6.1.0-1-amd64")
    os.unlink(initrd)
    with pytest.raises(HarnessError, match="has no initrd"):
        tree.find_boot_files(str(root))


def test_find_boot_files_without_kernel(tmp_path):
    (tmp_path / "boot").mkdir()
    with pytest.raises(HarnessError, match="linux-image-amd64"):
        tree.find_boot_files(str(tmp_path))


def test_firstboot_script_extracts_the_key(tmp_path):
    """Run the guest script's parsing on a fake /proc/cmdline with sh."""
    script = tree.FIRSTBOOT_SCRIPT
    script = script.replace("/proc/cmdline", str(tmp_path / "cmdline"))
    script = script.replace("/root/.ssh", str(tmp_path / "ssh"))
    script = script.split("# one ed25519 host key")[0]
    (tmp_path / "cmdline").write_text(
        "root=/dev/vda rw %s=ssh-ed25519:AAAAC3Nza quiet\n" % tree.KEY_PARAM)
    (tmp_path / "s.sh").write_text(script)
    assert os.system("sh %s" % (tmp_path / "s.sh")) == 0
    ak = tmp_path / "ssh" / "authorized_keys"
    assert ak.read_text() == "ssh-ed25519 AAAAC3Nza vmhost-harness\n"
    assert os.stat(ak).st_mode & 0o777 == 0o600


# --------------------------------------------------------------------- sizes

def test_default_size_leaves_free_space_and_is_aligned():
    size = build.default_size(1400 * build.MIB, 50000)
    assert size % (256 * build.MIB) == 0
    assert size - build.minimum_size(1400 * build.MIB, 50000) >= build.FREE_SPACE


def test_too_small_size_is_refused_with_numbers():
    with pytest.raises(HarnessError) as exc:
        build.check_size(1024 * build.MIB, 1400 * build.MIB, 50000)
    msg = str(exc.value)
    assert "too small" in msg and "1024 MiB" in msg and "at least" in msg


def test_inode_bound_size():
    assert build.minimum_size(0, 100000) >= 100000 * build.BYTES_PER_INODE


# --------------------------------------------------------------------- QEMU

def _argv(**kw):
    args = dict(qemu="/usr/bin/qemu-system-x86_64", name="t1", accel="tcg", cpu="max",
                memory=1024, cpus=2, kernel="/k", initrd="/i", disk="/d/disk.qcow2",
                port=2222, console_log="/d/console.log", pidfile="/d/qemu.pid",
                append="root=/dev/vda")
    args.update(kw)
    return qemu.vm_argv(**args)


def _pairs(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_vm_argv_tcg():
    argv = _argv()
    assert argv[0] == "/usr/bin/qemu-system-x86_64"
    assert _pairs(argv, "-accel") == ["tcg,thread=multi"]
    assert _pairs(argv, "-cpu") == ["max"]
    assert _pairs(argv, "-kernel") == ["/k"] and _pairs(argv, "-initrd") == ["/i"]
    assert _pairs(argv, "-serial") == ["file:/d/console.log"]
    assert _pairs(argv, "-pidfile") == ["/d/qemu.pid"]
    assert "-daemonize" in argv
    nic = _pairs(argv, "-nic")[0]
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in nic and nic.startswith("user,")
    assert "org.qemu.guest_agent.0" not in " ".join(argv)


def test_vm_argv_never_binds_beyond_loopback():
    argv = " ".join(_argv(qga_socket="/d/qga.sock", qmp_socket="/d/qmp.sock"))
    assert "hostfwd=tcp::" not in argv and "0.0.0.0" not in argv
    assert "tcp:127.0.0.1:" in argv


def test_vm_argv_kvm_cpu_choices():
    assert _pairs(_argv(accel="kvm", cpu="host"), "-cpu") == ["host"]
    assert _pairs(_argv(accel="kvm", cpu=None), "-cpu") == []
    assert _pairs(_argv(accel="kvm", cpu=None), "-accel") == ["kvm"]


def test_vm_argv_guest_agent_drives_and_extra_args():
    argv = _argv(qga_socket="/d/qga.sock", drives=[("/x/extra.img", "raw"), "file=/y,if=none,id=z"],
                 extra_args=["-device", "virtio-balloon"])
    joined = " ".join(argv)
    assert "socket,id=qga0,path=/d/qga.sock,server=on,wait=off" in joined
    assert "name=org.qemu.guest_agent.0" in joined
    drives = _pairs(argv, "-drive")
    assert "file=/x/extra.img,if=virtio,format=raw" in drives
    assert "file=/y,if=none,id=z" in drives
    assert argv[-2:] == ["-device", "virtio-balloon"]


def test_vm_argv_refuses_comma_paths_and_bad_ports():
    with pytest.raises(HarnessError, match="comma"):
        _argv(drives=[("/x,y", "raw")])
    with pytest.raises(HarnessError, match="bad SSH port"):
        _argv(port=0)


def test_unknown_accel():
    with pytest.raises(HarnessError, match="unknown accelerator"):
        qemu.accel_args("hvf")


def test_kernel_cmdline_carries_key_and_hostname():
    line = qemu.kernel_cmdline("web-1", "ssh-ed25519 AAAAC3Nz comment here\n")
    words = line.split()
    for w in ("root=/dev/vda", "rw", "console=ttyS0", "net.ifnames=0",
              "systemd.hostname=web-1", "%s=ssh-ed25519:AAAAC3Nz" % tree.KEY_PARAM):
        assert w in words
    assert "comment" not in line
    with pytest.raises(HarnessError, match="not an OpenSSH public key"):
        qemu.kernel_cmdline("x", "garbage")


def test_probe_argv_has_no_root_and_no_reboot():
    argv = qemu.probe_argv("q", "kvm", "/k", "host")
    assert "-no-reboot" in argv
    append = _pairs(argv, "-append")[0]
    assert "panic=-1" in append and "root=/dev/vmhost-probe-none" in append
    assert "-initrd" not in argv


def test_missing_qemu_names_the_package():
    with pytest.raises(HarnessError) as exc:
        qemu.find_qemu(which=lambda name: None)
    assert "qemu-system-x86_64 not found" in str(exc.value)
    assert "apt-get install qemu-system-x86" in str(exc.value)


def test_forced_accel(monkeypatch):
    monkeypatch.setenv(qemu.ACCEL_ENV, "tcg")
    assert qemu.choose_accel("q", "/k")[:2] == ("tcg", "max")
    monkeypatch.setenv(qemu.ACCEL_ENV, "bogus")
    with pytest.raises(HarnessError, match="use kvm or tcg"):
        qemu.choose_accel("q", "/k")


def test_cached_probe_verdict_is_used(monkeypatch, tmp_path):
    monkeypatch.delenv(qemu.ACCEL_ENV, raising=False)
    monkeypatch.setattr(qemu.os, "access", lambda p, m: True)
    monkeypatch.setattr(qemu, "qemu_version", lambda q: "QEMU emulator version 7.2")
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    key = qemu.probe_key(str(kernel), "QEMU emulator version 7.2", os.uname().release)
    (tmp_path / "accel").mkdir()
    (tmp_path / "accel" / (key + ".json")).write_text(
        json.dumps({"accel": "kvm", "cpu": "host", "reason": "probe ok"}))
    monkeypatch.setattr(qemu, "_probe_kvm", lambda *a, **k: pytest.fail("probe must not run"))
    assert qemu.choose_accel("q", str(kernel), cache=str(tmp_path)) == ("kvm", "host", "probe ok (cached)")


def test_probe_falls_back_to_tcg_and_caches(monkeypatch, tmp_path):
    monkeypatch.delenv(qemu.ACCEL_ENV, raising=False)
    monkeypatch.setattr(qemu.os, "access", lambda p, m: True)
    monkeypatch.setattr(qemu, "qemu_version", lambda q: "v")
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    calls = []
    monkeypatch.setattr(qemu, "_probe_kvm",
                        lambda q, k, cpu, timeout=0: calls.append(cpu) or (False, "hang %s" % cpu))
    accel, cpu, reason = qemu.choose_accel("q", str(kernel), cache=str(tmp_path))
    assert (accel, cpu) == ("tcg", "max") and calls == list(qemu.KVM_CPUS)
    assert "hang host" in reason
    assert len(os.listdir(tmp_path / "accel")) == 1


def test_probe_picks_kvm_when_it_boots(monkeypatch, tmp_path):
    monkeypatch.delenv(qemu.ACCEL_ENV, raising=False)
    monkeypatch.setattr(qemu.os, "access", lambda p, m: True)
    monkeypatch.setattr(qemu, "qemu_version", lambda q: "v")
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    monkeypatch.setattr(qemu, "_probe_kvm", lambda q, k, cpu, timeout=0: (cpu == "host", "x"))
    assert qemu.choose_accel("q", str(kernel), cache=str(tmp_path))[:2] == ("kvm", "host")


# --------------------------------------------------------------------- ports

def test_taken_port_is_refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        if port < 1024:
            pytest.skip("kernel gave a privileged port")
        assert not qemu.port_free(port)
        with pytest.raises(HarnessError) as exc:
            qemu.check_port(port)
        assert "port %d on 127.0.0.1 is already taken" % port in str(exc.value)
    finally:
        s.close()


@pytest.mark.parametrize("port", [0, 80, 70000, "22", True])
def test_bad_port_values(port):
    with pytest.raises(HarnessError, match="not a port number"):
        qemu.check_port(port)


def test_free_port_is_free():
    port = qemu.free_port()
    assert qemu.port_free(port)


# --------------------------------------------------------------------- api

@pytest.mark.parametrize("name", ["Bad", "-x", "x-", "a_b", "", "a" * 64, None])
def test_bad_names(name):
    with pytest.raises(HarnessError, match="bad instance name"):
        api.check_name(name)


def test_good_names():
    for name in ("default-vm", "vmhost-demo", "a", "x1"):
        assert api.check_name(name) == name


def test_parse_options():
    assert api.parse_options('{"recipe": "default", "memory": 1536, "guest_agent": true}') == {
        "recipe": "default", "memory": 1536, "guest_agent": True}
    assert api.parse_options("null") == {}
    with pytest.raises(HarnessError, match="unknown harness option"):
        api.parse_options('{"memroy": 1}')
    with pytest.raises(HarnessError, match="not valid JSON"):
        api.parse_options("{")
    with pytest.raises(HarnessError, match="must be a list"):
        api.parse_options('{"drives": "x"}')
    with pytest.raises(HarnessError, match="must be a mapping"):
        api.parse_options("[1]")


def test_ssh_argv():
    info = {"identity_file": "/k", "port": 2200, "user": "root", "address": "127.0.0.1"}
    argv = api.ssh_argv(info, "true")
    assert argv[:5] == ["ssh", "-i", "/k", "-p", "2200"]
    assert "BatchMode=yes" in argv and argv[-3:] == ["root@127.0.0.1", "--", "true"]


def test_up_refuses_bad_input_before_booting(monkeypatch, tmp_path):
    monkeypatch.setenv("VMHOST_HARNESS_STATE", str(tmp_path))
    monkeypatch.setattr(api._build, "build", lambda **kw: pytest.fail("must not build"))
    with pytest.raises(HarnessError, match="unknown instance kind"):
        api.up("x", kind="lxc")
    with pytest.raises(HarnessError, match="memory must be"):
        api.up("x", memory=12)
    with pytest.raises(HarnessError, match="cpus must be"):
        api.up("x", cpus=0)
    monkeypatch.setattr(qemu.shutil, "which", lambda n: None)
    with pytest.raises(HarnessError, match="apt-get install qemu-system-x86"):
        api.up("x")
    monkeypatch.setattr(qemu.shutil, "which", lambda n: "/usr/bin/" + n)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        port = s.getsockname()[1]
        with pytest.raises(HarnessError, match="already taken"):
            api.up("x", port=port)
    finally:
        s.close()
    assert not os.path.exists(tmp_path / "instances" / "x")


def test_down_of_absent_instance_is_not_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("VMHOST_HARNESS_STATE", str(tmp_path))
    assert api.down("nothing-here") is False


def test_console_tail(tmp_path):
    log = tmp_path / "console.log"
    log.write_text("".join("line %d\r\n" % i for i in range(100)))
    tail = api.console_tail(str(log), lines=3)
    assert tail == "line 97\nline 98\nline 99"
    assert "no console log" in api.console_tail(str(tmp_path / "none"))


def test_list_instances_sees_stale_dirs(monkeypatch, tmp_path):
    monkeypatch.setenv("VMHOST_HARNESS_STATE", str(tmp_path))
    d = tmp_path / "instances" / "old"
    d.mkdir(parents=True)
    (d / "qemu.pid").write_text("999999999\n")
    assert api.list_instances() == [{"name": "old", "kind": "vm", "pid": 999999999,
                                    "address": None, "port": None, "running": False}]


def test_demo_inventory_puts_the_vm_in_every_group():
    from tests.harness import demo
    info = {"name": "vmhost-demo", "address": "127.0.0.1", "port": 2200, "user": "root",
            "identity_file": "/k"}
    inv = demo.inventory(info)
    assert inv["all"]["hosts"]["vmhost-demo"]["ansible_port"] == 2200
    assert set(inv["all"]["children"]) == {"vm_hosts", "build_hosts", "guests"}
    assert "-p 2200" in demo.ssh_command(info) and "root@127.0.0.1" in demo.ssh_command(info)
