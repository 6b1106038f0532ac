"""The field table, the roles' argument specs/defaults and the role docs agree."""
import pathlib
import subprocess
import sys

import pytest
import yaml

from ansible_collections.vmhost.virt.plugins.filter import libvirt_conf as flt
from ansible_collections.vmhost.virt.plugins.module_utils import libvirt_conf as lc

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = {"libvirt": "libvirtd", "virtlogd": "virtlogd"}
SPEC_TYPE = {"bool": "bool", "int": "int", "str": "str", "list": "list"}


def _yaml(path):
    return yaml.safe_load(path.read_text())


def test_generated_files_are_current():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "libvirt_specs.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("role", sorted(ROLES))
def test_argument_specs_follow_the_table(role):
    daemon = ROLES[role]
    prefix = lc.PREFIXES[daemon]
    specs = _yaml(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]
    defaults = _yaml(ROOT / "roles" / role / "defaults" / "main.yml")
    for entry in ("main", "validate"):
        options = specs[entry]["options"]
        for field in lc.table(daemon):
            name = prefix + field.key
            opt = options[name]
            assert opt["type"] == SPEC_TYPE[field.base_type], name
            assert opt["default"] == field.default == defaults[name], name
            assert opt.get("choices") == (list(field.choices) if field.choices else None), name
            assert "C(%s)" % field.key in opt["description"], name
            if field.base_type == "list":
                assert opt["elements"] == "str"


@pytest.mark.parametrize("role", sorted(ROLES))
def test_role_docs_list_every_variable(role):
    page = (ROOT / "docs" / "roles" / ("%s_role.rst" % role)).read_text()
    specs = _yaml(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]
    for name in specs["options"]:
        assert "<strong>%s</strong>" % name in page, "%s missing from docs/roles/%s_role.rst (run make docs)" % (name, role)


def test_user_guide_names_the_renamed_and_dropped_reference_fields():
    guide = (ROOT / "docs" / "libvirt.md").read_text()
    for name in list(lc.REFERENCE_RENAMES) + list(lc.REFERENCE_RENAMES.values()) + list(lc.DROPPED_REFERENCE_FIELDS):
        assert name in guide, name


def test_filter_wraps_errors_and_lists_variables():
    from ansible.errors import AnsibleFilterError
    assert flt.libvirt_conf_vars("virtlogd") == ["virtlogd_" + f.key for f in lc.VIRTLOGD_FIELDS]
    assert flt.libvirt_conf_vars("libvirtd", prefix="") == [f.key for f in lc.LIBVIRTD_FIELDS]
    with pytest.raises(AnsibleFilterError, match="libvirt_log_level"):
        flt.libvirt_conf({"log_level": 7})
    with pytest.raises(AnsibleFilterError, match="libvirt_listen_addr"):
        flt.libvirt_socket_plan({"listen_addr": "host.example"})
    assert flt.libvirt_conf({}, "virtlogd").startswith("log_level = 3\n")
