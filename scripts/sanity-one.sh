#!/usr/bin/env bash
# Run `ansible-test sanity` on a copy of this tree, optionally limited to some files.
# Usage: scripts/sanity-one.sh [FILE ...]   (paths relative to the collection root)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/vmhost-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/vmhost/virt"
mkdir -p "$dest"
rsync -a --exclude .venv --exclude .tmp --exclude .git --exclude __pycache__ \
  --exclude .pytest_cache --exclude .hypothesis "$top/" "$dest/"
cd "$dest"
git init -q && git add -A
# ansible-test runs each sanity test in a venv of its own, pinned, and bootstraps pip
# into it with a script it downloads from a host outside the package registries.
# SANITY_VENV / SANITY_REQUIREMENTS / SANITY_PYTHON select another ansible-core (scripts/compat.sh).
venv="${SANITY_VENV:-$top/.tmp/sanity-venv}"
[ -x "$venv/bin/ansible-test" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install -q -r "${SANITY_REQUIREMENTS:-$top/requirements-sanity.txt}"; }
pipver=$("$venv/bin/python" - <<'PY'
import re, ansible_test, os
src = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)
cache="$HOME/.ansible/test/cache/get_pip_${pipver//./_}.py"
[ -s "$cache" ] || { mkdir -p "$(dirname "$cache")"; cp "$top/scripts/get-pip-local.py" "$cache"; }
export PATH="$venv/bin:$PATH"
ansible-test sanity --python "${SANITY_PYTHON:-3.11}" --requirements --color no "$@"
