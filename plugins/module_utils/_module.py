# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one shape of a vmhost.virt module: a backend plans, this base applies.

A module is its documentation, its argument spec and three lines::

    module = AnsibleModule(argument_spec=..., supports_check_mode=True)
    run(module, MyBackend(module.params, module.check_mode, tools=ModuleTools(module)))

A backend (a :class:`Backend` subclass in module_utils, importable and testable without
Ansible) implements :meth:`Backend.plan`: it reads the current state and *yields*
:class:`Change` objects, each with a description, a before/after line for the diff and
an ``apply`` callable.  The plan itself never writes.  The base (:meth:`Backend.execute`)
is the only place that knows about check mode: it applies each change as it is yielded
(so a later step of a generator sees what an earlier step did, e.g. a directory that now
exists) unless in check mode, and builds ``changed``, ``actions`` and the diff.
A plan that fails raises :class:`ModuleFailure`; the result then still says what was
already applied.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import abc


class ModuleFailure(Exception):
    """A planned refusal or a failed step: ``msg`` for the user, ``result`` extra return values."""

    def __init__(self, msg, **result):
        Exception.__init__(self, msg)
        self.msg = msg
        self.result = result


class Change(object):
    """One mutation: what it does (``description``, shown in ``actions``), one diff line
    before and after (``None`` for none), and ``apply`` (no arguments; ``None`` when the
    change only reports something another change does)."""

    __slots__ = ("description", "before", "after", "apply")

    def __init__(self, description, before=None, after=None, apply=None):
        self.description = description
        self.before = before
        self.after = after
        self.apply = apply

    def __repr__(self):
        return "Change(%r)" % self.description


class Backend(abc.ABC):
    """Base class of every module backend.

    Subclasses implement :meth:`plan` (a generator, or a function returning a list, of
    :class:`Change`) and put their return values in ``self.result``.  Optional hooks:
    :meth:`finish` (after the plan, e.g. read back what the system reports),
    :meth:`close` (always, last) and :meth:`diff` (a structured diff instead of the default before/after lines).
    ``report_actions`` says whether the result carries the ``actions`` list.
    """

    report_actions = True

    def __init__(self, params, check_mode=False, tools=None):
        self.params = params
        self.check_mode = check_mode
        self.tools = tools
        self.result = {}
        self.changes = []
        self.applied = []

    # -- what subclasses implement ---------------------------------------
    @abc.abstractmethod
    def plan(self):
        """Yield the :class:`Change` objects that bring the system to the requested state."""

    def finish(self):
        """Called once the plan is exhausted (applied, or not in check mode)."""

    def close(self):
        """Called last, whether the plan succeeded or failed (release locks, remove temporary files)."""

    def diff(self):
        """The ``diff`` return value; by default the before and after lines of every change.
        ``None``: the module returns no diff."""
        before = [c.before for c in self.changes if c.before is not None]
        after = [c.after for c in self.changes if c.after is not None]
        return {"before": "".join(line + "\n" for line in before),
                "after": "".join(line + "\n" for line in after)}

    # -- the one place check mode is handled -----------------------------
    @property
    def changed(self):
        """True once a change was applied (in check mode: planned)."""
        return bool(self.changes if self.check_mode else self.applied)

    def _apply(self, change):
        self.changes.append(change)
        if self.check_mode:
            return
        if change.apply is not None:
            try:
                change.apply()
            except ModuleFailure:
                raise
            except (OSError, IOError) as exc:
                raise ModuleFailure("%s failed: %s" % (change.description, exc))
        self.applied.append(change)

    def _summary(self):
        summary = {"changed": self.changed}
        if self.report_actions:
            summary["actions"] = [c.description for c in self.changes]
        return summary

    def execute(self, diff=False):
        """Run the plan; return the module result.  Raises :class:`ModuleFailure` whose
        ``result`` includes ``changed`` (and ``actions``) up to the failing step."""
        try:
            for change in self.plan() or ():
                self._apply(change)
            self.finish()
        except ModuleFailure as exc:
            failure = self._summary()
            failure.update(exc.result)
            exc.result = failure
            raise
        finally:
            self.close()
        result = dict(self.result)
        result.update(self._summary())
        if diff:
            lines = self.diff()
            if lines is not None:
                result["diff"] = lines
        return result


class ModuleTools(object):
    """What a backend may need from the running AnsibleModule (kept behind this small
    object so that backends run without Ansible in unit tests)."""

    def __init__(self, module):
        self.module = module

    def run_command(self, argv):
        return self.module.run_command(argv)

    def get_bin_path(self, name):
        return self.module.get_bin_path(name)

    def warn(self, msg):
        self.module.warn(msg)


def run(module, backend):
    """Execute ``backend`` for ``module`` and exit with its result (or fail with its message)."""
    try:
        result = backend.execute(diff=module._diff)
    except ModuleFailure as exc:
        module.fail_json(msg=exc.msg, **exc.result)
    module.exit_json(**result)
