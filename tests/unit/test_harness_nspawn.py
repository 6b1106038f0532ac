"""Unit tests of the harness's nspawn kind: subnet and interface planning,
bind validation, the systemd-nspawn command line, the files written into the
instance's overlay, option checks per kind, the new recipes and the
``image`` post-step profile."""

import json
import os

import pytest

from tests.harness import __main__ as cli
from tests.harness import api, nspawn, recipes, tree
from tests.harness.errors import HarnessError

# ------------------------------------------------------------------ subnets


def test_subnet_addresses():
    net = nspawn.subnet(7)
    assert net == {"number": 7, "network": "10.99.7.0/24", "host": "10.99.7.1",
                   "guest": "10.99.7.2", "prefix": 24}


@pytest.mark.parametrize("n", [0, 255, -1, "3", True, None])
def test_subnet_out_of_range(n):
    with pytest.raises(HarnessError, match="out of range"):
        nspawn.subnet(n)


def test_interface_names_fit_ifnamsiz_and_are_distinct():
    names = [nspawn.host_ifname(n) for n in nspawn.SUBNET_RANGE]
    assert max(len(n) for n in names) <= 15
    assert len(set(names)) == len(names)
    assert nspawn.host_ifname(254) == "vmhns254"


def _addr(ifname, *cidrs):
    return {"ifname": ifname, "addr_info": [
        {"local": c.split("/")[0], "prefixlen": int(c.split("/")[1])} for c in cidrs]}


def test_subnets_in_use_from_addresses_routes_and_links():
    addrs = [_addr("lo", "127.0.0.1/8"), _addr("eth0", "192.0.2.2/24"),
             _addr("vmhns1", "10.99.1.1/24"), _addr("br0", "10.99.4.77/24"),
             {"ifname": "vmhns9", "addr_info": []}, {"ifname": "vmhnsx", "addr_info": []}]
    routes = [{"dst": "default", "gateway": "192.0.2.1"}, {"dst": "192.0.2.0/24"},
              {"dst": "10.99.6.128/25"}, {"dst": "10.99.8.9"}, {"dst": "10.98.0.0/16"}]
    assert nspawn.subnets_in_use(addrs, routes) == {1, 4, 6, 8, 9}


def test_a_wide_address_or_route_takes_every_subnet():
    assert nspawn.subnets_in_use([_addr("eth1", "10.99.200.5/16")], []) == set(nspawn.SUBNET_RANGE)
    assert nspawn.subnets_in_use([], [{"dst": "10.0.0.0/8"}]) == set(nspawn.SUBNET_RANGE)
    assert nspawn.subnets_in_use(None, None) == set()


def test_pick_subnet_skips_used_and_reserved():
    assert nspawn.pick_subnet(set()) == 1
    assert nspawn.pick_subnet({1, 2}, {3}) == 4
    assert nspawn.pick_subnet({1}, {1, 5}) == 2


def test_pick_subnet_when_everything_is_taken():
    with pytest.raises(HarnessError, match="no free 10.99.N.0/24"):
        nspawn.pick_subnet(set(range(1, 200)), set(range(200, 255)))


# ------------------------------------------------------------------ binds


def test_binds_are_normalised(tmp_path):
    src = tmp_path / "img"
    src.write_text("x")
    out = nspawn.check_binds([{"source": str(src)},
                              {"source": str(tmp_path), "target": "/srv/a/../b",
                               "readonly": True}])
    assert out == [{"source": str(src), "target": str(src), "readonly": False},
                   {"source": str(tmp_path), "target": "/srv/b", "readonly": True}]
    assert nspawn.check_binds(None) == []


@pytest.mark.parametrize("binds, words", [
    ({"source": "/"}, "must be a list"),
    (["/tmp"], "must be a mapping"),
    ([{"source": "/tmp", "mode": "ro"}], "unknown key"),
    ([{"source": "/tmp", "target": "relative"}], "absolute path"),
    ([{"source": "/tmp", "target": "/"}], "must not be /"),
    ([{"source": "/tmp", "target": "/a:b"}], "cannot be passed"),
    ([{"source": "/tmp", "readonly": "yes"}], "true or false"),
    ([{"source": "/does/not/exist/at/all"}], "does not exist"),
    ([{"target": "/x"}], "must be a path"),
])
def test_bad_binds_are_refused(binds, words):
    with pytest.raises(HarnessError, match=words):
        nspawn.check_binds(binds)


# ------------------------------------------------------------------ argv


def test_nspawn_argv():
    binds = [{"source": "/srv/img", "target": "/srv/img", "readonly": True},
             {"source": "/var/tmp/x", "target": "/x", "readonly": False}]
    argv = nspawn.nspawn_argv("/usr/bin/systemd-nspawn", "bh", "/i/bh/root", "vmhns3", binds,
                              ["--capability=CAP_NET_ADMIN"])
    assert argv[0] == "/usr/bin/systemd-nspawn"
    for opt in ("--boot", "--register=no", "--keep-unit", "--directory=/i/bh/root",
                "--machine=bh", "--hostname=bh", "--network-veth-extra=vmhns3:host0"):
        assert opt in argv
    assert "--network-veth" not in argv          # would name the host end ve-NAME, hashed
    assert argv.index("--bind-ro=/srv/img:/srv/img") < argv.index("--bind=/var/tmp/x:/x")
    assert argv[-1] == "--capability=CAP_NET_ADMIN"


def test_nspawn_argv_refuses_a_long_interface_name():
    with pytest.raises(HarnessError, match="longer than 15"):
        nspawn.nspawn_argv("n", "x", "/r", "a-very-long-ifname")


def test_network_file_is_static_on_host0():
    text = nspawn.network_file(nspawn.subnet(12))
    assert "Name=host0" in text
    assert "Address=10.99.12.2/24" in text and "Gateway=10.99.12.1" in text
    assert "DHCP" not in text


def test_instance_files_written_into_a_tree(tmp_path):
    root = tmp_path / "root"
    getty = root / "etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"
    getty.parent.mkdir(parents=True)
    getty.symlink_to("/lib/systemd/system/serial-getty@.service")
    (root / "etc/fstab").write_text("/dev/vda / ext4 rw 0 1\n")
    files = nspawn.instance_files("bh-1", "ssh-ed25519 AAAAkey harness\n", nspawn.subnet(3))
    nspawn.write_instance_files(str(root), files)
    nspawn.write_instance_files(str(root), files)          # repeatable
    assert (root / "etc/hostname").read_text() == "bh-1\n"
    assert "127.0.1.1\tbh-1" in (root / "etc/hosts").read_text()
    assert "/dev/vda" not in (root / "etc/fstab").read_text()
    ak = root / "root/.ssh/authorized_keys"
    assert ak.read_text() == "ssh-ed25519 AAAAkey harness\n"
    assert os.stat(ak).st_mode & 0o777 == 0o600
    assert os.stat(ak.parent).st_mode & 0o777 == 0o700
    assert os.readlink(root / "etc/systemd/system/networking.service") == "/dev/null"
    wants = root / "etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
    assert os.readlink(wants) == "/lib/systemd/system/systemd-networkd.service"
    assert "Address=10.99.3.2/24" in (root / nspawn.NETWORK_FILE.lstrip("/")).read_text()
    assert not os.path.lexists(getty)


# ------------------------------------------------------------------ cgroups


def test_cgroup_dirs_hybrid_and_unified(tmp_path):
    hybrid = tmp_path / "hybrid"
    (hybrid / "systemd").mkdir(parents=True)
    (hybrid / "unified").mkdir()
    (hybrid / "memory").mkdir()
    assert nspawn.cgroup_dirs("x", str(hybrid)) == [
        str(hybrid / "systemd" / "vmhost-harness-x"), str(hybrid / "unified" / "vmhost-harness-x")]
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpu memory\n")
    assert nspawn.cgroup_dirs("x", str(v2)) == [str(v2 / "vmhost-harness-x")]


def test_cgroup_pids_and_removal(tmp_path):
    top = tmp_path / "vmhost-harness-x"
    (top / "payload" / "init.scope").mkdir(parents=True)
    (top / "cgroup.procs").write_text("")
    (top / "payload" / "init.scope" / "cgroup.procs").write_text("11\n12\n")
    assert nspawn.cgroup_pids([str(top)]) == {11, 12}
    for f in top.rglob("cgroup.procs"):
        f.unlink()                       # real cgroup dirs have no removable files
    nspawn.remove_cgroups([str(top), str(tmp_path / "absent")])
    assert not top.exists()


# ------------------------------------------------------------------ options per kind


def test_vm_options_are_refused_for_nspawn():
    with pytest.raises(HarnessError, match=r"memory, port only apply to kind vm, not to kind nspawn"):
        api.check_kind_options("nspawn", {"memory": 512, "port": 2222, "cpus": None})


def test_nspawn_options_are_refused_for_vm():
    with pytest.raises(HarnessError, match="binds only apply to kind nspawn, not to kind vm"):
        api.check_kind_options("vm", {"binds": [], "memory": 512})
    api.check_kind_options("vm", {"memory": 512, "binds": None})


def test_up_refuses_other_kind_options_before_anything(monkeypatch, tmp_path):
    monkeypatch.setenv("VMHOST_HARNESS_STATE", str(tmp_path))
    monkeypatch.setattr(api._build, "build_tree_only", lambda **kw: pytest.fail("must not build"))
    monkeypatch.setattr(api._build, "build", lambda **kw: pytest.fail("must not build"))
    with pytest.raises(HarnessError, match="guest_agent only apply to kind vm"):
        api.up("x", kind="nspawn", guest_agent=True)
    with pytest.raises(HarnessError, match="nspawn_args only apply to kind nspawn"):
        api.up("x", nspawn_args=["--capability=all"])
    monkeypatch.setattr(nspawn, "find_nspawn", lambda: "/usr/bin/systemd-nspawn")
    with pytest.raises(HarnessError, match="does not exist"):
        api.up("x", kind="nspawn", binds=[{"source": str(tmp_path / "nope")}])
    with pytest.raises(HarnessError, match="nspawn_args must be a list of options"):
        api.up("x", kind="nspawn", nspawn_args=["rm -rf /"])
    assert not os.path.exists(tmp_path / "instances" / "x")


def test_parse_options_takes_nspawn_keys():
    opts = api.parse_options(json.dumps({"kind": "nspawn", "recipe": "build-host",
                                         "binds": [{"source": "/srv"}]}))
    assert opts["kind"] == "nspawn" and opts["binds"] == [{"source": "/srv"}]
    with pytest.raises(HarnessError, match="binds must be a list"):
        api.parse_options('{"binds": "/srv"}')


def test_cli_bind_flags():
    assert cli._binds(["/a", "/b:/c"], False) + cli._binds(["/d"], True) == [
        {"source": "/a", "target": "/a", "readonly": False},
        {"source": "/b", "target": "/c", "readonly": False},
        {"source": "/d", "target": "/d", "readonly": True}]


def test_cli_up_passes_only_given_options(monkeypatch, capsys):
    seen = {}

    def fake_up(**kw):
        seen.update(kw)
        return {"name": kw["name"]}
    monkeypatch.setattr(api, "up", fake_up)
    assert cli.main(["up", "--name", "n1", "--options-json", '{"kind": "nspawn"}']) == 0
    assert seen["kind"] == "nspawn"
    for key in api.VM_ONLY + api.NSPAWN_ONLY:
        assert seen[key] is None, key
    assert json.loads(capsys.readouterr().out) == {"name": "n1"}


def test_nspawn_instance_on_disk_is_recognised(monkeypatch, tmp_path):
    monkeypatch.setenv("VMHOST_HARNESS_STATE", str(tmp_path))
    d = tmp_path / "instances" / "half"
    d.mkdir(parents=True)
    (d / "nspawn.json").write_text('{"subnet": 5, "ifname": "vmhns5"}')
    assert api._nspawn_reserved() == {5}
    assert api.list_instances() == [{"name": "half", "kind": "nspawn", "pid": None,
                                     "address": None, "port": None, "running": False}]


# ------------------------------------------------------------------ recipes


def test_default_recipe_has_nix_and_build_host_is_the_same_tree():
    name, spec = recipes.resolve("build-host")
    assert name == "default"
    assert spec == recipes.resolve("default")[1]
    assert "nix-bin" in spec["packages"] and "qemu-system-x86" in spec["packages"]
    assert recipes.resolve({"base": "build-host", "extra_packages": ["vim"]})[0] == "default"


def test_build_vm_guest_recipe():
    name, spec = recipes.resolve("build-vm-guest")
    assert name == "build-vm-guest" and spec["post"] == "image"
    for pkg in ("systemd-sysv", "linux-image-amd64", "openssh-server", "python3", "nix-bin",
                "qemu-guest-agent", "ifupdown", "isc-dhcp-client"):
        assert pkg in spec["packages"]
    assert "libvirt-daemon-system" not in spec["packages"]
    harness_profile = dict(spec, post="harness")
    assert recipes.recipe_hash(spec, 4) != recipes.recipe_hash(harness_profile, 4)
    # the harness profile adds nothing to the hash: existing cache keys stay
    plain = dict(spec)
    del plain["post"]
    assert recipes.recipe_hash(plain, 4) == recipes.recipe_hash(harness_profile, 4)


def test_unknown_post_profile_is_refused():
    with pytest.raises(HarnessError, match="unknown post-step profile"):
        recipes.resolve({"base": "default", "post": "bogus"})
    with pytest.raises(HarnessError, match="unknown recipe 'nope'.*build-host"):
        recipes.resolve("nope")


def _fake_tree(tmp_path):
    root = tmp_path / "tree"
    for d in ("etc/ssh", "root/.ssh", "boot", "var/lib/dbus"):
        (root / d).mkdir(parents=True)
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("secret")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "root/.ssh/authorized_keys").write_text("ssh-ed25519 AAAA stale\n")
    (root / "etc/fstab").write_text("# UNCONFIGURED FSTAB\n")
    return root


def test_image_post_steps_leave_out_the_harness_parts(tmp_path):
    root = _fake_tree(tmp_path)
    tree.post_steps(str(root), "image")
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert not (root / "root/.ssh/authorized_keys").exists()
    assert (root / "etc/machine-id").read_text() == ""
    assert "iface eth0 inet dhcp" in (root / "etc/network/interfaces").read_text()
    assert os.readlink(root / "etc/systemd/system/apt-daily.timer") == "/dev/null"
    assert not (root / "etc/systemd/system/vmhost-harness-firstboot.service").exists()
    assert not (root / "etc/ssh/sshd_config.d/vmhost-harness.conf").exists()
    assert (root / "etc/fstab").read_text() == "# UNCONFIGURED FSTAB\n"
    with pytest.raises(HarnessError, match="unknown post-step profile"):
        tree.post_steps(str(root), "other")
