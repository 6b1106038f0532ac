"""scripts/gen_test_table.py: docs/testing.md is generated from the molecule files."""
import importlib.util
import pathlib
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gen_test_table", ROOT / "scripts" / "gen_test_table.py")
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)


def test_docs_testing_md_is_current():
    """Fails when a molecule file changed and `make docs` was not run."""
    assert gen.main(["--check"]) == 0, "docs/testing.md is stale: run make docs"


def test_every_release_of_the_recipes_has_its_section():
    text = (ROOT / "docs" / "testing.md").read_text()
    for name in gen.RELEASE_NAMES.values():
        assert "## %s" % name in text


@pytest.mark.parametrize("pattern,expected", [
    ("all", True), ("vms", True), ("web-1", True), ("containers", False),
    ("all:!vms", False), ("vms:&bookworm", False), ("vms,containers", True),
    ("localhost", False), ("", False),
])
def test_host_patterns(pattern, expected):
    platform = {"name": "web-1", "groups": ["vms"]}
    assert gen.matches(pattern, platform) is expected


def test_a_test_belongs_to_the_role_it_names_then_to_its_files():
    roles = ["libvirt", "virtlogd", "build_vm", "build_vm_guest"]
    assert gen.test_role("test_virtlogd_runs", "test_libvirt.py", roles) == "virtlogd"
    assert gen.test_role("test_root_reaches_the_daemon", "test_libvirt.py", roles) == "libvirt"
    assert gen.test_role("test_build_vm_guest_boots", "test_x.py", roles) == "build_vm_guest"
    assert gen.test_role("test_shutdown", "test_zz_libvirt_shutdown.py", roles) == "libvirt"
    assert gen.test_role("test_sshd", "test_smoke.py", roles) == gen.HARNESS


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_rows_of_a_scenario(tmp_path):
    (tmp_path / "roles" / "alpha" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "beta" / "tasks").mkdir(parents=True)
    scenario = tmp_path / "molecule" / "two"
    _write(scenario / "molecule.yml", """\
        platforms:
          - name: a-vm
            groups: [vms]
            harness: {recipe: trixie}
          - name: b-ns
            harness: {kind: nspawn, recipe: default}
        provisioner:
          playbooks:
            converge: converge.yml
            side_effect: side_effect.yml
        """)
    _write(scenario / "converge.yml", """\
        - hosts: all
          tasks:
            - block:
                - ansible.builtin.include_role: {name: vmhost.virt.alpha}
        - hosts: vms
          roles: [vmhost.virt.beta]
        """)
    _write(scenario / "side_effect.yml", """\
        - name: Restart beta
          hosts: vms
          tasks:
            - ansible.builtin.import_role: {name: vmhost.virt.beta}
        """)
    _write(scenario / "tests" / "test_alpha.py", """\
        import testinfra.utils.ansible_runner
        testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner("x").get_hosts("vms")
        def test_alpha_runs(host):
            pass
        def test_beta_file(host):
            pass
        def helper():
            pass
        """)
    rows = {(r["release"], r["role"], r["instance"], r["kind"]): r["checks"]
            for r in gen.collect(tmp_path)}
    assert rows == {
        ("trixie", "alpha", "a-vm", "vm"): ["alpha runs"],
        ("trixie", "beta", "a-vm", "vm"): ["side effect: Restart beta", "beta file"],
        ("bookworm", "alpha", "b-ns", "nspawn"): [gen.UNCHECKED],
    }
    text = gen.render(gen.collect(tmp_path))
    assert "| alpha | two | b-ns (nspawn) | %s |" % gen.UNCHECKED in text
    assert "| beta | not run | 2 checks (vm) |" in text
