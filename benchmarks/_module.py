# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run one of our modules the way Ansible runs it on the managed host: one Python process
given a file of ``ANSIBLE_MODULE_ARGS``, without the controller (whose start-up is Ansible's
cost, the same for every module: the benchmarks print it apart, as ``ansible -m ping``)."""

import json
import os
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLL = os.path.join(TOP, ".tmp", "collections")


class ModuleRun(object):
    """``ModuleRun(name, args, work)()`` runs ``vmhost.virt.<name>`` with ``args`` and returns
    its result (a dict); a failed run ends the benchmark with the module's message."""

    def __init__(self, name, args, work):
        self.args_file = os.path.join(work, "%s-args.json" % name)
        with open(self.args_file, "w") as handle:
            json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
        self.argv = [sys.executable, "-m", "ansible_collections.vmhost.virt.plugins.modules." + name,
                     self.args_file]
        self.env = dict(os.environ, PYTHONPATH=COLL)

    def __call__(self):
        proc = subprocess.run(self.argv, stdout=subprocess.PIPE, env=self.env, check=False)
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            raise SystemExit("%s printed no result: %r" % (self.argv[-2], proc.stdout[-500:]))
        if result.get("failed"):
            raise SystemExit("%s failed: %s" % (self.argv[-2], result.get("msg")))
        return result
