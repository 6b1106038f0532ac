"""Integration test of the harness's nspawn kind: two containers booted at
once from the cached default tree, each on its own /24 and answering SSH with
its own key; a hardened systemd service and QEMU run inside; a bind mount
hands in a controller file; ``down`` leaves no process, interface, mount,
cgroup or directory behind, also for a half-created instance."""

import json
import os
import subprocess
import sys
import threading

import pytest

from tests.harness import api, nspawn, paths
from tests.harness.errors import HarnessError

pytestmark = [pytest.mark.root, pytest.mark.slow]

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = ("it-nspawn-a-%d" % os.getpid(), "it-nspawn-b-%d" % os.getpid())

HARDENED_UNIT = """[Unit]
Description=harness test: hardened service as a system user in group kvm

[Service]
Type=oneshot
RemainAfterExit=yes
User=it-probe
Group=kvm
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
NoNewPrivileges=yes
StateDirectory=it-probe
StateDirectoryMode=0700
RuntimeDirectory=it-probe
RuntimeDirectoryMode=0700
ExecStart=/bin/sh -ec 'id -un; id -gn; touch /var/lib/it-probe/state /run/it-probe/run /tmp/t; \\
  if touch /etc/it-probe 2>/dev/null; then echo etc-writable; fi; \\
  if ls /root >/dev/null 2>&1; then echo home-visible; fi; \\
  stat -c %%a /var/lib/it-probe /run/it-probe; qemu-system-x86_64 -version | head -n 1'
"""


def _up(name, binds, results):
    try:
        results[name] = api.up(name=name, kind="nspawn", recipe="build-host", binds=binds,
                               timeout=120)
    except BaseException as exc:       # reported by the fixture
        results[name] = exc


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the nspawn kind needs root (overlay mount, veth, systemd-nspawn)")
    shared = tmp_path_factory.mktemp("bind")
    (shared / "guest.img").write_bytes(b"image built on the controller\n")
    binds = [{"source": str(shared), "target": "/srv/images", "readonly": True}]
    results = {}
    threads = [threading.Thread(target=_up, args=(n, binds, results)) for n in NAMES]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name in NAMES:
            if isinstance(results.get(name), BaseException):
                raise results[name]
        yield [results[n] for n in NAMES]
    finally:
        for name in NAMES:
            api.down(name)


def _host_links():
    return set(os.listdir("/sys/class/net"))


def test_two_instances_with_their_own_network(pair):
    a, b = pair
    for info in pair:
        assert info["kind"] == "nspawn" and info["port"] == 22 and info["user"] == "root"
        assert info["systemd"] in ("running", "degraded")
        assert info["address"] == nspawn.subnet(int(info["address"].split(".")[2]))["guest"]
        assert info["host_interface"] in _host_links()
        assert os.stat(info["identity_file"]).st_mode & 0o777 == 0o600
        assert api.instance_info(info["name"]) == info
    assert a["network"] != b["network"] and a["host_interface"] != b["host_interface"]
    addrs = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", a["host_interface"]],
                           stdout=subprocess.PIPE, check=True).stdout.decode()
    assert "%s/24" % a["host_address"] in addrs
    listed = {i["name"]: i for i in api.list_instances()}
    for info in pair:
        assert listed[info["name"]]["running"] and listed[info["name"]]["kind"] == "nspawn"


def test_ssh_reaches_each_container_with_its_own_key(pair):
    a, b = pair
    for info in pair:
        out = api.ssh(info, "hostname; cat /proc/1/comm; systemd-detect-virt; "
                            "ip -4 -o addr show dev host0").stdout.split("\n")
        assert out[:3] == [info["name"], "systemd", "systemd-nspawn"]
        assert " %s/24 " % info["address"] in out[3]
    # a's key does not open b
    wrong = dict(b, identity_file=a["identity_file"])
    assert api.ssh(wrong, "true", check=False).returncode == 255


def test_cli_ssh_and_info(pair):
    a = pair[0]
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "tests.harness", "ssh", "--name", a["name"],
                           "--", "cat", "/etc/hostname"], cwd=TOP, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == a["name"]
    proc = subprocess.run([sys.executable, "-m", "tests.harness", "info", "--name", a["name"]],
                          cwd=TOP, stdout=subprocess.PIPE, check=True, timeout=60)
    assert json.loads(proc.stdout) == a


def test_hardened_service_and_qemu_run_inside(pair):
    info = pair[0]
    script = ("useradd --system --no-create-home --shell /usr/sbin/nologin it-probe; "
              "cat > /etc/systemd/system/it-probe.service <<'EOF'\n%sEOF\n"
              "systemctl daemon-reload && systemctl start it-probe.service && "
              "systemctl is-active it-probe.service && "
              "journalctl -q -o cat -u it-probe.service" % HARDENED_UNIT)
    result = api.ssh(info, script, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    lines = out.split("\n")
    assert lines[0] == "active"
    for expected in ("it-probe", "kvm", "700"):
        assert expected in lines, out
    assert "etc-writable" not in out and "home-visible" not in out
    assert "QEMU emulator version" in out


def test_bind_mount_is_visible_and_read_only(pair):
    info = pair[1]
    out = api.ssh(info, "cat /srv/images/guest.img; "
                        "touch /srv/images/x 2>&1 || true").stdout
    assert "image built on the controller" in out
    assert "Read-only file system" in out


def test_writes_land_in_the_instance_not_the_cache(pair):
    info = pair[0]
    api.ssh(info, "echo mine > /etc/it-marker; rm -f /etc/motd")
    assert not os.path.exists(os.path.join(info["tree"], "etc/it-marker"))
    assert os.path.exists(os.path.join(info["tree"], "etc/motd"))
    with open(os.path.join(info["instance_dir"], "upper/etc/it-marker")) as f:
        assert f.read() == "mine\n"


def test_reuse_returns_the_running_instance(pair):
    info = pair[0]
    again = api.up(name=info["name"], kind="nspawn", recipe="build-host", reuse=True)
    assert again["pid"] == info["pid"] and again["address"] == info["address"]
    with pytest.raises(HarnessError, match="already running"):
        api.up(name=info["name"], kind="nspawn")


def test_cli_refuses_a_vm_option_for_nspawn(pair):
    proc = subprocess.run([sys.executable, "-m", "tests.harness", "up", "--name", "it-refused",
                           "--options-json", '{"kind": "nspawn", "memory": 2048}'],
                          cwd=TOP, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                          check=False)
    assert proc.returncode == 2
    assert "memory only apply to kind vm, not to kind nspawn" in proc.stderr.decode()
    assert not os.path.exists(paths.instance_dir("it-refused"))


def test_a_failed_start_reports_the_console_and_cleans_up(pair):
    name = "it-nspawn-bad-%d" % os.getpid()
    with pytest.raises(HarnessError) as err:
        api.up(name=name, kind="nspawn", nspawn_args=["--no-such-nspawn-option"], timeout=30)
    assert "exited" in str(err.value) and "no-such-nspawn-option" in str(err.value)
    assert not os.path.exists(paths.instance_dir(name))
    assert not [d for d in nspawn.cgroup_dirs(name) if os.path.exists(d)]


def _leftovers(info):
    found = []
    if api.pid_alive(info["pid"]):
        found.append("pid %d" % info["pid"])
    if info["host_interface"] in _host_links():
        found.append("link " + info["host_interface"])
    if os.path.exists(info["instance_dir"]):
        found.append("dir " + info["instance_dir"])
    with open("/proc/self/mountinfo") as f:
        if info["instance_dir"] in f.read():
            found.append("mount under " + info["instance_dir"])
    found += [d for d in nspawn.cgroup_dirs(info["name"]) if os.path.exists(d)]
    return found


def test_down_removes_everything(pair):
    for info in pair:
        assert api.down(info["name"]) is True
        assert _leftovers(info) == []
        assert api.down(info["name"]) is False


def test_down_of_a_half_created_instance(pair):
    """An instance whose `up` died after mounting its root and reserving a
    subnet, before nspawn ran: `down` unmounts and removes it."""
    name = "it-nspawn-half-%d" % os.getpid()
    idir = paths.instance_dir(name)
    os.makedirs(idir, 0o700)
    try:
        with open(os.path.join(idir, api.NSPAWN_NET), "w") as f:
            json.dump({"subnet": 250, "ifname": "vmhns250"}, f)
        root = nspawn.mount_overlay(pair[0]["tree"], idir)
        assert nspawn.is_mounted(root)
        assert api.list_instances()[0]["kind"] == "nspawn"
        assert api.down(name) is True
        assert not os.path.exists(idir)
        with open("/proc/self/mountinfo") as f:
            assert idir not in f.read()
    finally:
        nspawn.unmount(os.path.join(idir, "root"))
        subprocess.run(["rm", "-rf", "--one-file-system", idir], check=False)
