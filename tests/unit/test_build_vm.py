"""Pure logic of the build_vm role: machine validation, QEMU argv, offload entries."""
import base64
import datetime
import os
import pathlib
import re
import shlex

import pytest

from ansible_collections.vmhost.virt.plugins.module_utils import build_vm as bv
from ansible_collections.vmhost.virt.plugins.module_utils import qemu_accel as qa

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEED = pathlib.Path(os.environ.get("VMHOST_SEEDS", ROOT.parent / "shared" / "seeds")) \
    / "guix-gnu-services-virtualization.scm"
ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF4d7c5lGzk8XbW4yJXoX0vZ5nIh7mG1Qm3xYQp8w3pS root@guest"


def vm(**kw):
    raw = {"name": "x86", "image": "/srv/vm/x86.qcow2"}
    raw.update(kw)
    return bv.normalize(raw)


# ------------------------------------------------------------------ CPU table

def _seed_table():
    text = SEED.read_text()
    block = text[text.index("(define %x86-64-intel-cpu-models"):text.index("(define (qemu-cpu-model-for-date")]
    return re.findall(r'\("(\d{4}-\d{2}-\d{2})" "([^"]+)"\)', block)


def _seed_model(pairs, date):
    """The reference's lookup: pairs in source order, reversed, first released before date."""
    when = datetime.date.fromisoformat(date)
    for released, model in reversed(pairs):
        if datetime.date.fromisoformat(released) < when:
            return model
    return None


@pytest.mark.skipif(not SEED.exists(), reason="reference seed not present at %s" % SEED)
def test_cpu_table_has_the_seed_pairs():
    assert sorted(_seed_table()) == sorted(bv.CPU_MODELS_BY_DATE)
    assert len(_seed_table()) == 8


@pytest.mark.skipif(not SEED.exists(), reason="reference seed not present at %s" % SEED)
def test_cpu_for_date_matches_the_seed_except_its_misordered_westmere():
    pairs = _seed_table()
    day = datetime.date(2004, 1, 1)
    compared = 0
    while day < datetime.date(2024, 1, 1):
        date = day.isoformat()
        ours = bv.cpu_model_for_date(["x86_64-linux"], date)
        if datetime.date(2010, 1, 1) < day <= datetime.date(2011, 1, 1):
            # The seed lists Westmere (2010) before Nehalem (2008), so its first match
            # for 2010 dates is Nehalem; sorted by date, Westmere is the current model.
            assert (ours, _seed_model(pairs, date)) == ("Westmere", "Nehalem")
        else:
            assert ours == _seed_model(pairs, date), date
            compared += 1
        day += datetime.timedelta(days=17)
    assert compared > 350


def test_cpu_for_date_defaults_and_edges():
    assert bv.cpu_model_for_date(["x86_64-linux"], "2020-01-01") == "Skylake-Client"
    assert bv.cpu_model_for_date(["x86_64-linux"], "2015-01-01") == "Broadwell"   # strictly before
    assert bv.cpu_model_for_date(["x86_64-linux"], "2015-01-02") == "Skylake-Client"
    assert bv.cpu_model_for_date(["x86_64-linux"], "2006-01-01") is None
    assert bv.cpu_model_for_date(["i686-linux", "x86_64-linux"], "2009-05-05") == "Nehalem"
    assert bv.cpu_model_for_date(["aarch64-linux"], "2020-01-01") == "host"
    with pytest.raises(ValueError):
        bv.cpu_model_for_date(["x86_64-linux"], "01/01/2020")


def test_table_is_sorted_once():
    dates = [d for d, _m in bv.CPU_MODELS_BY_DATE]
    assert dates == sorted(dates) and len(set(dates)) == len(dates)


# ------------------------------------------------------------------ systems

@pytest.mark.parametrize("system,binary,machine", [
    ("x86_64-linux", "qemu-system-x86_64", []),
    ("i686-linux", "qemu-system-i386", []),
    ("aarch64-linux", "qemu-system-aarch64", ["-M", "virt"]),
    ("armhf-linux", "qemu-system-arm", ["-M", "virt,highmem=off"]),
])
def test_qemu_for_system(system, binary, machine):
    assert bv.qemu_for(system) == (binary, machine)


def test_unknown_system():
    with pytest.raises(bv.BuildVMError, match="unknown system type 'mips-linux'"):
        bv.qemu_for("mips-linux")


# ------------------------------------------------------------------ defaults

def test_defaults_are_the_references():
    v = vm()
    assert (v["cpu_count"], v["memory"], v["date"], v["ssh_port"], v["secrets_port"]) == (
        4, 2048, "2020-01-01", 11022, 11044)
    assert v["secrets_transport"] == "virtio-serial" and v["snapshot"] and v["deliver_secrets"]
    assert v["systems"] == ["x86_64-linux"] and v["image_format"] == "qcow2"


def test_childhurd_preset():
    v = bv.normalize({"name": "hurd", "image": "/srv/hurd.img", "preset": "childhurd", "id": 2})
    assert (v["ssh_port"], v["secrets_port"], v["vnc_port"]) == (12022, 13004, 17900)
    assert v["nic_model"] == "rtl8139" and v["memory"] == 2048 and v["snapshot"]
    assert v["secrets_transport"] == "tcp" and v["systems"] == ["i586-gnu"]
    argv = bv.qemu_argv(v, "tcg")
    assert argv[0] == "/usr/bin/qemu-system-x86_64"
    nic = argv[argv.index("-nic") + 1]
    assert nic == ("user,model=rtl8139,hostfwd=tcp:127.0.0.1:12022-:22,"
                   "hostfwd=tcp:127.0.0.1:13004-:1004,hostfwd=tcp:127.0.0.1:17900-:5900")
    assert "file=/srv/hurd.img,if=ide,format=raw" in argv
    v0 = bv.normalize({"name": "hurd", "image": "/srv/hurd.img", "preset": "childhurd"})
    assert (v0["ssh_port"], v0["secrets_port"], v0["vnc_port"]) == (10022, 11004, 15900)


# ------------------------------------------------------------------ validation

def _messages(machines, **kw):
    return bv.problems(machines, **kw)


@pytest.mark.parametrize("entry,field,words", [
    ({"systems": ["mips-linux"]}, "systems", "unknown system type 'mips-linux'"),
    ({"ssh_port": 70000}, "ssh_port", "out of range"),
    ({"ssh_port": 0}, "ssh_port", "out of range"),
    ({"ssh_port": "abc"}, "ssh_port", "not an integer"),
    ({"name": "Bad Name"}, "name", "not a valid unit/user name"),
    ({"name": "x" * 24}, "name", "more than 32"),
    ({"name": "../etc"}, "name", "not a valid"),
    ({"image": "relative.qcow2"}, "image", "absolute path"),
    ({"date": "2020/01/01"}, "date", "YYYY-MM-DD"),
    ({"secrets_transport": "vsock"}, "secrets_transport", "must be one of"),
    ({"accelerator": "hvf"}, "accelerator", "must be one of"),
    ({"initrd": "/boot/initrd"}, "initrd", "needs 'kernel'"),
    ({"cpu": "Sky lake"}, "cpu", "CPU model"),
    ({"typo_field": 1}, "typo_field", "unknown field"),
    ({"memory": 64}, "memory", "out of range"),
    ({"enabled": "maybe"}, "enabled", "not a boolean"),
])
def test_bad_input_names_vm_and_field(entry, field, words):
    raw = {"name": "x86", "image": "/srv/x86.qcow2"}
    raw.update(entry)
    msgs = _messages([raw])
    assert msgs, entry
    assert any(("field '%s'" % field) in m and words in m and "build_vm_machines[0]" in m for m in msgs), msgs


def test_two_vms_on_one_port():
    msgs = _messages([{"name": "a", "image": "/a.qcow2"}, {"name": "b", "image": "/b.qcow2"}])
    assert msgs == ["build_vm_machines[1] (VM 'b'): field 'ssh_port': port 11022 is already used by "
                    "build_vm_machines[0] (VM 'a') field 'ssh_port'"]


def test_tcp_secrets_port_collides_with_another_ssh_port():
    msgs = _messages([{"name": "a", "image": "/a.qcow2", "ssh_port": 2222},
                      {"name": "b", "image": "/b.qcow2", "secrets_transport": "tcp", "secrets_port": 2222}])
    assert len(msgs) == 1 and "VM 'b'" in msgs[0] and "field 'secrets_port'" in msgs[0]


def test_virtio_serial_has_no_secrets_port_to_collide():
    assert _messages([{"name": "a", "image": "/a.qcow2", "ssh_port": 11044},
                      {"name": "b", "image": "/b.qcow2", "ssh_port": 2222}]) == []


def test_disabled_vm_holds_no_port():
    assert _messages([{"name": "a", "image": "/a.qcow2", "enabled": False}, {"name": "b", "image": "/b.qcow2"}]) == []


def test_duplicate_names():
    msgs = _messages([{"name": "a", "image": "/a.qcow2"}, {"name": "a", "image": "/b.qcow2", "ssh_port": 1}])
    assert any("field 'name'" in m and "also the name of build_vm_machines[0]" in m for m in msgs)


SS = """LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=100,fd=3))
LISTEN 0 1 127.0.0.1:11022 0.0.0.0:* users:(("qemu-system-x86",pid=4242,fd=12))
LISTEN 0 1 127.0.0.1:2222 0.0.0.0:* users:(("qemu-system-x86",pid=999,fd=12))
LISTEN 0 128 [::]:8080 [::]:*
"""


def test_listening_ports_skip_own_qemu():
    assert bv.listening_ports(SS, own_pids=[4242]) == [22, 2222, 8080]
    assert bv.listening_ports(SS) == [22, 2222, 8080, 11022]


def test_port_listening_on_host_is_refused_unless_ours():
    entry = {"name": "x86", "image": "/x.qcow2"}
    msgs = _messages([entry], ss_output=SS)
    assert msgs == ["build_vm_machines[0] (VM 'x86'): field 'ssh_port': port 11022 is already listening on this host"]
    assert _messages([entry], ss_output=SS, own_pids=["4242"]) == []
    # a disabled VM does not need its port
    assert _messages([dict(entry, enabled=False)], ss_output=SS) == []


def test_missing_image_is_reported_for_enabled_vms_only():
    entries = [{"name": "a", "image": "/nope.qcow2", "kernel": "/k"},
               {"name": "b", "image": "/nope2.qcow2", "ssh_port": 2, "enabled": False}]
    msgs = _messages(entries, missing_paths=["/nope.qcow2", "/k", "/nope2.qcow2"])
    assert msgs == ["build_vm_machines[0] (VM 'a'): field 'image': /nope.qcow2 does not exist on the host",
                    "build_vm_machines[0] (VM 'a'): field 'kernel': /k does not exist on the host"]


def test_every_problem_reported_at_once():
    msgs = _messages([{"name": "A", "image": "x", "ssh_port": -1}])
    fields = sorted(re.findall(r"field '(\w+)'", "\n".join(msgs)))
    assert fields == ["image", "name", "ssh_port"]


def test_not_a_list():
    assert _messages({"name": "x"}) == ["build_vm_machines: must be a list, got dict"]


# ------------------------------------------------------------------ QEMU argv

def _pairs(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_argv_x86_tcg_virtio_serial():
    v = vm(kernel="/srv/vm/x86.vmlinuz", initrd="/srv/vm/x86.initrd",
           append="root=/dev/vda console=ttyS0", secrets_timeout=45)
    argv = bv.qemu_argv(v, "tcg")
    assert argv[0] == "/usr/bin/qemu-system-x86_64"
    assert _pairs(argv, "-accel") == ["tcg,thread=multi"]
    assert _pairs(argv, "-cpu") == ["Skylake-Client"]
    assert _pairs(argv, "-smp") == ["4"] and _pairs(argv, "-m") == ["2048"]
    assert _pairs(argv, "-rtc") == ["base=2020-01-01"]
    assert "-snapshot" in argv and "-no-reboot" in argv
    assert _pairs(argv, "-serial") == ["stdio"]
    assert _pairs(argv, "-append") == ["root=/dev/vda console=ttyS0 vmhost.secrets_timeout=45"]
    assert _pairs(argv, "-nic") == ["user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:11022-:22"]
    chardevs = _pairs(argv, "-chardev")
    assert "socket,id=secrets,path=/run/build-vm-x86/secrets.sock,server=on,wait=off" in chardevs
    assert "socket,id=qga0,path=/run/build-vm-x86/qga.sock,server=on,wait=off" in chardevs
    devices = _pairs(argv, "-device")
    assert "virtserialport,bus=vs0.0,chardev=secrets,name=org.vmhost.secrets.0" in devices
    assert "virtserialport,bus=vs0.0,chardev=qga0,name=org.qemu.guest_agent.0" in devices
    assert "1004" not in " ".join(argv)


def test_every_hostfwd_is_on_loopback():
    for v in (vm(), vm(secrets_transport="tcp"), bv.normalize({"name": "h", "image": "/h", "preset": "childhurd"})):
        nic = _pairs(bv.qemu_argv(v, "tcg"), "-nic")[0]
        fwds = re.findall(r"hostfwd=tcp:([^:]*):", nic)
        assert fwds and set(fwds) == {"127.0.0.1"}


def test_argv_tcp_transport_and_kvm():
    v = vm(secrets_transport="tcp", secrets_port=12044, cpu="Haswell", snapshot=False,
           qemu_extra_args=["-device", "virtio-balloon"])
    argv = bv.qemu_argv(v, "kvm")
    assert _pairs(argv, "-accel") == ["kvm"] and _pairs(argv, "-cpu") == ["Haswell"]
    assert "hostfwd=tcp:127.0.0.1:12044-:1004" in _pairs(argv, "-nic")[0]
    assert "secrets" not in " ".join(_pairs(argv, "-chardev"))
    assert "-snapshot" not in argv
    assert argv[-2:] == ["-device", "virtio-balloon"]
    assert "-append" not in argv and "-kernel" not in argv


def test_argv_aarch64_host_cpu_needs_kvm():
    v = vm(systems=["aarch64-linux"])
    tcg = bv.qemu_argv(v, "tcg")
    assert tcg[0].endswith("qemu-system-aarch64") and tcg[3:5] == ["-M", "virt"]
    assert _pairs(tcg, "-cpu") == ["max"]
    assert _pairs(bv.qemu_argv(v, "kvm"), "-cpu") == ["host"]
    arm = bv.qemu_argv(vm(systems=["armhf-linux"]), "tcg")
    assert arm[0].endswith("qemu-system-arm") and "virt,highmem=off" in arm


def test_argv_refuses_unprobed_accel():
    with pytest.raises(bv.BuildVMError, match="once probed"):
        bv.qemu_argv(vm(), "auto")


def test_sender():
    assert bv.sender_argv(vm(start_timeout=900)) == [
        "/usr/bin/python3", bv.SECRET_SERVICE, "send", "--unix", "/run/build-vm-x86/secrets.sock",
        "--secret-root", "/etc/vmhost/build-vms/x86", "--timeout", "900"]
    assert bv.sender_argv(vm(secrets_transport="tcp"))[3:5] == ["--tcp", "127.0.0.1:11044"]
    assert bv.sender_argv(vm(deliver_secrets=False)) is None


@pytest.mark.parametrize("arg", ["plain", "a b", 'q"uote', "back\\slash", "50%", "$HOME", "x;y", ""])
def test_systemd_quote_round_trips(arg):
    quoted = bv.systemd_quote(arg)
    # systemd unquotes like a shell for these cases once specifiers (%%) and $$ are undone
    unescaped = shlex.split(quoted.replace("%%", "%").replace("$$", "$"))
    assert unescaped == [arg]
    assert "%" not in quoted.replace("%%", "")


# ------------------------------------------------------------------ offload entries

def test_nix_machine_line():
    line = bv.nix_machine_line(vm(systems=["x86_64-linux", "i686-linux"], max_jobs=2,
                                  features=["big-parallel"]), ED)
    fields = line.split(" ")
    assert len(fields) == 8
    assert fields[:7] == ["ssh-ng://build-vm-x86", "x86_64-linux,i686-linux", "/etc/vmhost/offload/ssh/x86",
                          "2", "1", "big-parallel", "-"]
    assert base64.b64decode(fields[7]).decode() == " ".join(ED.split()[:2])
    with pytest.raises(bv.BuildVMError, match="not an OpenSSH public key"):
        bv.nix_machine_line(vm(), "garbage")


def test_ssh_config_block():
    block = bv.ssh_config_block(vm(ssh_port=12022))
    lines = [line.strip() for line in block.splitlines()]
    assert lines[0] == "Host build-vm-x86"
    for expected in ("HostName 127.0.0.1", "Port 12022", "User offloading", "IdentityFile /etc/vmhost/offload/ssh/x86",
                     "IdentitiesOnly yes", "HostKeyAlias build-vm-x86", "StrictHostKeyChecking yes",
                     "UserKnownHostsFile /etc/vmhost/offload/known_hosts"):
        assert expected in lines


def test_known_hosts_pin_alias_and_port():
    assert bv.known_hosts_lines(vm(), [ED]) == [
        "build-vm-x86,[127.0.0.1]:11022 " + " ".join(ED.split()[:2])]


def test_guix_entry():
    entry = bv.guix_machine_entry(vm(ssh_port=11022, max_jobs=3), ED)
    assert entry.startswith("(build-machine") and entry.count("(") == entry.count(")")
    assert '(name "localhost")' in entry and "(port 11022)" in entry
    assert '(systems (list "x86_64-linux"))' in entry and '(user "offloading")' in entry
    assert '(host-key "%s")' % " ".join(ED.split()[:2]) in entry
    assert '(private-key "/etc/vmhost/offload/ssh/x86")' in entry and "(parallel-builds 3)" in entry


# ------------------------------------------------------------------ accelerator policy

def test_policy_tcg_never_probes(monkeypatch):
    monkeypatch.setattr(qa, "choose", lambda *a, **k: pytest.fail("must not probe"))
    assert qa.decide("tcg", "q")[0] == "tcg"


def test_policy_kvm_fails_without_kvm(monkeypatch):
    monkeypatch.setattr(qa.os, "access", lambda p, m: False)
    assert qa.decide("auto", "q", "/k")[:2] == ("tcg", "max")
    with pytest.raises(qa.AccelError, match="kvm requested but KVM does not work here: /dev/kvm"):
        qa.decide("kvm", "q", "/k")


def test_policy_foreign_arch_is_tcg(monkeypatch):
    monkeypatch.setattr(qa.os, "access", lambda p, m: True)
    monkeypatch.setattr(qa, "choose", lambda *a, **k: pytest.fail("must not probe"))
    assert qa.decide("auto", "q", "/k", kvm_possible=False)[0] == "tcg"
    assert bv.kvm_possible("aarch64-linux", "x86_64") is False
    assert bv.kvm_possible("i686-linux", "x86_64") is True


def test_policy_auto_uses_the_boot_probe(monkeypatch, tmp_path):
    monkeypatch.setattr(qa.os, "access", lambda p, m: True)
    kernel = tmp_path / "k"
    kernel.write_bytes(b"k")
    monkeypatch.setattr(qa, "qemu_version", lambda q: "v")
    monkeypatch.setattr(qa, "probe_kvm", lambda q, k, cpu, *a: (cpu is None, "ok" if cpu is None else "hang"))
    assert qa.decide("auto", "q", str(kernel), cache_dir=str(tmp_path), dry_run=True)[:2] == ("kvm", None)
    assert not (tmp_path / "accel").exists()
    assert qa.decide("kvm", "q", str(kernel), cache_dir=str(tmp_path))[:2] == ("kvm", None)
    assert len(os.listdir(tmp_path / "accel")) == 1
