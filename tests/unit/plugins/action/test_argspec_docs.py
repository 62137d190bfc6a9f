# SPDX-License-Identifier: GPL-3.0-or-later
"""Every action plugin with an ARGUMENT_SPEC matches its module stub's DOCUMENTATION.

Generic: any plugins/action/<name>.py whose ActionModule has ARGUMENT_SPEC is checked against
plugins/modules/<name>.py (names, types, defaults, choices, elements, required, suboptions),
with the stub's doc fragments merged the way ansible-doc merges them.
"""
import importlib
import os

import pytest
import yaml


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
ACTION_DIR = os.path.join(ROOT, 'plugins', 'action')
MODULE_DIR = os.path.join(ROOT, 'plugins', 'modules')
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


def _fragment_options(ref):
    """Options of a doc fragment ``ns.coll.file[.SUB]`` of this collection (others: none known)."""
    parts = ref.split('.')
    if parts[:2] != ['virtops', 'virtnet']:
        return {}
    mod = importlib.import_module('%s.doc_fragments.%s' % (PKG, parts[2]))
    attr = parts[3] if len(parts) > 3 else 'DOCUMENTATION'
    text = getattr(mod.ModuleDocFragment, attr)
    return (yaml.safe_load(text) or {}).get('options') or {}


def _doc(name):
    """The stub's DOCUMENTATION with the options of its doc fragments merged in."""
    mod = importlib.import_module('%s.modules.%s' % (PKG, name))
    doc = yaml.safe_load(mod.DOCUMENTATION)
    options = dict(doc.get('options') or {})
    for ref in doc.get('extends_documentation_fragment') or []:
        for key, value in _fragment_options(ref).items():
            options.setdefault(key, value)
    doc['options'] = options
    return doc


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
