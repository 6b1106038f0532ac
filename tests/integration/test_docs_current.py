"""The committed reference pages (docs/modules/*.rst, docs/roles/*.rst) are exactly what
antsibull-docs makes of the collection's current metadata (`make docs` writes them), there
is one per module, filter and role, and every role's README links to its page."""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    env = dict(os.environ, DOCS_NO_WRITE="1")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "build_docs.sh"), str(out), "--reference-only"],
                          capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "reference"


@pytest.mark.parametrize("kind", ["modules", "roles"])
def test_reference_pages_are_current(fresh, kind):
    committed = ROOT / "docs" / kind
    want = sorted(p.name for p in (fresh / kind).iterdir())
    have = sorted(p.name for p in committed.iterdir())
    assert have == want, "docs/%s differs from antsibull-docs' pages: run `make docs`" % kind
    for name in want:
        assert (committed / name).read_text() == (fresh / kind / name).read_text(), \
            "docs/%s/%s is out of date: run `make docs`" % (kind, name)


def test_one_page_per_module_filter_and_role(fresh):
    modules = {p.name for p in (fresh / "modules").iterdir()}
    for module in (ROOT / "plugins" / "modules").glob("*.py"):
        if module.stem != "__init__":
            assert "%s_module.rst" % module.stem in modules
    assert any(n.endswith("_filter.rst") for n in modules)
    roles = {p.name for p in (fresh / "roles").iterdir()}
    for role in (ROOT / "roles").iterdir():
        if (role / "meta" / "argument_specs.yml").is_file():
            assert "%s_role.rst" % role.name in roles


def test_role_readmes_link_to_their_reference_page():
    for role in (ROOT / "roles").iterdir():
        if (role / "meta" / "argument_specs.yml").is_file():
            readme = (role / "README.md").read_text()
            assert "../../docs/roles/%s_role.rst" % role.name in readme, role.name


def test_no_hand_written_generator_left():
    assert not (ROOT / "scripts" / "gen_docs.py").exists()
    makefile = (ROOT / "Makefile").read_text()
    assert "gen_docs" not in makefile
