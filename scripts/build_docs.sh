#!/usr/bin/env bash
# Build the reference site: antsibull-docs writes reStructuredText for every module,
# filter and role of vmhost.virt (from the collection's own metadata), Sphinx turns it
# into HTML with warnings as errors. Output: .tmp/docs/html/index.html.
# Needs the venv's antsibull-docs/sphinx and the collection importable
# (ANSIBLE_COLLECTIONS_PATH), as `make docs` sets up.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/.tmp/docs}
rst="$out/rst"
rm -rf "$rst" "$out/html"
mkdir -p "$out"
# The architecture picture, from its text source (graphviz).
dot -Tsvg "$top/docs/architecture.dot" -o "$out/architecture.svg"
if [ -z "${DOCS_NO_WRITE:-}" ]; then cp "$out/architecture.svg" "$top/docs/architecture.svg"; fi
mkdir -p "$rst"
chmod og-w "$rst"      # antsibull-docs refuses a destination others can write
antsibull-docs --config-file "$top/docs/site/antsibull-docs.cfg" collection \
  --use-current --fail-on-error --dest-dir "$rst" vmhost.virt
cp "$top/docs/site/ansible_refs.rst" "$top/docs/site/index.rst" "$rst/"
mkdir -p "$rst/_static" && cp "$out/architecture.svg" "$rst/_static/"
sphinx-build -q -b html -W --keep-going -c "$top/docs/site" "$rst" "$out/html"
echo "docs: $out/html/index.html"
