"""The user guides in docs/guides/ work as written: each guide's code blocks marked
`{test}` are extracted in order and run, so a guide that rots fails here.

Markers (the fence's info string, after the language):
  ```sh {test}                      a shell step, run as written (bash -euo pipefail)
  ```yaml {test file=~/fleet/x.yml}  a file the reader writes: written verbatim to that path
  (ini, json, ... likewise)
Unmarked blocks are shown but not run (and a guide says why: they boot a QEMU guest or
install system packages).

Each guide runs as one script in a home of its own (HOME=a temp dir), with the
controller's virtualenv on PATH, no ANSIBLE_* variable of the checkout, `~/vmhost-virt`
being this checkout, and the collection installed only as the getting-started guide
installs it (its tarball in ~/.ansible/collections). Guides that configure a machine reach
it as `vmhost1` / `buildhost1` through ~/.ssh/config, as a reader's own machine would be:
here that is a harness systemd-nspawn container (Debian 12, fresh). OpenSSH reads the
config of the password database's home, so ssh/scp wrappers pass `-F ~/.ssh/config`.
"""
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from tests.harness import api

ROOT = pathlib.Path(__file__).resolve().parents[2]
GUIDES = ROOT / "docs" / "guides"
BIN = pathlib.Path(sys.executable).parent
FENCE = re.compile(r"^```(\w+)[ \t]*\{([^}]*)\}[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
DEMO_IMAGE = pathlib.Path(os.environ.get("VMHOST_HARNESS_STATE", "/var/tmp/vmhost-harness")) \
    / "demo-build-vm-image"

# guide -> the hosts (ssh names) it configures
TARGETS = {
    "getting-started.md": ["vmhost1"],
    "build-vms.md": ["buildhost1"],
    "images-without-root.md": [],
    "foreign-architectures.md": [],
}


def blocks(text):
    """[(kind, lang, body)] of the {test} blocks: kind 'run' or ('file', path)."""
    out = []
    for m in FENCE.finditer(text):
        lang, attrs, body = m.group(1), m.group(2).split(), m.group(3)
        if "test" not in attrs:
            continue
        files = [a.split("=", 1)[1] for a in attrs if a.startswith("file=")]
        if files:
            out.append((("file", files[0]), lang, body))
        elif lang in ("sh", "bash", "console"):
            out.append(("run", lang, body))
        else:
            raise AssertionError("a {test} %s block needs file=PATH" % lang)
    return out


def script(guide_blocks):
    lines = ["set -euo pipefail"]
    for i, (kind, _lang, body) in enumerate(guide_blocks):
        if kind == "run":
            lines += ["echo '### guide step %d' >&2" % i, body]
        else:
            path = kind[1]
            target = '"$HOME"' + shlex.quote(path[1:]) if path.startswith("~/") else shlex.quote(path)
            lines += ['mkdir -p "$(dirname %s)"' % target,
                      "cat > %s <<'GUIDE_BLOCK_EOF'" % target, body.rstrip("\n"), "GUIDE_BLOCK_EOF"]
    return "\n".join(lines) + "\n"


def test_every_guide_has_test_blocks_and_a_target_list():
    names = sorted(p.name for p in GUIDES.glob("*.md"))
    assert sorted(TARGETS) == names
    for name in names:
        assert blocks((GUIDES / name).read_text()), "%s has no {test} block" % name


def test_block_extraction():
    text = ("```sh {test}\necho a\n```\n```sh\nno\n```\n"
            "```yaml {test file=~/x.yml}\nk: v\n```\n")
    got = blocks(text)
    assert got == [("run", "sh", "echo a\n"), (("file", "~/x.yml"), "yaml", "k: v\n")]
    assert "cat > \"$HOME\"/x.yml <<'GUIDE_BLOCK_EOF'\nk: v\nGUIDE_BLOCK_EOF" in script(got)


@pytest.fixture(scope="module")
def home_base(tmp_path_factory):
    return tmp_path_factory.mktemp("guides")


def _up(names):
    infos = []
    for name in names:
        infos.append(api.up(name="it-guide-%s-%d" % (name, os.getpid()), kind="nspawn",
                            recipe="build-host", timeout=180))
    return infos


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("guide", sorted(TARGETS))
def test_guide_runs_as_written(guide, home_base):
    if os.geteuid() != 0:
        pytest.skip("the guides configure root-owned things and nspawn hosts")
    if guide == "build-vms.md" and not (DEMO_IMAGE / "build-vm.json").is_file():
        pytest.skip("the build VM guide starts from the image `make demo` leaves in %s" % DEMO_IMAGE)
    home = home_base / guide.replace(".md", "")
    (home / ".ssh").mkdir(parents=True)
    os.symlink(ROOT, home / "vmhost-virt")
    infos = _up(TARGETS[guide])
    try:
        ssh_config = []
        for alias, info in zip(TARGETS[guide], infos):
            ssh_config += ["Host %s" % alias, "  HostName %s" % info["address"],
                           "  Port %s" % info["port"], "  User root",
                           "  IdentityFile %s" % info["identity_file"],
                           "  StrictHostKeyChecking no", "  UserKnownHostsFile /dev/null",
                           "  LogLevel ERROR", ""]
        (home / ".ssh" / "config").write_text("\n".join(ssh_config))
        (home / ".ssh" / "config").chmod(0o600)
        # OpenSSH finds ~/.ssh/config through the password database, not $HOME: point ssh
        # and scp (and Ansible's ssh, sftp, scp) at the temporary home's config.
        (home / "bin").mkdir()
        for tool in ("ssh", "scp"):
            (home / "bin" / tool).write_text('#!/bin/sh\nexec /usr/bin/%s -F "$HOME/.ssh/config" "$@"\n' % tool)
            (home / "bin" / tool).chmod(0o755)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ANSIBLE_", "MOLECULE_", "PYTEST_")) and k != "PYTHONPATH"}
        env.update(HOME=str(home), PATH="%s:%s:%s" % (home / "bin", BIN, env.get("PATH", "/usr/bin:/bin")),
                   ANSIBLE_NOCOLOR="1", ANSIBLE_SSH_COMMON_ARGS="-F %s" % (home / ".ssh" / "config"))
        body = script(blocks((GUIDES / guide).read_text()))
        (home / "guide.sh").write_text(body)
        proc = subprocess.run(["bash", str(home / "guide.sh")], cwd=home, env=env,
                              capture_output=True, text=True, check=False, timeout=1800)
        assert proc.returncode == 0, "%s failed:\n%s\n%s" % (guide, proc.stdout[-6000:], proc.stderr[-4000:])
    finally:
        for info in infos:
            api.down(info["name"])
