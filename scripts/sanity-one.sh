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
export PATH="$top/.venv/bin:$PATH"
ansible-test sanity --venv --python 3.11 --requirements --color no "$@"
