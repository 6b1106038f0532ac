# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""qemu-img invocations and ``qemu-img info --output=json`` parsing.

Private to vmhost.virt: other collections must not import this module.

Every function takes an optional ``runner`` (a callable ``runner(argv, env)``
returning ``(rc, stdout, stderr)`` as text) so unit tests can inject fakes; the
default runs the real program with :mod:`subprocess`.  Failures raise
:class:`ImageError` with the command and qemu-img's own message.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

from ansible_collections.vmhost.virt.plugins.module_utils import _io
from ansible_collections.vmhost.virt.plugins.module_utils import _tools

QEMU_IMG = "qemu-img"

FORMATS = ("qcow2", "raw")
PREALLOCATION = ("off", "metadata", "falloc", "full")
SECTOR = 512
TEMP_TAG = "disk_image"


class ImageError(Exception):
    """A disk image operation failed; the message says what and why."""


def subprocess_runner(argv, env=None):
    """Run ``argv`` and return ``(rc, stdout, stderr)`` (text); ``env`` is added to os.environ."""
    return _tools.run_command(argv, extra_env=env)


def run(argv, runner=None, env=None):
    """Run ``argv``; return its stdout or raise :class:`ImageError`."""
    rc, out, err = (runner or subprocess_runner)(list(argv), env)
    if rc != 0:
        msg = (err or out or "").strip()
        raise ImageError("%s failed (exit %s): %s" % (" ".join(argv), rc, msg))
    return out


# ---------------------------------------------------------------------------
# sizes
_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4, "p": 1024 ** 5,
    "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4, "pib": 1024 ** 5,
    "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "tb": 1000 ** 4, "pb": 1000 ** 5,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_size(value):
    """Parse a size in bytes: an int, ``"1048576"``, ``"10G"``, ``"512MiB"``,
    ``"1.5 TiB"``, ``"100MB"``.

    ``K``/``M``/``G``/``T``/``P`` and ``KiB``... are powers of 1024 (as
    qemu-img reads them); ``KB``/``MB``/``GB``... are powers of 1000.  The
    result must be a whole number of bytes.  Raises :class:`ImageError`.
    """
    if isinstance(value, bool):
        raise ImageError("size %r is not a size" % (value,))
    if isinstance(value, int):
        if value < 0:
            raise ImageError("size %d is negative" % value)
        return value
    if isinstance(value, float):
        if value < 0 or value != int(value):
            raise ImageError("size %r is not a whole number of bytes" % value)
        return int(value)
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ImageError("size %r is not understood; use bytes or a number with a unit "
                         "such as 512MiB, 10G, 1.5TiB" % (value,))
    number, unit = match.groups()
    unit = unit.lower()
    if unit not in _UNITS:
        raise ImageError("size %r has an unknown unit %r; use B, K/KiB, M/MiB, G/GiB, "
                         "T/TiB (1024) or KB, MB, GB, TB (1000)" % (value, unit))
    if "." in number:
        whole, frac = number.split(".")
        scale = 10 ** len(frac)
        numerator = (int(whole) * scale + int(frac)) * _UNITS[unit]
        if numerator % scale:
            raise ImageError("size %r is not a whole number of bytes" % (value,))
        return numerator // scale
    return int(number) * _UNITS[unit]


def human_size(nbytes):
    """Short binary rendering of a byte count (``1.5 GiB``), for messages."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            if unit == "B":
                return "%d B" % nbytes
            return ("%.2f" % value).rstrip("0").rstrip(".") + " " + unit
        value /= 1024.0
    return "%d B" % nbytes  # pragma: no cover


def round_up(value, multiple):
    return -(-value // multiple) * multiple


# ---------------------------------------------------------------------------
# qemu-img info
def parse_info(text):
    """Parse ``qemu-img info --output=json`` text into our summary dict.

    Keys: ``format``, ``virtual_size``, ``actual_size``, ``backing_file``,
    ``backing_format``, ``compressed`` (qcow2 cluster compression cannot be
    seen by info: always None here), ``cluster_size``, ``dirty``, ``raw`` (the
    full parsed JSON).
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ImageError("cannot parse qemu-img info output: %s" % exc)
    if not isinstance(data, dict) or "format" not in data:
        raise ImageError("qemu-img info output has no 'format': %r" % (text[:200],))
    return {
        "format": data.get("format"),
        "virtual_size": data.get("virtual-size"),
        "actual_size": data.get("actual-size"),
        "backing_file": data.get("backing-filename") or data.get("full-backing-filename"),
        "backing_format": data.get("backing-filename-format"),
        "cluster_size": data.get("cluster-size"),
        "dirty": bool(data.get("dirty-flag", False)),
        "raw": data,
    }


def info(path, runner=None, fmt=None):
    """Return the parsed ``qemu-img info --output=json`` of ``path``.

    The dict is qemu-img's own JSON (``format``, ``virtual-size``,
    ``actual-size``, ``backing-filename``...) plus the normalised keys of
    :func:`parse_info` (``virtual_size``, ``actual_size``, ``backing_file``,
    ``backing_format``).  ``fmt`` is passed as ``-f``: give it for any image a
    guest may have written, so that qemu-img does not probe its format.
    ``qemu-img info`` does not open backing files.
    """
    if not os.path.exists(path):
        raise ImageError("image %s does not exist" % path)
    argv = [QEMU_IMG, "info", "--output=json", "-U"]
    if fmt:
        _check_format(fmt)
        argv += ["-f", fmt]
    out = run(argv + [path], runner)
    summary = parse_info(out)
    merged = dict(summary["raw"])
    merged.update((k, v) for k, v in summary.items() if k != "raw")
    return merged


QCOW2_MAGIC = b"QFI\xfb"


def sniff(path):
    """``qcow2`` when ``path`` starts with the qcow2 magic, else ``raw`` (reads 4 bytes)."""
    with open(path, "rb") as handle:
        return "qcow2" if handle.read(4) == QCOW2_MAGIC else "raw"


def looks_like_disk(path):
    """Why ``path`` does not look like a disk image, or None.

    A qcow2 header, or a size that is a multiple of 512 bytes with a NUL byte in
    its first 4 KiB (or nothing at all), is taken as an image; text files and
    odd-sized files are not."""
    if sniff(path) == "qcow2":
        return None
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if size % SECTOR:
        return "%d bytes, not a multiple of %d, starting %r" % (size, SECTOR, head[:32])
    if head and b"\0" not in head:
        return "%d bytes of what looks like text, starting %r" % (size, head[:32])
    return None


def format_of(path, declared=None, what="image", runner=None):
    """The format to pass with ``-f`` when reading ``path``.

    A declared format is used as given.  Otherwise the first bytes decide, and a
    qcow2 header that names a backing file is refused: a raw image written by a
    guest can carry such a header to make qemu-img read a host file."""
    if not os.path.isfile(path):
        raise ImageError("%s %s does not exist or is not a regular file" % (what, path))
    if declared:
        _check_format(declared)
        return declared
    fmt = sniff(path)
    if fmt == "qcow2":
        backing = info(path, runner, "qcow2").get("backing_file")
        if backing:
            raise ImageError("%s %s has a qcow2 header naming the backing file %s; a raw image "
                             "written by a guest can look like this, so its format is not "
                             "guessed: give it explicitly (qcow2 to read it with its backing "
                             "file, raw to read it as raw)" % (what, path, backing))
    return fmt


# ---------------------------------------------------------------------------
# create / convert / resize
def _check_format(fmt, what="format"):
    if fmt not in FORMATS:
        raise ImageError("%s %r is not supported; choose one of %s"
                         % (what, fmt, ", ".join(FORMATS)))


def create_argv(path, fmt, size=None, backing_file=None, backing_format=None,
                preallocation=None):
    """The ``qemu-img create`` command line for these arguments (pure)."""
    _check_format(fmt)
    if size is None and not backing_file:
        raise ImageError("creating %s needs a size or a backing file" % path)
    if backing_file and fmt != "qcow2":
        raise ImageError("a backing file needs format qcow2, not %s" % fmt)
    if preallocation is not None and preallocation not in PREALLOCATION:
        raise ImageError("preallocation %r is not one of %s"
                         % (preallocation, ", ".join(PREALLOCATION)))
    if backing_file and preallocation not in (None, "off", "metadata"):
        raise ImageError("preallocation %s cannot be used with a backing file" % preallocation)
    argv = [QEMU_IMG, "create", "-q", "-f", fmt]
    opts = []
    if backing_file:
        if not backing_format:
            raise ImageError("backing_format is required with a backing file "
                             "(qemu-img refuses to guess it)")
        _check_format(backing_format, "backing format")
        argv += ["-b", backing_file, "-F", backing_format]
    if preallocation:
        opts.append("preallocation=%s" % preallocation)
    if opts:
        argv += ["-o", ",".join(opts)]
    argv.append(path)
    if size is not None:
        argv.append(str(parse_size(size)))
    return argv


def create(path, fmt, size=None, backing_file=None, backing_format=None,
           preallocation=None, runner=None):
    """Create image ``path`` of format ``fmt`` (``qcow2``/``raw``).

    ``size`` in bytes or with units (see :func:`parse_size`); may be omitted
    when ``backing_file`` is given (the backing file's size is used).
    """
    run(create_argv(path, fmt, size, backing_file, backing_format, preallocation), runner)


def convert_argv(src, dst, out_format="qcow2", src_format=None, compress=False):
    """The ``qemu-img convert`` command line for these arguments (pure)."""
    _check_format(out_format, "output format")
    if compress and out_format != "qcow2":
        raise ImageError("compression needs output format qcow2, not %s" % out_format)
    if not src_format:
        raise ImageError("converting %s needs its format (qemu-img must not probe it)" % src)
    _check_format(src_format, "source format")
    argv = [QEMU_IMG, "convert", "-q", "-f", src_format]
    argv += ["-O", out_format]
    if compress:
        argv.append("-c")
    argv += [src, dst]
    return argv


def convert(src, dst, out_format="qcow2", src_format=None, compress=False, runner=None):
    """Convert image ``src`` into a new image ``dst`` of ``out_format``.

    Without ``src_format`` the format is found by :func:`format_of` (which refuses
    a guessed qcow2 with a backing file).

    ``compress=True`` writes compressed qcow2 clusters.  ``dst`` is written
    in place: callers wanting atomicity convert to a temporary name in the
    destination directory and rename (see :func:`atomic_convert`).
    """
    if not os.path.exists(src):
        raise ImageError("source image %s does not exist" % src)
    src_format = format_of(src, src_format, "source image", runner)
    run(convert_argv(src, dst, out_format, src_format, compress), runner)


def resize_argv(path, size, fmt=None, shrink=False, preallocation=None):
    argv = [QEMU_IMG, "resize", "-q"]
    if fmt:
        _check_format(fmt)
        argv += ["-f", fmt]
    if preallocation:
        if preallocation not in PREALLOCATION:
            raise ImageError("preallocation %r is not one of %s"
                             % (preallocation, ", ".join(PREALLOCATION)))
        argv.append("--preallocation=%s" % preallocation)
    if shrink:
        argv.append("--shrink")
    argv += [path, str(parse_size(size))]
    return argv


def resize(path, size, fmt=None, shrink=False, preallocation=None, runner=None):
    """Set the virtual size of ``path`` to ``size``; shrinking needs ``shrink``."""
    run(resize_argv(path, size, fmt, shrink, preallocation), runner)


def atomic_convert(src, dst, out_format="qcow2", src_format=None, compress=False, runner=None,
                   mode=None, before_commit=None):
    """Convert into a temporary file beside ``dst`` (mode 0600, or ``mode``) and rename it into place.

    ``before_commit(tmp)`` runs just before the rename (to set owner/group)."""
    _io.build_atomically(dst, TEMP_TAG, lambda tmp: convert(src, tmp, out_format, src_format,
                                                            compress, runner),
                         mode, before_commit)


def atomic_create(path, fmt, size=None, backing_file=None, backing_format=None,
                  preallocation=None, runner=None, mode=None, before_commit=None):
    """:func:`create` into a temporary file beside ``path`` and rename it into place."""
    _io.build_atomically(path, TEMP_TAG, lambda tmp: create(tmp, fmt, size, backing_file,
                                                            backing_format, preallocation, runner),
                         mode, before_commit)
