"""The host_facts backend: the OS facts as the collectors give them, systemd from the tree."""
import os

import pytest

from ansible_collections.vmhost.virt.plugins.module_utils._host_facts import HostFactsBackend
from ansible_collections.vmhost.virt.plugins.module_utils._module import ModuleFailure

DEBIAN = {"distribution": "Debian", "distribution_version": "13.1", "distribution_major_version": "13",
          "distribution_release": "trixie", "os_family": "Debian", "pkg_mgr": "apt"}


@pytest.mark.parametrize("systemd", [True, False])
def test_facts_and_systemd_from_the_tree(tmp_path, systemd):
    if systemd:
        os.makedirs(tmp_path / "run" / "systemd" / "system")
    backend = HostFactsBackend({}, collect=lambda: dict(DEBIAN), root=str(tmp_path))
    result = backend.execute()
    assert result["changed"] is False and "actions" not in result
    assert result["ansible_facts"] == dict(DEBIAN, vmhost_systemd=systemd)


def test_a_file_in_place_of_the_directory_is_not_systemd(tmp_path):
    os.makedirs(tmp_path / "run" / "systemd")
    (tmp_path / "run" / "systemd" / "system").write_text("")
    result = HostFactsBackend({}, collect=lambda: dict(DEBIAN), root=str(tmp_path)).execute()
    assert result["ansible_facts"]["vmhost_systemd"] is False


def test_check_mode_gathers_the_same(tmp_path):
    run = HostFactsBackend({}, collect=lambda: dict(DEBIAN), root=str(tmp_path)).execute()
    check = HostFactsBackend({}, check_mode=True, collect=lambda: dict(DEBIAN), root=str(tmp_path)).execute()
    assert run == check


@pytest.mark.parametrize("missing", ["distribution", "os_family", "pkg_mgr"])
def test_missing_facts_fail_with_what_is_missing(tmp_path, missing):
    facts = dict(DEBIAN)
    facts[missing] = ""
    with pytest.raises(ModuleFailure) as err:
        HostFactsBackend({}, collect=lambda: facts, root=str(tmp_path)).execute()
    assert missing in err.value.msg and "Traceback" not in err.value.msg


def test_the_real_collectors_agree_with_os_release():
    from ansible_collections.vmhost.virt.plugins.module_utils._host_facts import collect_os_facts

    class Module(object):
        params = {}

        def get_bin_path(self, name, required=False, opt_dirs=None):
            import shutil
            return shutil.which(name)

        def run_command(self, args, **kwargs):
            import subprocess
            proc = subprocess.run(args, shell=isinstance(args, str), capture_output=True, text=True, check=False)
            return proc.returncode, proc.stdout, proc.stderr

    facts = collect_os_facts(Module())
    release = dict(line.split("=", 1) for line in open("/etc/os-release").read().split("\n") if "=" in line)
    assert facts["distribution"].lower() == release["ID"].strip('"')
    assert facts["distribution_major_version"] == release["VERSION_ID"].strip('"').split(".")[0]
    assert facts["pkg_mgr"] == "apt"
