"""The qemu_binfmt role agrees with the module's platform table and flag defaults."""
import pathlib

import yaml

from ansible_collections.vmhost.virt.plugins.module_utils import binfmt as B

ROLE = pathlib.Path(__file__).resolve().parents[2] / "roles" / "qemu_binfmt"


def _load(rel):
    return yaml.safe_load((ROLE / rel).read_text())


def test_fedora_package_map_covers_exactly_the_table():
    by_platform = _load("vars/RedHat.yml")["__qemu_binfmt_packages_by_platform"]
    assert sorted(by_platform) == sorted(B.PLATFORM_NAMES)
    assert all(pkg.startswith("qemu-user-static-") for pkg in by_platform.values())


def test_flag_defaults_match_the_module():
    defaults = _load("defaults/main.yml")["qemu_binfmt_flags"]
    assert defaults == B.DEFAULT_FLAGS
    spec = _load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]["qemu_binfmt_flags"]
    assert sorted(spec["options"]) == sorted(B.FLAG_NAMES)
    assert dict((k, v["default"]) for k, v in spec["options"].items()) == B.DEFAULT_FLAGS


def test_every_os_vars_file_defines_the_same_private_names():
    names = None
    for path in sorted((ROLE / "vars").glob("*.yml")):
        if path.name == "main.yml":
            continue
        keys = set(yaml.safe_load(path.read_text()))
        assert all(k.startswith("__qemu_binfmt_") for k in keys), path
        names = keys if names is None else names
        assert keys == names, path
    # vars/main.yml reads each of them from the file first_found picks
    main = _load("vars/main.yml")
    for name in names:
        assert main[name] == "{{ __qemu_binfmt_os['%s'] }}" % name, name


def test_module_documentation_lists_exactly_the_table():
    """The platform names in the module's DOCUMENTATION are the table's, in its order."""
    import re
    source = (ROLE.parents[1] / "plugins" / "modules" / "qemu_binfmt.py").read_text()
    doc = yaml.safe_load(source.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0])
    text = " ".join(doc["options"]["platforms"]["description"])
    listed = re.findall(r"V\(([a-z0-9_]+)\)", text.split("Valid names are", 1)[1])
    assert tuple(listed) == B.PLATFORM_NAMES
