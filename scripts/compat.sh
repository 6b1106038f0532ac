#!/usr/bin/env bash
# Controller compatibility: the unit tests and one scenario (converge + idempotence)
# with the oldest supported ansible-core (this machine's Python) and with the current
# release (ansible-core 2.21 on Debian 13's Python 3.13, in a Debian 13 tree entered with
# systemd-nspawn, sharing this machine's network), plus ansible-test sanity with 2.21.
#   scripts/compat.sh [minimum|current|all]      (make compat)
# Both stacks boot their scenario's VM with the harness; its image must be built
# (`python -m tests.harness build`, which `make compat` runs first).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-all}
scenario_dir="$top/tests/compat"
ctl_cache=${VMHOST_CONTROLLER_CACHE:-/var/cache/vmhost-controllers}
suite=trixie
mirror=http://deb.debian.org/debian
packages=python3,python3-venv,python3-dev,gcc,git,rsync,openssh-client,ca-certificates,qemu-system-x86,qemu-utils,xorriso,e2fsprogs,dosfstools,mtools,fdisk,procps,iproute2,file
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
log() { echo "compat: $*" >&2; }

# Run the unit tests, then converge + idempotence of tests/compat/molecule/compat.
# $1: stack name, $2: python of the stack's venv, $3: the collection's top dir as that python sees it.
run_stack() {
  local stack=$1 py=$2 src=$3 bin
  bin=$(dirname "$py")
  log "$stack: $("$bin/ansible" --version | head -1), $("$py" --version)"
  (cd "$src" && "$py" -m pytest -q -p no:cacheprovider tests/unit)
  cd "$src/tests/compat"
  export COMPAT_STACK=$stack VMHOST_TOP=$src NO_COLOR=1 ANSIBLE_NOCOLOR=1 PY_COLORS=0
  local rc=0
  { "$bin/molecule" create -s compat && "$bin/molecule" converge -s compat \
      && "$bin/molecule" idempotence -s compat; } || rc=$?
  "$bin/molecule" destroy -s compat >/dev/null 2>&1 || true
  [ "$rc" = 0 ] && log "$stack: unit tests, converge and idempotence passed"
  return "$rc"
}

minimum() {
  local venv="$top/.tmp/venv-minimum" stamp
  stamp=$(hash_of "$scenario_dir/requirements-minimum.txt")
  if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$venv"; python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$scenario_dir/requirements-minimum.txt"
    echo "$stamp" > "$venv/.stamp"
  fi
  ANSIBLE_COLLECTIONS_PATH="$top/.tmp/collections" PYTHONPATH="$top/.tmp/collections:$top" \
    PATH="$venv/bin:$PATH" run_stack minimum "$venv/bin/python" "$top"
}

# The Debian 13 controller tree, built once per package list and requirements.
current_tree() {
  local tree="$ctl_cache/$suite" stamp
  stamp=$(echo "$packages" | cat - "$scenario_dir/requirements-current.txt" | sha256sum | cut -c1-16)
  if [ "$(cat "$tree/.vmhost-stamp" 2>/dev/null)" != "$stamp" ]; then
    log "building the $suite controller tree in $tree"
    rm -rf "$tree.new"; mkdir -p "$ctl_cache"
    mmdebstrap --quiet --variant=minbase --include="$packages" "$suite" "$tree.new" "$mirror"
    # This machine reaches PyPI through its own CA bundle and resolver.
    cp /etc/ssl/certs/ca-certificates.crt "$tree.new/etc/ssl/certs/ca-certificates.crt"
    mkdir -p "$tree.new/src" "$tree.new/shared" "$tree.new/opt/collections/ansible_collections/vmhost"
    ln -s /src "$tree.new/opt/collections/ansible_collections/vmhost/virt"
    cp "$scenario_dir/requirements-current.txt" "$tree.new/opt/requirements.txt"
    chroot "$tree.new" /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin /bin/sh -c 'python3 -m venv /opt/venv && /opt/venv/bin/pip install -q --cert /etc/ssl/certs/ca-certificates.crt -r /opt/requirements.txt'
    echo "$stamp" > "$tree.new/.vmhost-stamp"
    rm -rf "$tree"; mv "$tree.new" "$tree"
  fi
  cp /etc/resolv.conf "$tree/etc/resolv.conf"
  echo "$tree"
}

# Run a command in the Debian 13 tree with the collection at /src.
in_current() {
  local tree=$1 shared=(); shift
  # The reference seeds beside the checkout (unit tests compare tables with them).
  [ -d "$top/../shared" ] && shared=(--bind="$(readlink -f "$top/../shared"):/shared")
  systemd-nspawn --quiet --register=no --keep-unit -D "$tree" \
    --bind="$top:/src" "${shared[@]}" \
    --bind=/var/cache/vmhost-harness --bind=/var/tmp/vmhost-harness \
    --setenv=ANSIBLE_COLLECTIONS_PATH=/opt/collections --setenv=PYTHONPATH=/opt/collections:/src \
    --setenv=PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin --setenv=ANSIBLE_NOCOLOR=1 \
    --setenv=PY_COLORS=0 --setenv=HOME=/root "$@"
}

current() {
  local tree
  tree=$(current_tree)
  mkdir -p /var/tmp/vmhost-harness
  in_current "$tree" /bin/bash -c "$(declare -f log run_stack); set -euo pipefail; run_stack current /opt/venv/bin/python /src"
  # ansible-test sanity with 2.21's rules, on a copy of the tree as sanity-one.sh makes it.
  in_current "$tree" --setenv=SANITY_VENV=/opt/sanity-venv --setenv=SANITY_REQUIREMENTS=/src/tests/compat/requirements-sanity-current.txt \
    --setenv=SANITY_PYTHON=3.13 /bin/bash /src/scripts/sanity-one.sh
}

case $what in
  minimum) minimum ;;
  current) current ;;
  all) minimum; current ;;
  *) echo "usage: $0 [minimum|current|all]" >&2; exit 2 ;;
esac
