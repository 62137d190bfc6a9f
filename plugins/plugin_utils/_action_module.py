# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private base for the collection's shell-only action plugins.

THIS IS PRIVATE TO virtops.virtnet; the API may change without notice outside the collection.

API
---
``ActionModuleBase(ActionBase)``
    Subclass it, set ``ARGUMENT_SPEC`` (and optionally ``MUTUALLY_EXCLUSIVE``, ``REQUIRED_IF``,
    ``REQUIRED_ONE_OF``, ``REQUIRED_TOGETHER``, ``REQUIRED_BY``) and implement
    ``run_module(self, module)``.  ``run_module`` ends with ``module.exit_json(**result)`` (or
    just returns a dict) and fails with ``module.fail_json(msg, **kw)`` or by raising
    ``AnsibleActionFail`` / ``RemoteCommandError``.

``HostModule`` (the ``module`` passed to ``run_module``), a module-like object:
    ``params``                validated, defaulted task arguments (dict)
    ``check_mode``, ``diff_mode`` (bool), ``host`` (inventory hostname), ``task_vars``
    ``warn(msg)``, ``deprecate(msg, version=None)``
    ``fail_json(msg, **kw)`` / ``exit_json(**kw)``  (raise; never return)
    ``quote(word) -> str``    quote one word for the connection's remote shell
    ``join(argv) -> str``     quote every word and join them
    ``run(argv, check_rc=True, stdin_lines=None, become=None, ok_rcs=(0,)) -> CommandResult``
        run one command: every word quoted, ``LC_ALL=C`` in front, become as the task says
        (``become=False`` forces no become); ``stdin_lines`` are fed to the command through
        ``printf '%s\\n' ... |`` (no stdin channel needed); a rc outside ``ok_rcs`` raises
        ``RemoteCommandError`` (rc/stdout/stderr/cmd) unless ``check_rc=False``.
    ``run_script(script, args=(), check_rc=True, ...) -> CommandResult``
        run a constant POSIX sh script written by us as ``sh -c SCRIPT virtnet ARG...``;
        user values travel only as positional parameters ($1, $2, ...), never inside SCRIPT.
    ``cache``                 dict shared by all helpers for this host within the task
                              (the probe caches itself there).

``CommandResult(rc, stdout, stderr, cmd)``   namedtuple; ``.lines`` = stdout lines.
``RemoteCommandError(AnsibleActionFail)``    ``.rc``, ``.stdout``, ``.stderr``, ``.cmd``; its
                                             result dict carries them.
"""

from __future__ import annotations

import shlex
import traceback
from collections import namedtuple

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase

__all__ = ['ActionModuleBase', 'HostModule', 'CommandResult', 'RemoteCommandError', 'ModuleFailed']

CommandResult = namedtuple('CommandResult', ['rc', 'stdout', 'stderr', 'cmd'])
CommandResult.lines = property(lambda self: self.stdout.splitlines())

# Environment put in front of every remote command: stable output, sbin on PATH (EL6 sudo
# often drops it).
ENV_PREFIX = ['LC_ALL=C', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']


class ModuleFailed(AnsibleActionFail):
    """Raised by ``fail_json``; carries extra result keys."""

    def __init__(self, msg, result=None):
        super().__init__(msg, result=result or {})


class RemoteCommandError(ModuleFailed):
    """A remote command returned an unexpected rc."""

    def __init__(self, msg, rc, stdout, stderr, cmd):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.cmd = cmd
        detail = (stderr or stdout or '').strip()
        if detail:
            msg = '%s (rc=%s): %s' % (msg, rc, detail)
        else:
            msg = '%s (rc=%s)' % (msg, rc)
        super().__init__(msg, result=dict(rc=rc, stdout=stdout, stderr=stderr, cmd=cmd))


class _ModuleExit(Exception):
    def __init__(self, result):
        super().__init__('exit_json')
        self.result = result


class HostModule:
    """Module-like facade given to ``ActionModuleBase.run_module``."""

    def __init__(self, action, params, task_vars):
        self._action = action
        self.params = params
        self.task_vars = task_vars or {}
        self.check_mode = bool(action._task.check_mode)
        self.diff_mode = bool(action._task.diff)
        self.host = self.task_vars.get('inventory_hostname', 'localhost')
        self.warnings = []
        self.deprecations = []
        self.cache = {}
        self.commands = []  # every command run, for debugging (returned with -vvv style keys)

    # ------------------------------------------------------------------ messages
    def warn(self, msg):
        if msg not in self.warnings:
            self.warnings.append(msg)

    def deprecate(self, msg, version=None):
        self.deprecations.append(dict(msg=msg, version=version))

    def fail_json(self, msg, **kwargs):
        raise ModuleFailed(msg, result=kwargs)

    def exit_json(self, **kwargs):
        raise _ModuleExit(kwargs)

    # ------------------------------------------------------------------ quoting
    def quote(self, word):
        word = str(word)
        shell = getattr(self._action._connection, '_shell', None)
        if shell is not None and hasattr(shell, 'quote'):
            return shell.quote(word)
        return shlex.quote(word)

    def join(self, argv):
        return ' '.join(self.quote(w) for w in argv)

    # ------------------------------------------------------------------ execution
    def _exec(self, cmd, become=None):
        sudoable = True if become is None else bool(become)
        self.commands.append(cmd)
        res = self._action._low_level_execute_command(cmd, sudoable=sudoable)
        # ssh runs sudoable commands with a pty (-tt): its line endings are CRLF; give parsers plain LF
        stdout = res.get('stdout', '').replace('\r\n', '\n')
        stderr = res.get('stderr', '').replace('\r\n', '\n')
        return CommandResult(res.get('rc', 0), stdout, stderr, cmd)

    def _check(self, result, check_rc, ok_rcs, what):
        if check_rc and result.rc not in ok_rcs:
            raise RemoteCommandError('%s failed' % what, result.rc, result.stdout, result.stderr, result.cmd)
        return result

    def _feed(self, stdin_lines):
        if stdin_lines is None:
            return ''
        lines = list(stdin_lines)
        if not lines:
            return ': | '
        return self.join(['printf', '%s\\n'] + lines) + ' | '

    def command_line(self, argv, stdin_lines=None):
        """The remote shell text ``run`` would execute (for check mode, errors and tests)."""
        if not argv:
            raise ValueError('empty argv')
        return self._feed(stdin_lines) + self.join(ENV_PREFIX + list(argv))

    def run(self, argv, check_rc=True, stdin_lines=None, become=None, ok_rcs=(0,)):
        cmd = self.command_line(argv, stdin_lines)
        return self._check(self._exec(cmd, become), check_rc, ok_rcs, 'Command %r' % ' '.join(argv))

    def script_line(self, script, args=()):
        return self.join(ENV_PREFIX + ['sh', '-c', script, 'virtnet'] + [str(a) for a in args])

    def run_script(self, script, args=(), check_rc=True, become=None, ok_rcs=(0,), what='Remote script'):
        cmd = self.script_line(script, args)
        return self._check(self._exec(cmd, become), check_rc, ok_rcs, what)


class ActionModuleBase(ActionBase):
    """Base class: validation, check mode, diff, warnings, errors; subclasses do the work."""

    TRANSFERS_FILES = False
    _requires_connection = True
    _supports_check_mode = True
    _supports_async = False

    ARGUMENT_SPEC = {}
    MUTUALLY_EXCLUSIVE = None
    REQUIRED_TOGETHER = None
    REQUIRED_ONE_OF = None
    REQUIRED_IF = None
    REQUIRED_BY = None

    def validate_params(self):
        """Validate ``self._task.args`` against ``ARGUMENT_SPEC``; raise on error."""
        validator = ArgumentSpecValidator(
            self.ARGUMENT_SPEC,
            mutually_exclusive=self.MUTUALLY_EXCLUSIVE,
            required_together=self.REQUIRED_TOGETHER,
            required_one_of=self.REQUIRED_ONE_OF,
            required_if=self.REQUIRED_IF,
            required_by=self.REQUIRED_BY,
        )
        args = dict(self._task.args)
        result = validator.validate(args)
        if result.error_messages:  # AnsibleValidationErrorMultiple is always truthy
            msg = result.errors.msg
            if isinstance(result.errors[0], UnsupportedError):
                msg = 'Unsupported parameters for (%s) module: %s' % (self._task.action, msg)
            raise ModuleFailed(msg, result=dict(validate_args_context={}))
        return result.validated_parameters, list(getattr(result, '_warnings', []))

    def run_module(self, module):  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        module = None
        try:
            params, dummy = self.validate_params()
            module = HostModule(self, params, task_vars)
            out = self.run_module(module)
            if out is None:
                out = {}
        except _ModuleExit as e:
            out = e.result
        except AnsibleActionFail as e:
            out = dict(e.result or {})
            out['failed'] = True
            out['msg'] = e.message
        except Exception as e:  # unexpected: report with traceback rather than a bare crash
            out = dict(failed=True, msg='Unexpected error in %s: %s' % (self._task.action, e),
                       exception=traceback.format_exc())
        out.setdefault('changed', False)
        if module is not None:
            if module.warnings:
                out['warnings'] = list(out.get('warnings', [])) + module.warnings
            if module.deprecations:
                out['deprecations'] = module.deprecations
        result.update(out)
        return result
