#!/usr/bin/env bash
# Build the documentation from the collection's own metadata, with antsibull-docs only:
#  1. reference pages (simplified reStructuredText, which GitHub renders) for every module,
#     filter and role: docs/modules/<name>_{module,filter}.rst, docs/roles/<role>_role.rst;
#  2. the architecture picture docs/architecture.svg from docs/architecture.dot (graphviz);
#  3. the HTML reference site: antsibull-docs writes reStructuredText, Sphinx turns it into
#     HTML with warnings as errors. Output: .tmp/docs/html/index.html.
# Usage: build_docs.sh [OUT_DIR] [--reference-only]. DOCS_NO_WRITE=1 leaves docs/ alone
# (the pages and picture stay in OUT_DIR: tests compare them with the committed ones).
# Needs the venv's antsibull-docs/sphinx and the collection importable
# (ANSIBLE_COLLECTIONS_PATH), as `make docs` sets up.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=$top/.tmp/docs
reference_only=
for arg in "$@"; do
  case $arg in
    --reference-only) reference_only=1 ;;
    *) out=$arg ;;
  esac
done
rst="$out/rst"
ref="$out/reference"
mkdir -p "$out"

# 1. reference pages
rm -rf "$ref" && mkdir -p "$ref" && chmod 755 "$ref"   # antsibull-docs refuses a destination others can write
antsibull-docs --config-file "$top/docs/site/antsibull-docs.cfg" collection \
  --use-current --fail-on-error --output-format simplified-rst --squash-hierarchy \
  --dest-dir "$ref" vmhost.virt
rm -f "$ref/index.rst"
mkdir -p "$ref/roles" "$ref/modules"
mv "$ref"/*_role.rst "$ref/roles/"
mv "$ref"/*.rst "$ref/modules/"
if [ -z "${DOCS_NO_WRITE:-}" ]; then
  for d in roles modules; do
    rm -f "$top/docs/$d"/*.rst "$top/docs/$d"/*.md
    cp "$ref/$d"/*.rst "$top/docs/$d/"
  done
fi
[ -z "$reference_only" ] || { echo "docs: reference pages in $ref"; exit 0; }

# 2. the architecture picture, from its text source
rm -rf "$rst" "$out/html"
dot -Tsvg "$top/docs/architecture.dot" -o "$out/architecture.svg"
if [ -z "${DOCS_NO_WRITE:-}" ]; then cp "$out/architecture.svg" "$top/docs/architecture.svg"; fi

# 3. the HTML site
mkdir -p "$rst"
chmod og-w "$rst"
antsibull-docs --config-file "$top/docs/site/antsibull-docs.cfg" collection \
  --use-current --fail-on-error --dest-dir "$rst" vmhost.virt
cp "$top/docs/site/ansible_refs.rst" "$top/docs/site/index.rst" "$rst/"
mkdir -p "$rst/_static" && cp "$out/architecture.svg" "$rst/_static/"
sphinx-build -q -b html -W --keep-going -c "$top/docs/site" "$rst" "$out/html"
echo "docs: $out/html/index.html"
