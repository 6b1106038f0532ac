"""The collection builds into a tarball that installs and documents itself."""
import json
import os
import pathlib
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def _run(cmd, env=None, cwd=ROOT):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_build_install_and_list(tmp_path):
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    dist = tmp_path / "dist"
    _run([BIN / "ansible-galaxy", "collection", "build", "--output-path", dist, str(ROOT)])
    tarball = dist / f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"
    assert tarball.is_file()

    # Nothing the build_ignore list excludes may end up in the tarball.
    listing = _run(["tar", "tzf", tarball])
    for unwanted in (".venv/", ".tmp/", ".git/", "__pycache__"):
        assert unwanted not in listing, f"{unwanted} was packed into the collection"

    dest = tmp_path / "collections"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(dest))
    _run([BIN / "ansible-galaxy", "collection", "install", "--force", "-p", dest, tarball], env=env)
    assert (dest / "ansible_collections" / "vmhost" / "virt" / "MANIFEST.json").is_file()

    out = _run([BIN / "ansible-doc", "-l", "--json", "vmhost.virt"], env=env, cwd=tmp_path)
    listed = set(json.loads(out))
    modules = {f"vmhost.virt.{p.stem}" for p in (ROOT / "plugins" / "modules").glob("*.py")
               if p.stem != "__init__"}
    assert modules <= listed, f"ansible-doc does not list {sorted(modules - listed)}"

    roles = _run([BIN / "ansible-doc", "-t", "role", "-l", "vmhost.virt"], env=env, cwd=tmp_path)
    for role in (ROOT / "roles").iterdir():
        if (role / "meta" / "argument_specs.yml").is_file():
            assert f"vmhost.virt.{role.name}" in roles
