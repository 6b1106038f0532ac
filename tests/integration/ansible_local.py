# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The environment every integration test runs ansible / ansible-playbook on localhost with."""
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
# `make collection` links this tree here; an explicit ANSIBLE_COLLECTIONS_PATH wins.
COLL = str(ROOT / ".tmp" / "collections")


def ansible_env(extra=None):
    """os.environ plus quiet, deterministic Ansible settings and the collection path.

    SOURCE_DATE_EPOCH is dropped so a module's own default is what a test sees
    unless the test passes one in ``extra``.
    """
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", COLL)
    env.setdefault("PYTHONPATH", COLL)
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="False",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="False", ANSIBLE_RETRY_FILES_ENABLED="False",
               ANSIBLE_HOST_KEY_CHECKING="False")
    env.pop("SOURCE_DATE_EPOCH", None)
    env.update(extra or {})
    return env
