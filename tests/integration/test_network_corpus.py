# SPDX-License-Identifier: GPL-3.0-or-later
"""libvirt's own network XML test files (../shared/corpus/libvirt-networkxml/in) through the
``network`` module on a real libvirtd: every file libvirt accepts defines via ``xml:``, a second
run reports ``changed: false``, ``network_info`` reads it back to a model that round-trips (equal
canonical model, and fed back as input: ``changed: false``).

The files are used verbatim; several are named ``default`` and use virbr0, so the lab host's own
``default`` network is taken away for the duration of the test and put back afterwards.
Networks are defined with ``active: false``: most name host devices (eth1, br0, PCI addresses)
the lab host does not have.

Run:  VIRTLAB_NAME=net .venv/bin/python -m pytest -q tests/integration/test_network_corpus.py
Uses debian12-1 of the session ``lab`` (conftest); every network it defines is undefined again.
"""
import glob
import json
import os

import pytest

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt import _network as N
from labansible import playbook  # tests/lab, put on sys.path by conftest

HOST = 'debian12-1'

# Files that cannot be defined, and why (libvirt 9.0.0 on Debian 12, the lab's libvirtd).
NOT_XML = ('leasetime-hours.xml', 'leasetime-infinite.xml', 'leasetime-minutes.xml',
           'leasetime-seconds.xml', 'netboot-tftp.xml')   # symlink text in the corpus, not XML
REJECTED_BY_LIBVIRT = {
    # expected parse errors in libvirt's own test suite (SOURCE.txt)
    'routed-network-no-dns-extra-elements.xml': 'Extra data in disabled network',
    'open-network-with-forward-dev.xml': 'forward dev not allowed',
    'hostdev-duplicate.xml': 'can only be listed once',
    'passthrough-duplicate.xml': 'can only be listed once',
    # parsed by libvirt's XML tests, but the network driver's define-time validation refuses
    '8021Qbh-net.xml': "doesn't support vlan configuration",
    'openvswitch-net.xml': "doesn't support vlan configuration",
    'hostdev.xml': 'is not an SR-IOV Virtual Function',      # no such PCI device on the host
    'passthrough-address-crash.xml': 'lists a device by PCI address',
    'passthrough-pf.xml': 'Unsupported <ip> element',
}


@pytest.fixture
def without_default(lab):
    xml = lab.virsh(HOST, 'net-dumpxml', '--inactive', 'default').stdout
    lab.virsh(HOST, 'net-destroy', 'default', check=False)
    lab.virsh(HOST, 'net-undefine', 'default')
    try:
        yield
    finally:
        lab.exec(HOST, ['sh', '-c', 'cat > /tmp/default-net.xml && virsh -q net-define /tmp/default-net.xml '
                        '&& virsh -q net-start default && virsh -q net-autostart default'], input=xml)


def _corpus(shared_dir):
    files = sorted(glob.glob(os.path.join(shared_dir, 'corpus', 'libvirt-networkxml', 'in', '*.xml')))
    out = {}
    for path in files:
        with open(path) as fh:
            out[os.path.basename(path)] = fh.read()
    return out


def _name(text):
    try:
        return N.from_xml(text)['name']
    except N.ModelError:
        return None


def test_corpus_defines_idempotently_and_round_trips(lab, shared_dir, without_default):
    corpus = _corpus(shared_dir)
    assert len(corpus) == 46
    tasks = []
    for idx, (base, text) in enumerate(sorted(corpus.items())):
        key = 'f%d' % idx
        define = {'virtops.virtnet.network': {'xml': '{{ corpus.%s }}' % key, 'active': False},
                  'ignore_errors': True}
        tasks.append(dict(define, name='define %s' % base))
        if base in NOT_XML or base in REJECTED_BY_LIBVIRT:
            continue
        name = _name(text)
        tasks.append(dict(define, name='again %s' % base))
        tasks.append({'name': 'info %s' % base, 'virtops.virtnet.network_info': {'name': name, 'firewall': False},
                      'register': 'info_%s' % key})
        tasks.append({'name': 'fed back %s' % base,
                      'virtops.virtnet.network': '{{ info_%s.networks[0].model | combine({"active": false}) }}' % key})
        tasks.append({'name': 'remove %s' % base, 'virtops.virtnet.network': {'name': name, 'state': 'absent'}})
    play = [{'hosts': HOST, 'gather_facts': False, 'tasks': tasks}]
    extra = {'corpus': dict(('f%d' % i, t) for i, (_b, t) in enumerate(sorted(corpus.items())))}
    out = playbook(lab, json.dumps(play, indent=1) + '\n', extra_vars=extra)
    res = dict((name, hosts[HOST]) for name, hosts in out['results'].items())

    passed, rejected = [], {}
    for base, text in sorted(corpus.items()):
        first = res['define %s' % base]
        if base in NOT_XML:
            assert first['failed'] and 'invalid XML' in first['msg'], (base, first['msg'])
            continue
        if base in REJECTED_BY_LIBVIRT:
            assert first['failed'], (base, first)
            assert REJECTED_BY_LIBVIRT[base] in first['msg'], (base, first['msg'])
            rejected[base] = first['msg']
            continue
        assert not first['failed'] and first['changed'], (base, first.get('msg'))
        again = res['again %s' % base]
        assert not again['failed'] and again['changed'] is False, (base, again.get('changes'))
        info = res['info %s' % base]['networks'][0]
        orig = N.from_xml(text)
        assert N.canonical(info['model'], declared=orig) == N.canonical(orig, declared=orig), base
        fed = res['fed back %s' % base]
        assert not fed['failed'] and fed['changed'] is False, (base, fed.get('msg'), fed.get('changes'))
        assert not res['remove %s' % base]['failed']
        passed.append(base)
    assert len(passed) == 46 - len(NOT_XML) - len(REJECTED_BY_LIBVIRT) == 32
    left = lab.virsh(HOST, 'net-list', '--all', '--name').stdout.split()
    assert left == [], left
