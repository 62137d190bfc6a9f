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
Uses the host of $VIRTLAB_TARGET (debian11: libvirt 7.0, debian13/el10: 11.3, el7/el8: 9.0 under Python 2.7/3.6)
or debian12-1 (libvirt 9.0), with the list of files that libvirt version refuses; every network it defines
is undefined again.
"""
import glob
import json
import os

import pytest

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt import _network as N
from labansible import TARGET_HOST, playbook  # tests/lab, put on sys.path by conftest

# the host of $VIRTLAB_TARGET where it has its own libvirt (debian11: 7.0, debian13 and el10: 11.3), else
# debian12-1 (libvirt 9.0; el7 and el8 run Debian 12's libvirtd under their real Python 2.7 / 3.6)
HOST = TARGET_HOST if TARGET_HOST in ('debian11-1', 'debian13-1', 'el10-1', 'el7-1', 'el8-1') else 'debian12-1'

NOT_XML = ('leasetime-hours.xml', 'leasetime-infinite.xml', 'leasetime-minutes.xml',
           'leasetime-seconds.xml', 'netboot-tftp.xml')   # symlink text in the corpus, not XML
# Files libvirt refuses to define, and why, per libvirt version (read from the host). A file newly refused,
# or no longer refused, fails the test: the list is what each version is known to do.
REJECTED_9_0 = {
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
REJECTED = {
    (9, 0): REJECTED_9_0,
    # measured on the debian11 (7.0.0) and debian13 (11.3.0) personas' own libvirtd: the same nine files,
    # refused with the same messages; the other 32 define, re-run unchanged and round-trip on both
    (7, 0): dict(REJECTED_9_0),
    (11, 3): dict(REJECTED_9_0),
}


def libvirt_version(lab, host):
    out = lab.exec(host, ['libvirtd', '--version']).stdout.split()[-1]
    major, minor = out.split('.')[:2]
    return int(major), int(minor)


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
    version = libvirt_version(lab, HOST)
    if version not in REJECTED:
        pytest.skip('libvirt %d.%d on %s: no reviewed list of the corpus files it refuses' % (version + (HOST,)))
    refused = REJECTED[version]
    corpus = _corpus(shared_dir)
    assert len(corpus) == 46
    tasks = []
    for idx, (base, text) in enumerate(sorted(corpus.items())):
        key = 'f%d' % idx
        define = {'virtops.virtnet.network': {'xml': '{{ corpus.%s }}' % key, 'active': False},
                  'ignore_errors': True}
        tasks.append(dict(define, name='define %s' % base))
        if base in NOT_XML or base in refused:
            continue
        name = _name(text)
        tasks.append(dict(define, name='again %s' % base))
        tasks.append({'name': 'info %s' % base, 'virtops.virtnet.network_info': {'name': name, 'firewall': False},
                      'register': 'info_%s' % key, 'ignore_errors': True})
        tasks.append({'name': 'fed back %s' % base,
                      'virtops.virtnet.network': '{{ info_%s.networks[0].model | combine({"active": false}) }}' % key,
                      'ignore_errors': True})
        tasks.append({'name': 'remove %s' % base, 'virtops.virtnet.network': {'name': name, 'state': 'absent'},
                      'ignore_errors': True})
    play = [{'hosts': HOST, 'gather_facts': False, 'tasks': tasks}]
    extra = {'corpus': dict(('f%d' % i, t) for i, (_b, t) in enumerate(sorted(corpus.items())))}
    out = playbook(lab, json.dumps(play, indent=1) + '\n', extra_vars=extra)
    res = dict((name, hosts[HOST]) for name, hosts in out['results'].items())

    passed, rejected, unexpected = [], {}, []
    for base, text in sorted(corpus.items()):
        first = res['define %s' % base]
        if base in NOT_XML:
            assert first['failed'] and 'invalid XML' in first['msg'], (base, first['msg'])
            continue
        if base in refused:
            if not first['failed'] or refused[base] not in first['msg']:
                unexpected.append('%s: expected refused (%r), got %s' % (base, refused[base], first.get('msg') or 'accepted'))
            rejected[base] = first['msg']
            continue
        if first['failed'] or not first['changed']:
            unexpected.append('%s: refused by libvirt %d.%d: %s' % ((base,) + version + (first.get('msg'),)))
            continue
        again = res['again %s' % base]
        assert not again['failed'] and again['changed'] is False, (base, again.get('changes'))
        info = res['info %s' % base]['networks'][0]
        orig = N.from_xml(text)
        assert N.canonical(info['model'], declared=orig) == N.canonical(orig, declared=orig), base
        fed = res['fed back %s' % base]
        assert not fed['failed'] and fed['changed'] is False, (base, fed.get('msg'), fed.get('changes'))
        assert not res['remove %s' % base]['failed']
        passed.append(base)
    assert not unexpected, '\n'.join(unexpected)
    assert len(passed) == 46 - len(NOT_XML) - len(refused), (version, passed)
    left = lab.virsh(HOST, 'net-list', '--all', '--name').stdout.split()
    assert left == [], left
