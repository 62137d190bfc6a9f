# SPDX-License-Identifier: GPL-3.0-or-later
"""guest_interface against a lab hypervisor: real libvirtd, diskless qemu/TCG domains.

Run:  VIRTLAB_NAME=ifc .venv/bin/python -m pytest -q tests/integration/test_guest_interface.py
Uses debian12-1 (or the first host of $VIRTLAB_TARGET) of the session ``lab`` (conftest); the domains and host devices it creates are
removed after the module.
The diskless guests run no OS, so nothing answers an ACPI eject: live unplug always ends as
``pending`` (removed from the configuration, still in the running domain).
"""
import re
import time

import pytest

from labansible import TARGET_HOST  # tests/lab, put on sys.path by conftest

HOST = TARGET_HOST  # debian12-1 unless VIRTLAB_TARGET names another persona
MOD = 'virtops.virtnet.guest_interface'
RUNNING = 'ifrun'     # running diskless domain (lab.guest_add kind=qemu)
STOPPED = 'ifoff'     # defined, never started, no interfaces
STOPPED_XML = """<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator><memballoon model='none'/></devices>
</domain>
"""


VETHS = []            # host devices made by veth(), removed after the module


@pytest.fixture(scope='module', autouse=True)
def cleanup(lab):
    yield
    if RUNNING in lab.state().get('guests', {}):
        lab.guest_del(RUNNING)
    lab.exec(HOST, ['virsh', 'undefine', STOPPED], check=False)
    while VETHS:
        lab.exec(HOST, ['ip', 'link', 'del', VETHS.pop()], check=False)


@pytest.fixture(scope='module')
def run(run_module):
    def _run(check=False, diff=False, **args):
        return run_module(HOST, MOD, check=check, diff=diff, **args)
    return _run


def sh(lab, *argv, **kw):
    return lab.exec(HOST, list(argv), **kw).stdout


def inactive_xml(lab, dom):
    return sh(lab, 'virsh', 'dumpxml', '--inactive', dom)


def live_ifaces(lab, dom):
    """{mac: (type, target dev)} from the live domain."""
    out = {}
    xml = sh(lab, 'virsh', 'dumpxml', dom)
    for block in re.findall(r"<interface type='(\w+)'>(.*?)</interface>", xml, re.S):
        mac = re.search(r"<mac address='([^']+)'", block[1]).group(1)
        tgt = re.search(r"<target dev='([^']+)'", block[1])
        out[mac] = (block[0], tgt.group(1) if tgt else None)
    return out


@pytest.fixture(scope='module')
def running(lab):
    if RUNNING not in [l.split()[1] for l in sh(lab, 'virsh', 'list').splitlines()[2:] if l.strip()]:
        lab.guest_del(RUNNING) if RUNNING in lab.state().get('guests', {}) else None
        lab.guest_add(RUNNING, HOST, kind='qemu')
    return RUNNING


@pytest.fixture(scope='module')
def stopped(lab):
    lab.exec(HOST, ['virsh', 'undefine', STOPPED], check=False)
    lab.exec(HOST, ['virsh', 'define', '/dev/stdin'], input=STOPPED_XML % STOPPED)
    return STOPPED


def veth(lab, name):
    if lab.exec(HOST, ['ip', 'link', 'show', name], check=False).returncode != 0:
        sh(lab, 'ip', 'link', 'add', name, 'type', 'veth', 'peer', 'name', name + 'p')
        VETHS.append(name)
        sh(lab, 'ip', 'link', 'set', name, 'up')
        sh(lab, 'ip', 'link', 'set', name + 'p', 'up')
    return name


def assert_unchanged(lab, dom, before, res, needle):
    assert res['failed'], res
    assert needle in res['msg'], res['msg']
    assert inactive_xml(lab, dom) == before


# ----------------------------------------------------------------------------------- network
def test_network_hotplug_tap_on_bridge(lab, run, running):
    mac = '52:54:00:1f:00:01'
    res = run(domain=running, type='network', source='default', mac=mac, diff=True)
    assert res['changed'] and not res['failed'], res
    assert res['live']['status'] == 'applied'
    assert res['interface']['mac'] == mac and res['interface']['model'] == 'virtio'
    assert '<source network="default"/>' in res['diff']['after'] and res['diff']['before'] == ''
    kind, tap = live_ifaces(lab, running)[mac]
    assert kind == 'network' and tap.startswith('vnet')
    assert tap in sh(lab, 'ls', '/sys/class/net/virbr0/brif').split()
    assert mac in inactive_xml(lab, running)

    again = run(domain=running, type='network', source='default', mac=mac)
    assert not again['changed'] and again['live']['status'] == 'unchanged', again

    # live update that libvirt can do: link state
    down = run(domain=running, type='network', source='default', mac=mac, link_state='down')
    assert down['changed'] and down['live']['status'] == 'applied', down
    assert "<link state='down'/>" in sh(lab, 'virsh', 'dumpxml', running)
    assert not run(domain=running, type='network', source='default', mac=mac, link_state='down')['changed']


def test_network_identified_by_type_and_source(lab, run, running):
    assert not run(domain=running, type='network', source='default', mac='52:54:00:1f:00:02')['failed']
    res = run(domain=running, type='network', source='default', link_state='down')
    # two interfaces on default (the lab's e1000 one and ours): ambiguous without a MAC
    assert res['failed'] and 'give mac to pick one' in res['msg'], res


def test_bridge_interface(lab, run, stopped):
    res = run(domain=stopped, type='bridge', source='virbr0', model='e1000e',
              bandwidth={'inbound': {'average': 1000, 'burst': 256}, 'outbound': {'average': 500}})
    assert res['changed'] and res['live'] == {'active': False, 'status': 'not_running', 'reason': None}, res
    xml = inactive_xml(lab, stopped)
    assert "<source bridge='virbr0'/>" in xml and "<inbound average='1000' burst='256'/>" in xml
    again = run(domain=stopped, type='bridge', source='virbr0',
                bandwidth={'inbound': {'average': 1000, 'burst': 256}, 'outbound': {'average': 500}})
    assert not again['changed'], again
    gone = run(domain=stopped, type='bridge', source='virbr0', state='absent')
    assert gone['changed'] and "<source bridge='virbr0'/>" not in inactive_xml(lab, stopped)
    assert not run(domain=stopped, type='bridge', source='virbr0', state='absent')['changed']


# ----------------------------------------------------------------------------------- direct
@pytest.mark.parametrize('mode', ['bridge', 'vepa', 'private', 'passthrough'])
def test_direct_mode_macvtap_on_host(lab, run, running, mode):
    dev = veth(lab, 'vt%s' % mode[:4])  # one lower device per mode: passthrough needs it alone
    mac = '52:54:00:2f:00:%02x' % (['bridge', 'vepa', 'private', 'passthrough'].index(mode) + 1)
    res = run(domain=running, type='direct', source=dev, mode=mode, mac=mac)
    assert res['changed'] and res['live']['status'] == 'applied', res
    kind, tap = live_ifaces(lab, running)[mac]
    assert kind == 'direct' and tap.startswith('macvtap')
    link = sh(lab, 'ip', '-d', 'link', 'show', tap)
    kernel_mode = {'passthrough': 'passthru'}.get(mode, mode)  # iproute2's spelling
    assert '@%s' % dev in link and 'macvtap mode %s' % kernel_mode in link, link
    assert mac in link
    assert not run(domain=running, type='direct', source=dev, mode=mode, mac=mac)['changed']

    # macvtap mode cannot change live: config only (default) with a warning
    other = 'vepa' if mode != 'vepa' else 'bridge'
    if mode != 'passthrough':
        imp = run(domain=running, type='direct', source=dev, mode=other, mac=mac)
        assert imp['changed'] and imp['live']['status'] == 'impossible', imp
        assert "mode='%s'" % other in inactive_xml(lab, running)
        assert 'macvtap mode %s' % mode in sh(lab, 'ip', '-d', 'link', 'show', tap)

    t0 = time.time()
    gone = run(domain=running, mac=mac, state='absent', unplug_timeout=1)
    assert gone['changed'] and gone['live']['status'] in ('pending', 'removed'), gone
    # libvirt waits up to 5 s inside the unplug request, then our 1 s, plus ansible's overhead
    assert time.time() - t0 < 30
    assert mac not in inactive_xml(lab, running)
    again = run(domain=running, mac=mac, state='absent', unplug_timeout=1)
    assert not again['changed'], again


def test_direct_passthrough_needs_the_device_alone(lab, run, running):
    # The kernel refuses a passthru macvtap on a device that already has another macvtap (EINVAL).
    dev = veth(lab, 'vtshare')
    assert run(domain=running, type='direct', source=dev, mode='bridge', mac='52:54:00:2f:02:01')['changed']
    before = inactive_xml(lab, running)
    res = run(domain=running, type='direct', source=dev, mode='passthrough', mac='52:54:00:2f:02:02')
    assert_unchanged(lab, running, before, res, 'cannot hot-plug the interface on running domain')
    assert 'nothing was changed' in res['msg'] and res['changes'] == []


def test_direct_only_guest_warns(lab, run, stopped):
    dev = veth(lab, 'vtwarn')
    res = run(domain=stopped, type='direct', source=dev, mode='bridge', mac='52:54:00:2f:01:01')
    assert res['changed'], res
    assert any('host itself cannot reach the guest' in w for w in res.get('warnings', [])), res
    assert run(domain=stopped, mac='52:54:00:2f:01:01', state='absent')['changed']


# ----------------------------------------------------------------------------------- vhostuser
def test_vhostuser_needs_shared_memory(lab, run, stopped):
    before = inactive_xml(lab, stopped)
    res = run(domain=stopped, type='vhostuser', path='/tmp/ifc-vh0.sock', mode='server')
    assert_unchanged(lab, stopped, before, res, 'needs shared guest memory')


@pytest.mark.parametrize('mode', ['server', 'client'])
def test_vhostuser_persistent(lab, run, stopped, mode):
    path = '/tmp/ifc-vh-%s.sock' % mode
    args = dict(domain=stopped, type='vhostuser', path=path, mode=mode, queues=2,
                ensure_shared_memory=True)
    if mode == 'client':
        args['reconnect'] = 5
    res = run(**args)
    assert res['changed'] and not res['failed'], res
    if mode == 'server':  # first vhostuser test: adds the memory backing
        assert any('next boot' in w for w in res.get('warnings', [])), res
    xml = inactive_xml(lab, stopped)
    assert "<access mode='shared'/>" in xml
    assert "path='%s' mode='%s'" % (path, mode) in xml
    if mode == 'client':
        assert "<reconnect enabled='yes' timeout='5'/>" in xml
    assert res['interface']['queues'] == 2 and res['interface']['mode'] == mode
    assert not run(**args)['changed']
    gone = run(domain=stopped, type='vhostuser', path=path, state='absent')
    assert gone['changed'] and path not in inactive_xml(lab, stopped)
    assert not run(domain=stopped, type='vhostuser', path=path, state='absent')['changed']


def test_vhostuser_running_domain_config_only_or_fail(lab, run, running):
    path = '/tmp/ifc-vh-live.sock'
    before = inactive_xml(lab, running)
    failed = run(domain=running, type='vhostuser', path=path, mode='server', ensure_shared_memory=True,
                 on_live_impossible='fail')
    assert_unchanged(lab, running, before, failed, 'no shared memory')
    res = run(domain=running, type='vhostuser', path=path, mode='server', ensure_shared_memory=True)
    assert res['changed'] and res['live']['status'] == 'impossible', res
    assert path in inactive_xml(lab, running) and path not in sh(lab, 'virsh', 'dumpxml', running)
    assert run(domain=running, type='vhostuser', path=path, state='absent')['changed']


# ----------------------------------------------------------------------------------- policies
def test_live_impossible_model_change(lab, run, running):
    mac = '52:54:00:1f:00:09'
    assert run(domain=running, type='network', source='default', mac=mac)['changed']
    before = inactive_xml(lab, running)
    failed = run(domain=running, type='network', source='default', mac=mac, model='e1000',
                 on_live_impossible='fail')
    assert_unchanged(lab, running, before, failed, 'cannot apply the change to running domain')
    res = run(domain=running, type='network', source='default', mac=mac, model='e1000')
    assert res['changed'] and res['live']['status'] == 'impossible', res
    assert 'model' in res['live']['reason']
    never = run(domain=running, type='network', source='default', mac=mac, model='rtl8139', live='never')
    assert never['changed'] and never['live']['status'] == 'disabled', never


def test_live_always(lab, run, running, stopped):
    before = inactive_xml(lab, stopped)
    res = run(domain=stopped, type='network', source='default', live='always')
    assert_unchanged(lab, stopped, before, res, 'live: always, but domain %s is not running' % stopped)
    mac = '52:54:00:1f:00:0a'
    assert run(domain=running, type='network', source='default', mac=mac, live='always')['changed']
    before = inactive_xml(lab, running)
    res = run(domain=running, type='network', source='default', mac=mac, mtu=1400, live='always')
    assert_unchanged(lab, running, before, res, 'libvirt cannot change mtu of a running interface')


def test_readd_while_unplug_pending(lab, run, running):
    mac = '52:54:00:1f:00:0b'
    assert run(domain=running, type='network', source='default', mac=mac)['changed']
    gone = run(domain=running, mac=mac, state='absent', unplug_timeout=0)
    assert gone['live']['status'] == 'pending', gone
    back = run(domain=running, type='network', source='default', mac=mac)
    assert back['changed'] and back['live']['status'] == 'pending', back
    assert mac in inactive_xml(lab, running)


def test_check_mode_and_diff(lab, run, running):
    mac = '52:54:00:1f:00:0c'
    before = inactive_xml(lab, running)
    res = run(domain=running, type='network', source='default', mac=mac, check=True, diff=True)
    assert res['changed'] and res['diff']['before'] == '' and mac in res['diff']['after'], res
    assert inactive_xml(lab, running) == before and mac not in sh(lab, 'virsh', 'dumpxml', running)
    # absent in check mode on an existing interface: diff shows it leaving
    assert run(domain=running, type='network', source='default', mac=mac)['changed']
    before = inactive_xml(lab, running)
    chk = run(domain=running, mac=mac, state='absent', check=True, diff=True)
    assert chk['changed'] and mac in chk['diff']['before'] and chk['diff']['after'] == '', chk
    assert inactive_xml(lab, running) == before
    upd = run(domain=running, type='network', source='default', mac=mac, mtu=1400, check=True, diff=True)
    assert upd['changed'] and '<mtu size="1400"/>' in upd['diff']['after'], upd
    assert inactive_xml(lab, running) == before


# ----------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('args,needle', [
    (dict(domain='no-such-domain', type='network', source='default'), 'domain no-such-domain not found'),
    (dict(type='network', source='nonet'), 'unknown network nonet'),
    (dict(type='bridge', source='nobr0'), 'unknown bridge nobr0'),
    (dict(type='bridge', source='bond0'), 'not a Linux bridge'),
    (dict(type='network', source='default', mac='52:54:00:zz:00:01'), 'malformed MAC'),
    (dict(type='network', source='default', mac='01:00:5e:00:00:01'), 'multicast'),
    (dict(type='vhostuser', path='relative.sock', mode='server'), 'not absolute'),
    (dict(type='network', source='default', mode='bridge'), 'not valid for an interface of type network'),
    (dict(type='direct', source='eth0', mode='server'), "mode 'server' is not valid for type direct"),
    (dict(type='direct', source='nodev0', mode='bridge'), 'source device nodev0 does not exist'),
])
def test_bad_input_changes_nothing(lab, run, stopped, args, needle, bad_input):
    args = dict(args)
    args.setdefault('domain', stopped)
    before = inactive_xml(lab, stopped)
    res = run(**args)
    assert_unchanged(lab, stopped, before, res, needle)
    assert not res['changed'], res
    bad_input('guest_interface', repr(sorted(args.items())), needle, res['msg'], 'the domain\'s inactive XML')


def test_duplicate_mac_of_other_domain(lab, run, running, stopped):
    other_mac = next(iter(live_ifaces(lab, running)))
    before = inactive_xml(lab, stopped)
    res = run(domain=stopped, type='network', source='default', mac=other_mac)
    assert_unchanged(lab, stopped, before, res, 'duplicate MAC address')
    assert running in res['msg']
