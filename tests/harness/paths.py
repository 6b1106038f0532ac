"""Where the harness keeps its state and cache."""

import os

STATE_ENV = "VMHOST_HARNESS_STATE"
CACHE_ENV = "VMHOST_HARNESS_CACHE"


def state_dir():
    return os.environ.get(STATE_ENV) or "/var/tmp/vmhost-harness"


def cache_dir():
    return os.environ.get(CACHE_ENV) or "/var/cache/vmhost-harness"


def instances_dir():
    return os.path.join(state_dir(), "instances")


def instance_dir(name):
    return os.path.join(instances_dir(), name)


def makedirs(path, mode=0o755):
    os.makedirs(path, mode=mode, exist_ok=True)
    return path
