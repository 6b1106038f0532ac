"""Write docs/testing.md: release x role x what is checked, read from the molecule files.

For every scenario under molecule/ (a directory with molecule.yml) it reads:

* the platforms: name, groups, harness kind (vm or nspawn) and recipe, whose suite
  (tests/harness/recipes.py) is the release;
* the playbooks molecule runs (prepare, converge, side_effect; shared ones under
  molecule/resources too): which roles each play applies (``roles:``,
  ``include_role``/``import_role``, inside blocks too) to which hosts, and the side
  effect's play names (they are checks);
* the testinfra files of the verifier directory: the hosts each file selects
  (``get_hosts("PATTERN")``) and its test functions.

A test belongs to the role whose name appears in the test's name, else to the role its
file is named after (test_<role>*.py), else to the harness itself. A role applied to a
platform but without a test of its own is listed as converged and idempotent.

    python scripts/gen_test_table.py          # write docs/testing.md
    python scripts/gen_test_table.py --check  # exit 1 when docs/testing.md is stale
"""

import argparse
import ast
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "testing.md"
COLLECTION = "vmhost.virt."
HARNESS = "(harness)"
RELEASE_NAMES = {"bookworm": "Debian 12 (bookworm)", "trixie": "Debian 13 (trixie)"}
ROLE_KEYS = ("ansible.builtin.include_role", "ansible.builtin.import_role",
             "include_role", "import_role")
PLAYBOOK_STEPS = ("prepare", "converge", "side_effect")
UNCHECKED = "converged, idempotent (no check of its own)"


def _recipes():
    sys.path.insert(0, str(ROOT))
    from tests.harness import recipes
    return recipes


def release_of(recipe):
    """The Debian suite a harness recipe (name or inline dict) bootstraps."""
    _name, spec = _recipes().resolve(recipe)
    return spec["suite"]


def _short(role):
    return role[len(COLLECTION):] if role.startswith(COLLECTION) else role


def _tasks_roles(tasks):
    """Role names applied by a task list (blocks, rescue and always included)."""
    found = []
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        for key in ROLE_KEYS:
            if key in task:
                arg = task[key]
                name = arg.get("name") if isinstance(arg, dict) else arg
                if name:
                    found.append(_short(str(name)))
        for key in ("block", "rescue", "always"):
            found += _tasks_roles(task.get(key))
    return found


def play_roles(play):
    roles = []
    for entry in play.get("roles") or []:
        name = entry.get("role") or entry.get("name") if isinstance(entry, dict) else entry
        roles.append(_short(str(name)))
    for key in ("pre_tasks", "tasks", "post_tasks"):
        roles += _tasks_roles(play.get(key))
    return roles


def read_plays(path):
    """``[(hosts pattern, play name, [roles])]`` of a playbook (import_playbook followed)."""
    data = yaml.safe_load(path.read_text()) or []
    out = []
    for play in data:
        if "import_playbook" in play or "ansible.builtin.import_playbook" in play:
            target = play.get("import_playbook") or play.get("ansible.builtin.import_playbook")
            if str(target).startswith(COLLECTION):      # the collection's own playbook
                target = ROOT / "playbooks" / (str(target)[len(COLLECTION):] + ".yml")
            out += read_plays((path.parent / target).resolve())
            continue
        out.append((str(play.get("hosts", "all")), play.get("name", ""), play_roles(play)))
    return out


def matches(pattern, platform):
    """Does an Ansible host pattern (all, a group, a name; ':'/',' lists) select the platform?"""
    names = {"all", platform["name"]} | set(platform.get("groups") or [])
    parts = [p.strip() for p in pattern.replace(",", ":").split(":") if p.strip()]
    if pattern in ("localhost",) or not parts:
        return False
    selected = False
    for part in parts:
        if part.startswith("!"):
            if part[1:] in names:
                return False
        elif part.startswith("&"):
            if part[1:] not in names:
                return False
        elif part in names:
            selected = True
    return selected


def read_tests(path):
    """``(hosts pattern, [(test name, first docstring line)])`` of a testinfra file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pattern = "all"
    tests = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "testinfra_hosts" for t in node.targets):
            for call in ast.walk(node.value):
                if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "get_hosts" \
                        and call.args and isinstance(call.args[0], ast.Constant):
                    pattern = call.args[0].value
        elif isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            doc = (ast.get_docstring(node) or "").strip().splitlines()
            tests.append((node.name, doc[0] if doc else ""))
    return pattern, tests


def test_role(test_name, file_name, roles):
    """The role a test checks: named in the test, else the file's role, else the harness."""
    by_length = sorted(roles, key=len, reverse=True)
    words = "_%s_" % test_name[len("test_"):]
    for role in by_length:
        if "_%s_" % role in words:
            return role
    stem = "_%s_" % file_name[len("test_"):-len(".py")]
    for role in by_length:
        if "_%s_" % role in stem:
            return role
    return HARNESS


def phrase(test_name):
    return test_name[len("test_"):].replace("_", " ")


def scenario_rows(scenario_dir, roles):
    """Rows ``{release, role, scenario, instance, kind, checks}`` of one scenario."""
    mol = yaml.safe_load((scenario_dir / "molecule.yml").read_text())
    platforms = mol.get("platforms") or []
    playbooks = (mol.get("provisioner") or {}).get("playbooks") or {}
    plays = []
    for step in PLAYBOOK_STEPS:
        rel = playbooks.get(step, "%s.yml" % step)
        path = (scenario_dir / rel).resolve()
        if path.is_file():
            plays += [(step,) + p for p in read_plays(path)]
    verifier = mol.get("verifier") or {}
    test_dir = (scenario_dir / verifier.get("directory", "tests")).resolve()
    test_files = sorted(test_dir.glob("test_*.py")) if test_dir.is_dir() else []
    parsed = [(f.name,) + read_tests(f) for f in test_files]
    rows = []
    for platform in platforms:
        harness = platform.get("harness") or {}
        release = release_of(harness.get("recipe", "default"))
        kind = harness.get("kind", "vm")
        applied, checks = [], {}
        for step, pattern, name, play_role_list in plays:
            if not matches(pattern, platform):
                continue
            for role in play_role_list:
                if role not in applied:
                    applied.append(role)
            if step == "side_effect" and name:
                for role in dict.fromkeys(play_role_list) or [HARNESS]:
                    checks.setdefault(role, []).append("side effect: " + name)
        for file_name, pattern, tests in parsed:
            if not matches(pattern, platform):
                continue
            for test_name, _doc in tests:
                role = test_role(test_name, file_name, roles)
                checks.setdefault(role, []).append(phrase(test_name))
        for role in applied + [r for r in checks if r not in applied]:
            what = checks.get(role) or [UNCHECKED]
            rows.append({"release": release, "role": role, "scenario": scenario_dir.name,
                         "instance": platform["name"], "kind": kind, "checks": what})
    return rows


def collect(root=ROOT):
    roles = sorted(p.name for p in (root / "roles").iterdir() if (p / "tasks").is_dir())
    rows = []
    for scenario in sorted((root / "molecule").iterdir()):
        if (scenario / "molecule.yml").is_file():
            rows += scenario_rows(scenario, roles)
    return rows


def render(rows):
    lines = ["# What the molecule scenarios test, per release and role", "",
             "<!-- generated by scripts/gen_test_table.py from molecule/*/molecule.yml, the",
             "     playbooks they run and their testinfra files; do not edit: `make docs` -->", "",
             "One row per release, role and scenario instance (`vm`: a QEMU VM booted by the",
             "harness, `nspawn`: a systemd-nspawn container of the same recipe; see",
             "[harness.md](harness.md)). Every scenario also runs converge twice",
             "(idempotence). A check is a testinfra test (its name) or a side-effect play.",
             "`(harness)` rows are the harness's own smoke checks.", ""]
    order = {r: i for i, r in enumerate(RELEASE_NAMES)}
    releases = sorted({r["release"] for r in rows}, key=lambda r: (order.get(r, 99), r))
    for release in releases:
        lines += ["## %s" % RELEASE_NAMES.get(release, release), "",
                  "| role | scenario | instance (kind) | what is checked |",
                  "| --- | --- | --- | --- |"]
        mine = sorted((r for r in rows if r["release"] == release),
                      key=lambda r: (r["role"] == HARNESS, r["role"], r["scenario"], r["instance"]))
        for r in mine:
            lines.append("| %s | %s | %s (%s) | %s |" % (
                r["role"], r["scenario"], r["instance"], r["kind"],
                "; ".join(c.replace("|", "\\|") for c in r["checks"])))
        lines.append("")
    roles = sorted({r["role"] for r in rows if r["role"] != HARNESS})
    lines += ["## Roles by release", "", "| role | %s |" % " | ".join(
        RELEASE_NAMES.get(r, r) for r in releases), "| --- |%s" % (" --- |" * len(releases))]
    for role in roles:
        cells = []
        for release in releases:
            n = sum(len([c for c in r["checks"] if c != UNCHECKED]) for r in rows
                    if r["role"] == role and r["release"] == release)
            kinds = sorted({r["kind"] for r in rows if r["role"] == role and r["release"] == release})
            cells.append("%d checks (%s)" % (n, ", ".join(kinds)) if kinds else "not run")
        lines.append("| %s | %s |" % (role, " | ".join(cells)))
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when %s is not what the molecule files give" % OUT.name)
    args = parser.parse_args(argv)
    text = render(collect())
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            sys.stderr.write("%s is stale: run `make docs` (python scripts/gen_test_table.py)\n"
                             % OUT.relative_to(ROOT))
            return 1
        return 0
    OUT.write_text(text)
    print("wrote %s (%d rows)" % (OUT.relative_to(ROOT), len(text.splitlines())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
