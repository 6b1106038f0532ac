"""The execution environment definition yields a build context that installs the
collection and exactly the dependencies the collection declares for it.

No container engine exists here, so the image is not built. Instead the test runs
`ansible-builder create` for real and then executes, outside a container, the two
build stages that decide what goes into the image: the galaxy stage (installing the
collection from the context's requirements file) and the builder stage's
introspection (which turns the installed collection's metadata into the pip and
bindep lists the final stage installs).
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def _run(cmd, cwd, env=None):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)
    command = " ".join(map(str, cmd))
    assert proc.returncode == 0, "%s failed:\n%s\n%s" % (command, proc.stdout, proc.stderr)
    return proc.stdout


def _entries(path):
    """Non-comment lines of a requirements or bindep file, comments stripped."""
    out = []
    for line in pathlib.Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def test_builder_context_installs_declared_dependencies(tmp_path):
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    ee = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert ee["version"] == 3

    work = tmp_path / "ee-src"
    (work / "ee").mkdir(parents=True)
    shutil.copy(ROOT / "execution-environment.yml", work)
    shutil.copy(ROOT / "ee" / "requirements.yml", work / "ee")
    _run([BIN / "ansible-galaxy", "collection", "build", "--output-path", work / "dist", ROOT],
         cwd=tmp_path)
    shutil.copy(work / "dist" / ("%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"],
                                                      galaxy["version"])),
                work / "ee" / "vmhost-virt.tar.gz")

    ctx = tmp_path / "context"
    _run([BIN / "ansible-builder", "create", "-f", work / "execution-environment.yml",
          "-c", ctx, "--output-filename", "Containerfile"], cwd=work)
    containerfile = (ctx / "Containerfile").read_text()
    assert 'EE_BASE_IMAGE="%s"' % ee["images"]["base_image"]["name"] in containerfile
    assert ee["dependencies"]["ansible_core"]["package_pip"] in containerfile
    assert re.search(r"ansible-galaxy collection install .*-r requirements\.yml", containerfile)
    assert "introspect.py introspect" in containerfile
    assert "install-from-bindep" in containerfile
    assert (ctx / "_build" / "collections" / "vmhost-virt.tar.gz").is_file()

    # Galaxy stage: WORKDIR /build holds _build; install the collection from there.
    collections = tmp_path / "usr-share-ansible" / "collections"
    env = {k: v for k, v in os.environ.items()
           if k not in ("ANSIBLE_COLLECTIONS_PATH", "PYTHONPATH")}
    env["ANSIBLE_GALAXY_DISABLE_GPG_VERIFY"] = "1"
    _run([BIN / "ansible-galaxy", "collection", "install", "-r", "requirements.yml",
          "--collections-path", collections], cwd=ctx / "_build", env=env)
    installed = collections / "ansible_collections" / "vmhost" / "virt"
    assert (installed / "MANIFEST.json").is_file()

    # Builder stage: introspection decides the pip and system packages of the image.
    pip_out, bindep_out = tmp_path / "requirements.txt", tmp_path / "bindep.txt"
    _run([sys.executable, ctx / "_build" / "scripts" / "introspect.py", "introspect",
          collections, "--write-pip=%s" % pip_out, "--write-bindep=%s" % bindep_out],
         cwd=tmp_path)
    assert sorted(_entries(pip_out)) == sorted(_entries(ROOT / "meta" / "ee-requirements.txt"))
    assert sorted(_entries(bindep_out)) == sorted(_entries(ROOT / "meta" / "ee-bindep.txt"))
    # The development requirements (molecule, pytest, ...) never reach the image.
    for dev_only in ("molecule", "pytest", "ansible-lint"):
        assert dev_only not in pip_out.read_text()
