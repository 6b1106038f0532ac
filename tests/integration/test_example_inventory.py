"""inventory/example works as shipped: it parses, every group playbooks/site.yml
targets exists in it, and each group's variables pass the argument specs of the
roles site.yml applies to that group (types, choices, unknown names)."""
import json
import pathlib
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
INV = ROOT / "inventory" / "example"
BIN = pathlib.Path(sys.executable).parent


def _run(cmd, cwd=ROOT):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          check=False)
    command = " ".join(map(str, cmd))
    assert proc.returncode == 0, "%s failed:\n%s\n%s" % (command, proc.stdout, proc.stderr)
    return proc.stdout


def _site_plays():
    """[(group, [role short names])] from playbooks/site.yml, one row per group of a play."""
    plays = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
    out = []
    for play in plays:
        roles = []
        for role in play.get("roles", []):
            name = role["role"] if isinstance(role, dict) else role
            roles.append(name.split(".")[-1])
        # a play for several groups (vm_hosts:build_hosts) applies its roles to each
        for group in play["hosts"].split(":"):
            out.append((group, roles))
    return out


def test_inventory_has_every_site_group():
    inventory = json.loads(_run([BIN / "ansible-inventory", "-i", INV / "hosts.yml", "--list"]))
    for group, _roles in _site_plays():
        assert inventory.get(group, {}).get("hosts"), "inventory/example has no hosts in %s" % group


def test_group_vars_pass_role_argument_specs(tmp_path):
    plays = []
    for group, roles in _site_plays():
        vars_files = [str(p) for p in (INV / "group_vars" / "all.yml",
                                       INV / "group_vars" / ("%s.yml" % group)) if p.is_file()]
        tasks = []
        for role in roles:
            spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml")
                                  .read_text())["argument_specs"]["main"]["options"]
            tasks.append({
                "name": "%s variables of group %s" % (role, group),
                "ansible.builtin.validate_argument_spec": {
                    "argument_spec": spec,
                    "provided_arguments": "{{ %s }}" % (
                        "dict(vars | dict2items | selectattr('key', 'match', '^%s_') "
                        "| items2dict)" % role),
                },
            })
        plays.append({"name": "Validate %s" % group, "hosts": "localhost",
                      "connection": "local", "gather_facts": False,
                      "vars_files": vars_files, "tasks": tasks})
    playbook = tmp_path / "validate.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    _run([BIN / "ansible-playbook", "-i", "localhost,", playbook])


def test_site_syntax_with_example_inventory():
    _run([BIN / "ansible-playbook", "--syntax-check", "-i", INV / "hosts.yml",
          ROOT / "playbooks" / "site.yml"])
