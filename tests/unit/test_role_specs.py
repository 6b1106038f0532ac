"""Every role's meta/argument_specs.yml documents exactly its defaults/main.yml."""
import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = sorted(p.parent.parent.name for p in ROOT.glob("roles/*/defaults/main.yml"))


def _load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_match_defaults(role):
    base = ROOT / "roles" / role
    defaults = _load(base / "defaults" / "main.yml")
    spec = _load(base / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    public = {k for k in defaults if not k.startswith("__")}
    assert public == set(spec), (
        f"role {role}: in defaults only: {sorted(public - set(spec))}; "
        f"in argument_specs only: {sorted(set(spec) - public)}"
    )
    for name in public:
        assert name.startswith(role + "_"), f"role {role}: variable {name} lacks the role prefix"
        opt = spec[name]
        assert opt.get("description"), f"role {role}: {name} has no description"
        assert opt.get("type"), f"role {role}: {name} has no type"
        assert opt.get("default") == defaults[name], (
            f"role {role}: default of {name} is {defaults[name]!r} in defaults/main.yml "
            f"but {opt.get('default')!r} in argument_specs"
        )
