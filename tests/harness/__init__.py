"""Real-VM test harness for vmhost.virt.

Builds Debian root trees (cached by a hash of their recipe), turns them into
ext4/qcow2 images without loop devices or mounts, and boots per-instance
copy-on-write overlays with QEMU (kind ``vm``) or boots the tree itself in a
systemd-nspawn container on an overlayfs root (kind ``nspawn``).  See
docs/harness.md.

CLI: ``python -m tests.harness up|down|list|info|ssh|build|tree|demo``; Python
API in :mod:`tests.harness.api`.
"""

import os as _os
import sys as _sys

# Make the collection importable (ansible_collections.vmhost.virt) when the
# harness runs without PYTHONPATH set, e.g. straight from a fresh checkout
# after `make collection`.
try:
    import ansible_collections.vmhost.virt  # noqa: F401
except ImportError:
    _top = _os.path.dirname(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))
    _sys.path.insert(0, _os.path.join(_top, ".tmp", "collections"))
