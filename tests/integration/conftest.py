# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures shared by the integration tests."""
import pytest

import ansible_local


class AnsibleModuleRunner(object):
    """``ansible_module("qemu_binfmt", args, check=True, diff=True)`` runs vmhost.virt.qemu_binfmt
    through ansible-playbook on localhost and returns its parsed result;
    ``ansible_module.steps("qemu_binfmt", [(args, True), (args, False)])`` runs several
    steps in one playbook; ``ansible_module.recorded(play)`` runs a play (roles) and returns
    every task's result.  See :mod:`ansible_local` for the keyword arguments."""

    def __call__(self, module, args, **kwargs):
        return ansible_local.run_module(module, args, **kwargs)

    def steps(self, module, steps, **kwargs):
        return ansible_local.run_module_steps(module, steps, **kwargs)

    @staticmethod
    def play(play, **kwargs):
        """ansible-playbook on ``play``; returns the process (for tests that grep its output)."""
        return ansible_local.run_play(play, **kwargs)

    @staticmethod
    def recorded(play, **kwargs):
        """ansible-playbook on ``play`` (e.g. one that applies a role); returns
        ``(records, process)``, one parsed record per task result."""
        return ansible_local.run_recorded(play, **kwargs)


@pytest.fixture(scope="session")
def ansible_module():
    """Run a vmhost.virt module through Ansible; returns its parsed result (see AnsibleModuleRunner)."""
    return AnsibleModuleRunner()
