# SPDX-License-Identifier: GPL-3.0-or-later
"""Every action plugin with an ARGUMENT_SPEC matches its module stub's DOCUMENTATION.

Generic: any plugins/action/<name>.py whose ActionModule has ARGUMENT_SPEC is checked against
plugins/modules/<name>.py (names, types, defaults, choices, elements, required, suboptions),
with the stub's doc fragments merged by ansible-doc itself (``ansible-doc --json``), so that
fragment options and per-module overrides of them are seen exactly as users see them.
"""
import importlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
ACTION_DIR = os.path.join(ROOT, 'plugins', 'action')
MODULE_DIR = os.path.join(ROOT, 'plugins', 'modules')
COLLECTIONS = os.path.join(ROOT, 'build', 'collections')
PKG = 'ansible_collections.virtops.virtnet.plugins'


def _action_plugins():
    out = []
    for fname in sorted(os.listdir(ACTION_DIR)) if os.path.isdir(ACTION_DIR) else []:
        if fname.endswith('.py') and not fname.startswith('_'):
            name = fname[:-3]
            mod = importlib.import_module('%s.action.%s' % (PKG, name))
            cls = getattr(mod, 'ActionModule', None)
            if cls is not None and getattr(cls, 'ARGUMENT_SPEC', None):
                out.append(name)
    return out


def _ansible_doc():
    """``ansible-doc`` of this venv (the one that merges doc fragments exactly as users see them)."""
    local = os.path.join(os.path.dirname(sys.executable), 'ansible-doc')
    return local if os.path.exists(local) else shutil.which('ansible-doc')


_DOCS = {}


def _doc(name):
    """The stub's documentation as ansible-doc renders it: doc fragments merged (deep, with overrides)."""
    if not _DOCS:
        fqcns = ['virtops.virtnet.%s' % n for n in ACTIONS]
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1')
        out = subprocess.run([_ansible_doc(), '--json', '-t', 'module'] + fqcns, env=env, check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True).stdout
        for fqcn, data in json.loads(out).items():
            _DOCS[fqcn.split('.')[-1]] = data['doc']
    return _DOCS[name]


def _norm_type(t):
    return t or 'str'


def _compare(spec, options, path, problems):
    for key in sorted(set(spec) | set(options)):
        where = '%s%s' % (path, key)
        if key not in options:
            problems.append('%s: in ARGUMENT_SPEC, not documented' % where)
            continue
        if key not in spec:
            problems.append('%s: documented, not in ARGUMENT_SPEC' % where)
            continue
        s, d = spec[key], options[key] or {}
        if _norm_type(s.get('type')) != _norm_type(d.get('type')):
            problems.append('%s: type %r in spec, %r in docs' % (where, s.get('type'), d.get('type')))
        if s.get('default') != d.get('default'):
            problems.append('%s: default %r in spec, %r in docs' % (where, s.get('default'), d.get('default')))
        sc, dc = s.get('choices'), d.get('choices')
        if (list(sc) if sc else None) != (list(dc) if dc else None):
            problems.append('%s: choices %r in spec, %r in docs' % (where, sc, dc))
        if s.get('elements') != d.get('elements'):
            problems.append('%s: elements %r in spec, %r in docs' % (where, s.get('elements'), d.get('elements')))
        if bool(s.get('required')) != bool(d.get('required')):
            problems.append('%s: required %r in spec, %r in docs' % (where, s.get('required'), d.get('required')))
        if not d.get('description'):
            problems.append('%s: no description' % where)
        if s.get('options') or d.get('suboptions'):
            _compare(s.get('options') or {}, d.get('suboptions') or {}, where + '.', problems)


ACTIONS = _action_plugins()


def test_there_are_action_plugins_to_check():
    assert ACTIONS, 'no action plugin with ARGUMENT_SPEC found'


@pytest.mark.parametrize('name', ACTIONS)
def test_argument_spec_matches_documentation(name):
    mod = importlib.import_module('%s.action.%s' % (PKG, name))
    spec = mod.ActionModule.ARGUMENT_SPEC
    assert os.path.exists(os.path.join(MODULE_DIR, name + '.py')), 'plugins/modules/%s.py (doc stub) is missing' % name
    doc = _doc(name)
    problems = []
    _compare(spec, doc.get('options') or {}, '', problems)
    assert not problems, '%s:\n  ' % name + '\n  '.join(problems)


@pytest.mark.parametrize('name', ACTIONS)
def test_stub_has_examples_return_and_version(name):
    mod = importlib.import_module('%s.modules.%s' % (PKG, name))
    doc = yaml.safe_load(mod.DOCUMENTATION)
    assert doc['module'] == name
    assert str(doc.get('version_added')) == '1.0.0'
    assert yaml.safe_load(mod.EXAMPLES)
    assert yaml.safe_load(mod.RETURN) is not None
