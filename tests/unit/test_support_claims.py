"""Support claims match what is tested: every platform a role's meta/main.yml claims
is the distribution release of a harness recipe that a molecule scenario applying
that role runs on. Anything not run is not claimed."""
import pathlib
import re

import pytest
import yaml

from tests.harness import recipes
from tests.harness.errors import HarnessError

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIST_NAMES = {"debian": "Debian"}
ROLE_REF = re.compile(r"vmhost\.virt\.([a-z_]+)")
# `recipe: x`, `"recipe": "x"`, `--recipe x`, `--recipe, x` (an argv list in YAML)
RECIPE_REF = re.compile(r"recipe[\"']?\s*[:=,]?\s*[\"']?([a-z0-9-]+)")
PLAYBOOK_REF = re.compile(r"playbooks/([a-z0-9_]+\.yml)")
# playbooks a scenario shares with others: `converge: ../resources/guests/converge.yml`
SHARED_REF = re.compile(r":\s*(\.\./resources/[A-Za-z0-9_/.-]+\.yml)")


def _scenario_coverage():
    """{role: {(distribution, release)}} from the molecule scenarios' files."""
    roles_dir = ROOT / "roles"
    coverage = {}
    for scenario in sorted((ROOT / "molecule").iterdir()):
        if not (scenario / "molecule.yml").is_file():
            continue
        text = "\n".join(p.read_text() for p in scenario.rglob("*.yml"))
        for shared in set(SHARED_REF.findall(text)):
            path = (scenario / shared).resolve()
            if path.is_file():
                text += "\n" + path.read_text()
        # roles applied by the collection's playbooks the scenario runs count too
        for playbook in set(PLAYBOOK_REF.findall(text)):
            path = ROOT / "playbooks" / playbook
            if path.is_file():
                text += "\n" + path.read_text()
        tested = set()
        for name in set(RECIPE_REF.findall(text)):
            try:
                _name, spec = recipes.resolve(name)
            except HarnessError:
                continue
            tested.add((DIST_NAMES[spec["distribution"]], spec["suite"]))
        for role in set(ROLE_REF.findall(text)):
            if (roles_dir / role).is_dir():
                coverage.setdefault(role, set()).update(tested)
    return coverage


ROLES = sorted(p.parent.parent.name for p in (ROOT / "roles").glob("*/meta/main.yml"))


@pytest.mark.parametrize("role", ROLES)
def test_role_claims_only_tested_platforms(role):
    meta = yaml.safe_load((ROOT / "roles" / role / "meta" / "main.yml").read_text())
    claimed = {(p["name"], str(v)) for p in meta["galaxy_info"].get("platforms", [])
               for v in p["versions"]}
    assert claimed, "%s claims no platform at all" % role
    tested = _scenario_coverage().get(role, set())
    untested = claimed - tested
    assert not untested, ("role %s claims %s, but no molecule scenario applying it runs there "
                          "(tested: %s)" % (role, sorted(untested), sorted(tested)))
