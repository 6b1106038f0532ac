"""`make docs` builds the reference site from the collection's own metadata with no
error and no warning: antsibull-docs fails on any plugin or role documentation it
cannot parse or validate, Sphinx runs with warnings as errors."""
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_reference_site_builds_without_warnings(tmp_path):
    env = dict(os.environ, DOCS_NO_WRITE="1")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "build_docs.sh"), str(tmp_path)],
                          capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    html = tmp_path / "html" / "collections" / "vmhost" / "virt"
    for module in (ROOT / "plugins" / "modules").glob("*.py"):
        if module.stem != "__init__":
            assert (html / ("%s_module.html" % module.stem)).is_file(), module.stem
    for role in (ROOT / "roles").iterdir():
        if (role / "meta" / "argument_specs.yml").is_file():
            assert (html / ("%s_role.html" % role.name)).is_file(), role.name

    # docs/architecture.svg is what `make docs` makes of docs/architecture.dot.
    assert (tmp_path / "architecture.svg").read_bytes() == \
        (ROOT / "docs" / "architecture.svg").read_bytes(), \
        "docs/architecture.svg is out of date: run `make docs`"
    assert (tmp_path / "html" / "_images" / "architecture.svg").is_file()
