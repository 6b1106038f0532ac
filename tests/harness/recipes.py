"""Recipes: what goes into a cached root tree, and the hash that keys the cache.

A recipe is a plain dict::

    {"distribution": "debian", "suite": "bookworm", "variant": "minbase",
     "mirrors": [...], "packages": [...], "post": [...], "version": N}

Everything that changes the resulting tree is part of the hash, including the
post-steps (see :mod:`tests.harness.tree`); bump ``POST_STEPS_VERSION`` there
when the code of a post-step changes.
"""

import copy
import hashlib
import json

from .errors import HarnessError

# Distributions and suites the harness knows how to bootstrap.
KNOWN_SUITES = {
    "debian": ("bookworm", "trixie"),
}

DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY = "http://deb.debian.org/debian-security"

# The one shared recipe: every molecule scenario and the demo boot this image,
# so CI builds one image only.  The heavy packages our roles install are
# preinstalled (installing them inside a TCG guest takes ~20 minutes); the
# roles' own install tasks must then report no change.
DEFAULT_PACKAGES = (
    # boot and base system
    "systemd-sysv", "linux-image-amd64", "udev", "dbus", "sudo", "libnss-myhostname",
    "openssh-server", "python3", "python3-apt",
    "iproute2", "ifupdown", "isc-dhcp-client", "procps", "less",
    # heavy packages of our roles
    "libvirt-daemon-system", "libvirt-clients",
    "qemu-system-x86", "qemu-utils", "qemu-guest-agent", "qemu-user-static",
    "python3-pyelftools", "sasl2-bin", "libsasl2-modules",
    # the libvirt role validates its config with libvirt's own Augeas lens
    "augeas-tools",
    # build hosts: Debian's Nix is the host side of offloaded builds (no unit,
    # no daemon: 13 MB; one image for VM hosts and build hosts is cheaper in CI
    # than a second recipe, which costs one more mmdebstrap)
    "nix-bin",
    # build_vm_secrets (run by the build_vm role on the build host) generates keys
    # with cryptography
    "python3-cryptography",
)

# The root tree of the build VM guest image (playbooks/build_vm_image.yml
# turns it into a disk image): boots, SSH, Nix with its daemon, guest agent.
# Kept minimal: every MB is TCG boot time and image size.
BUILD_VM_GUEST_PACKAGES = (
    "systemd-sysv", "linux-image-amd64", "udev", "dbus", "e2fsprogs",
    "openssh-server", "python3", "iproute2", "ifupdown", "isc-dhcp-client",
    "nix-bin", "nix-setup-systemd", "qemu-guest-agent",
)

# Debian 13: the same set under trixie's names (all of them exist there;
# qemu-user-static is a transitional package for qemu-user + qemu-user-binfmt,
# systemd-networkd is still part of systemd).  libvirt 11.3's split packages
# are the drivers' shared objects (libvirt-daemon-driver-qemu, -network, ...):
# trixie ships no modular daemons (no virtqemud/virtproxyd binaries or units in
# any installed package), only libvirtd, virtlogd (-log) and virtlockd (-lock).
# The driver packages are pulled by libvirt-daemon-system anyway and are named
# so that a change of the meta package cannot drop them silently;
# libvirt-daemon-lock is only a Recommends, which mmdebstrap does not install.
TRIXIE_PACKAGES = DEFAULT_PACKAGES + (
    "libvirt-daemon", "libvirt-daemon-common", "libvirt-daemon-driver-qemu",
    "libvirt-daemon-driver-network", "libvirt-daemon-log", "libvirt-daemon-lock",
)

BOOKWORM_MIRRORS = [
    "deb %s bookworm main" % DEBIAN_MIRROR,
    "deb %s bookworm-updates main" % DEBIAN_MIRROR,
    "deb %s bookworm-security main" % DEBIAN_SECURITY,
]

TRIXIE_MIRRORS = [
    "deb %s trixie main" % DEBIAN_MIRROR,
    "deb %s trixie-updates main" % DEBIAN_MIRROR,
    "deb %s trixie-security main" % DEBIAN_SECURITY,
]

# Recipe names that are another recipe under a second name: they resolve to
# the same cache entry (no second bootstrap).
ALIASES = {
    # nspawn build hosts boot the default tree (it has QEMU and nix-bin)
    "build-host": "default",
}

RECIPES = {
    "default": {
        "distribution": "debian",
        "suite": "bookworm",
        "variant": "minbase",
        "mirrors": list(BOOKWORM_MIRRORS),
        "packages": list(DEFAULT_PACKAGES),
    },
    # Debian 13 host: its own tree and cache entry (the hash covers the suite)
    "trixie": {
        "distribution": "debian",
        "suite": "trixie",
        "variant": "minbase",
        "mirrors": list(TRIXIE_MIRRORS),
        "packages": list(TRIXIE_PACKAGES),
    },
    "build-vm-guest": {
        "distribution": "debian",
        "suite": "bookworm",
        "variant": "minbase",
        "mirrors": list(BOOKWORM_MIRRORS),
        "packages": list(BUILD_VM_GUEST_PACKAGES),
        # file-only post-steps for a real image, not for a harness instance:
        # no harness first-boot unit, no root SSH login (see tree.post_steps)
        "post": "image",
    },
}

POST_PROFILES = ("harness", "image")


def resolve(recipe):
    """Return ``(name, recipe_dict)`` for a recipe name or an inline dict.

    An inline dict may name ``base`` (a recipe name) and add ``extra_packages``.
    Raises :class:`HarnessError` for unknown names, distributions or suites.
    """
    if isinstance(recipe, str):
        recipe = ALIASES.get(recipe, recipe)
        if recipe not in RECIPES:
            raise HarnessError("unknown recipe %r; known recipes: %s"
                               % (recipe, ", ".join(sorted(set(RECIPES) | set(ALIASES)))))
        name, spec = recipe, copy.deepcopy(RECIPES[recipe])
    elif isinstance(recipe, dict):
        spec = copy.deepcopy(recipe)
        base = spec.pop("base", None)
        base = ALIASES.get(base, base)
        name = spec.pop("name", None) or base or "custom"
        if base is not None:
            if base not in RECIPES:
                raise HarnessError("unknown base recipe %r; known recipes: %s"
                                   % (base, ", ".join(sorted(RECIPES))))
            merged = copy.deepcopy(RECIPES[base])
            merged.update(spec)
            spec = merged
        extra = spec.pop("extra_packages", None) or []
        spec["packages"] = list(spec.get("packages") or []) + list(extra)
    else:
        raise HarnessError("a recipe is a name or a dict, not %r" % (recipe,))
    validate(spec)
    return name, spec


def validate(spec):
    """Raise :class:`HarnessError` unless ``spec`` is a recipe we can build."""
    dist = spec.get("distribution")
    if dist not in KNOWN_SUITES:
        raise HarnessError("unknown distribution %r; the harness can build: %s"
                           % (dist, ", ".join(sorted(KNOWN_SUITES))))
    suite = spec.get("suite")
    if suite not in KNOWN_SUITES[dist]:
        raise HarnessError("unknown suite %r for distribution %s; known suites: %s"
                           % (suite, dist, ", ".join(KNOWN_SUITES[dist])))
    if spec.get("variant", "minbase") not in ("minbase", "essential", "apt", "required"):
        raise HarnessError("unknown variant %r" % (spec.get("variant"),))
    pkgs = spec.get("packages")
    if not isinstance(pkgs, list) or not all(isinstance(p, str) and p for p in pkgs):
        raise HarnessError("recipe packages must be a list of package names")
    for pkg in pkgs:
        if not all(c.isalnum() or c in "+-.:" for c in pkg):
            raise HarnessError("bad package name %r in recipe" % (pkg,))
    if not spec.get("mirrors"):
        raise HarnessError("recipe has no mirrors")
    if spec.get("post", "harness") not in POST_PROFILES:
        raise HarnessError("unknown post-step profile %r; known: %s"
                           % (spec.get("post"), ", ".join(POST_PROFILES)))


def recipe_hash(spec, post_version):
    """sha256 (hex) over everything that determines the tree.

    Package order and duplicates do not matter; mirrors, suite, variant and the
    post-step version do.
    """
    canon = {
        "distribution": spec["distribution"],
        "suite": spec["suite"],
        "variant": spec.get("variant", "minbase"),
        "mirrors": list(spec["mirrors"]),
        "packages": sorted(set(spec["packages"])),
        "post": post_version,
    }
    # the harness profile is the historical default: it adds nothing, so
    # existing cache keys stay valid
    if spec.get("post", "harness") != "harness":
        canon["post_profile"] = spec["post"]
    data = json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()
