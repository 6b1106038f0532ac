"""Shared by the testinfra files of molecule/default and molecule/bookworm_vm.

Each instance's expected release comes from the harness recipe it was booted from
(instance.json), not from the guest: a guest that booted the wrong tree fails.
"""

import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[4]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness import api, recipes  # noqa: E402

# Debian suite -> VERSION_ID
RELEASES = {"bookworm": "12", "trixie": "13"}


def instance(host):
    """The harness record (instance.json) of testinfra's ``host``."""
    return api.instance_info(host.backend.get_hostname())


def expected_release(info):
    """``(suite, version)`` of the recipe the instance was booted from."""
    _name, spec = recipes.resolve(info["recipe"])
    return spec["suite"], RELEASES[spec["suite"]]


@pytest.fixture()
def harness(host):
    return instance(host)


@pytest.fixture()
def release(harness):
    return expected_release(harness)


def inventory():
    return os.environ["MOLECULE_INVENTORY_FILE"]
