"""Recipe -> cached root tree -> cached base qcow2 image.

Cache layout under ``$VMHOST_HARNESS_CACHE`` (default /var/cache/vmhost-harness)::

    trees/<recipe>-<hash16>/            the bootstrapped, post-processed tree
    trees/<recipe>-<hash16>.json        the recipe and its full hash
    images/<recipe>-<hash16>.qcow2      ext4 file system of that tree, as qcow2
    locks/<recipe>-<hash16>.lock        flock held while building that key

Every step builds into a temporary name in the same directory and renames it
into place when complete, so a killed build never leaves a half cache entry;
left-over temporaries are removed by the next build of the same key.
"""

import fcntl
import json
import os
import subprocess
import sys
import time

from ansible_collections.vmhost.virt.plugins.module_utils import qemu_img

from . import paths, recipes, tree
from .errors import HarnessError

GIB = 1024 ** 3
MIB = 1024 ** 2
# free space inside the guest's root file system (libvirt tests need room)
FREE_SPACE = 1536 * MIB
# ext4 metadata (inode tables, journal, reserved blocks) on top of the data
EXT4_OVERHEAD = 0.10
BYTES_PER_INODE = 16384


def minimum_size(tree_bytes, tree_inodes):
    """Smallest file system size (bytes) that holds the tree at all."""
    need = int(tree_bytes * (1 + EXT4_OVERHEAD)) + 64 * MIB
    need = max(need, tree_inodes * BYTES_PER_INODE)
    return need


def default_size(tree_bytes, tree_inodes):
    """Tree plus metadata plus FREE_SPACE, rounded up to 256 MiB."""
    size = minimum_size(tree_bytes, tree_inodes) + FREE_SPACE
    step = 256 * MIB
    return (size + step - 1) // step * step


def check_size(size, tree_bytes, tree_inodes):
    """Raise :class:`HarnessError` when ``size`` cannot hold the tree."""
    need = minimum_size(tree_bytes, tree_inodes)
    if size < need:
        raise HarnessError(
            "image size %d MiB is too small for the tree (%d MiB of files, %d inodes): "
            "it needs at least %d MiB; %d MiB leaves the default %d MiB free"
            % (size // MIB, tree_bytes // MIB, tree_inodes, -(-need // MIB),
               default_size(tree_bytes, tree_inodes) // MIB, FREE_SPACE // MIB))


def cache_key(name, digest):
    return "%s-%s" % (name, digest[:16])


def _log(msg):
    sys.stderr.write("harness: %s\n" % msg)
    sys.stderr.flush()


class _Lock:
    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        paths.makedirs(os.path.dirname(self.path))
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _clean_temporaries(directory, key):
    if not os.path.isdir(directory):
        return
    for entry in os.listdir(directory):
        if entry.startswith(".tmp-" + key):
            full = os.path.join(directory, entry)
            if os.path.isdir(full) and not os.path.islink(full):
                tree.remove_tree(full)
            else:
                os.unlink(full)


def _run(argv, what):
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    except FileNotFoundError:
        raise HarnessError("%s: %s not found; install it with `apt-get install %s`"
                           % (what, argv[0], argv[0]))
    if proc.returncode != 0:
        tail = proc.stdout.decode("utf-8", "replace").strip().splitlines()[-25:]
        raise HarnessError("%s failed (exit %d): %s\n%s"
                           % (what, proc.returncode, " ".join(argv), "\n".join(tail)))


def build_tree(name, spec, digest, cache):
    """Return the cached tree for the recipe, bootstrapping it if missing."""
    key = cache_key(name, digest)
    trees = paths.makedirs(os.path.join(cache, "trees"))
    final = os.path.join(trees, key)
    if os.path.isdir(final):
        return final
    _clean_temporaries(trees, key)
    tmp = os.path.join(trees, ".tmp-%s-%d" % (key, os.getpid()))
    _log("bootstrapping %s (%s %s, %d packages) into %s"
         % (name, spec["distribution"], spec["suite"], len(spec["packages"]), final))
    try:
        _run(["nice", "-n", "10"] + tree.mmdebstrap_argv(spec, tmp), "mmdebstrap")
        tree.post_steps(tmp, spec.get("post", "harness"))
        tree.find_boot_files(tmp)
        with open(os.path.join(trees, ".tmp-%s.json" % key), "w") as f:
            json.dump({"name": name, "sha256": digest, "recipe": spec,
                       "post_steps_version": tree.POST_STEPS_VERSION}, f, indent=2, sort_keys=True)
        os.replace(os.path.join(trees, ".tmp-%s.json" % key), final + ".json")
        os.rename(tmp, final)
    except BaseException:
        tree.remove_tree(tmp)
        raise
    return final


def build_image(key, root, cache, size=None):
    """Return the cached base qcow2 of ``root``, building it if missing."""
    from ansible_collections.vmhost.virt.plugins.module_utils import filesystems

    images = paths.makedirs(os.path.join(cache, "images"))
    final = os.path.join(images, key + ".qcow2")
    if os.path.exists(final) and size is None:
        return final
    tree_bytes, tree_inodes = tree.tree_usage(root)
    if size is None:
        size = default_size(tree_bytes, tree_inodes)
    else:
        size = qemu_img.parse_size(size)
        check_size(size, tree_bytes, tree_inodes)
        final = os.path.join(images, "%s-%d.qcow2" % (key, size))
        if os.path.exists(final):
            return final
    _clean_temporaries(images, key)
    raw = os.path.join(images, ".tmp-%s-%d.raw" % (key, os.getpid()))
    tmp = os.path.join(images, ".tmp-%s-%d.qcow2" % (key, os.getpid()))
    _log("making %d MiB ext4 image of %s" % (size // MIB, root))
    try:
        filesystems.make_ext4(raw, size, tree=root, label="root")
        qemu_img.convert(raw, tmp, out_format="qcow2", src_format="raw")
        os.unlink(raw)
        os.chmod(tmp, 0o444)
        os.rename(tmp, final)
    except qemu_img.ImageError as exc:
        raise HarnessError("building the image of %s failed: %s" % (root, exc))
    finally:
        for leftover in (raw, tmp):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return final


def _resolve(recipe, cache):
    """``(name, spec, digest, cache key, cache dir)`` of ``recipe``; creates the cache dir."""
    name, spec = recipes.resolve(recipe)
    digest = recipes.recipe_hash(spec, tree.POST_STEPS_VERSION)
    cache = cache or paths.cache_dir()
    paths.makedirs(cache)
    return name, spec, digest, cache_key(name, digest), cache


def build_tree_only(recipe="default", cache=None):
    """Build (or reuse) only the cached root tree of ``recipe`` (no image):
    what nspawn instances boot and what image playbooks start from.

    Returns ``{"name", "sha256", "key", "tree", "kernel", "initrd",
    "seconds", "cached"}``.
    """
    start = time.monotonic()
    name, spec, digest, key, cache = _resolve(recipe, cache)
    cached = os.path.isdir(os.path.join(cache, "trees", key))
    with _Lock(os.path.join(cache, "locks", key + ".lock")):
        root = build_tree(name, spec, digest, cache)
    kernel, initrd = tree.find_boot_files(root)
    return {"name": name, "sha256": digest, "key": key, "tree": root,
            "kernel": kernel, "initrd": initrd, "cached": cached,
            "seconds": round(time.monotonic() - start, 2)}


def build(recipe="default", cache=None, size=None):
    """Build (or reuse) the tree and base image of ``recipe``.

    Returns ``{"name", "sha256", "tree", "image", "kernel", "initrd",
    "seconds", "cached"}``.
    """
    start = time.monotonic()
    name, spec, digest, key, cache = _resolve(recipe, cache)
    tree_path = os.path.join(cache, "trees", key)
    image_path = os.path.join(cache, "images", key + ".qcow2")
    cached = os.path.isdir(tree_path) and os.path.exists(image_path) and size is None
    with _Lock(os.path.join(cache, "locks", key + ".lock")):
        root = build_tree(name, spec, digest, cache)
        image = build_image(key, root, cache, size=size)
    kernel, initrd = tree.find_boot_files(root)
    return {"name": name, "sha256": digest, "key": key, "tree": root, "image": image,
            "kernel": kernel, "initrd": initrd, "cached": cached,
            "seconds": round(time.monotonic() - start, 2)}
