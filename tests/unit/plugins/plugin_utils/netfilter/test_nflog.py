# SPDX-License-Identifier: GPL-3.0-or-later
"""nf_log matrix and plan, from real probe outputs."""
import os
import subprocess
import tempfile

import pytest

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _nflog, _probe, _wire as wire
from nf_fixtures import fixture


def facts(name):
    return _probe.parse_probe(fixture(name))


def params(**kw):
    p = dict(state='present', families=['ipv4', 'ipv6'], persistent=False, all_netns=False, force=False)
    p.update(kw)
    return p


@pytest.mark.parametrize('name,family,module,logger,modprobe', [
    ('probe_el6.txt', 'ipv4', 'ipt_LOG', 'ipt_LOG', True),
    ('probe_el6.txt', 'ipv6', 'ip6t_LOG', 'ip6t_LOG', True),
    ('probe_el7.txt', 'ipv4', 'nf_log_ipv4', 'nf_log_ipv4', True),
    ('probe_el7.txt', 'ipv6', 'nf_log_ipv6', 'nf_log_ipv6', True),
    ('probe_el7.txt', 'bridge', 'nf_log_bridge', 'nf_log_bridge', True),
    ('probe_el7.txt', 'arp', 'nf_log_arp', 'nf_log_arp', True),
    ('probe_el9.txt', 'ipv4', 'nf_log_syslog', 'nf_log_ipv4', True),
    ('probe_el9.txt', 'ipv6', 'nf_log_syslog', 'nf_log_ipv6', True),
    ('probe_debian12.txt', 'ipv4', 'nf_log_syslog', 'nf_log_ipv4', False),   # built in: registered
    ('probe_debian12.txt', 'bridge', 'nf_log_syslog', 'nf_log_bridge', False),
])
def test_matrix(name, family, module, logger, modprobe):
    c = _nflog.choose(facts(name), family)
    assert (c['module'], c['logger'], c['needs_modprobe']) == (module, logger, modprobe)
    assert c['why']


@pytest.mark.parametrize('kernel,module', [
    ('3.16.0', 'ipt_LOG'), ('3.17.0', 'nf_log_ipv4'), ('4.19.0-25-amd64', 'nf_log_ipv4'),
    ('5.12.19', 'nf_log_ipv4'), ('5.13.0', 'nf_log_syslog'), ('6.1.0-18-amd64', 'nf_log_syslog'),
])
def test_kernel_boundaries(kernel, module):
    f = facts('probe_debian12.txt')
    f['kernel'] = kernel
    f['kernel_version'] = _probe.version_tuple(kernel)
    f['nf_log'] = {}
    assert _nflog.choose(f, 'ipv4')['module'] == module


def test_arp_on_el6_is_an_error():
    with pytest.raises(_nflog.NfLogError, match='arp'):
        _nflog.choose(facts('probe_el6.txt'), 'arp')


def test_el6_plan_loads_then_binds():
    p = _nflog.plan(facts('probe_el6.txt'), params())
    assert p.ops == ['modprobe', 'ipt_LOG', 'bind', '2', 'ipt_LOG', 'modprobe', 'ip6t_LOG', 'bind', '10', 'ip6t_LOG']
    assert p.changed


def test_el9_loads_nf_log_syslog_once():
    p = _nflog.plan(facts('probe_el9.txt'), params())
    assert p.ops.count('modprobe') == 2   # once per family is harmless; both name nf_log_syslog
    assert p.ops[:2] == ['modprobe', 'nf_log_syslog']
    assert ['bind', '2', 'nf_log_ipv4'] == p.ops[2:5]


def test_debian_already_bound_is_unchanged():
    p = _nflog.plan(facts('probe_debian12.txt'), params(families=['ipv4', 'ipv6', 'bridge', 'arp']))
    assert p.ops == [] and not p.changed


def test_bound_under_the_distro_name_needs_no_modprobe():
    f = facts('probe_el6.txt')
    f['nf_log_sysctl'][2] = 'ipt_LOG'     # sysctl shows the el6 name; /proc lists another
    p = _nflog.plan(f, params(families=['ipv4']))
    assert p.ops == []


def test_binding_taken_by_another_logger():
    f = facts('probe_el9.txt')
    f['nf_log_sysctl'][2] = 'nfnetlink_log'
    with pytest.raises(_nflog.NfLogError, match='bound to nfnetlink_log.*force: true'):
        _nflog.plan(f, params(families=['ipv4']))
    p = _nflog.plan(f, params(families=['ipv4'], force=True))
    assert ['bind', '2', 'nf_log_ipv4'] == p.ops[-3:]
    assert p.warnings


def test_absent_unbinds_ours_only():
    f = facts('probe_debian12.txt')
    f['nf_log_sysctl'][10] = 'nfnetlink_log'
    p = _nflog.plan(f, params(state='absent'))
    assert p.ops == ['bind', '2', 'NONE']
    assert p.warnings


def test_netns_detection():
    p = _nflog.plan(facts('probe_debian12_netns.txt'), params(all_netns=True))
    assert p.netns['in_netns'] is True and p.netns['needed'] is True
    assert 'nf_log_all_netns' in p.netns['note']
    assert p.warnings and 'allnetns' not in p.ops


def test_all_netns_set_in_initial_namespace():
    f = facts('probe_el9.txt')
    p = _nflog.plan(f, params(all_netns=True))
    assert p.ops[-2:] == ['allnetns', '1']
    assert _nflog.plan(facts('probe_el7.txt'), params(all_netns=True)).netns['needed'] is False


def test_persistent_systemd_files():
    f = facts('probe_el7.txt')
    files = {'/etc/modules-load.d/virtnet.conf': None, '/etc/sysctl.d/90-virtnet.conf': None}
    p = _nflog.plan(f, params(persistent=True), files)
    assert p.files['/etc/modules-load.d/virtnet.conf']['after'].splitlines()[1:] == ['nf_log_ipv4', 'nf_log_ipv6']
    assert 'net.netfilter.nf_log.10 = nf_log_ipv6' in p.files['/etc/sysctl.d/90-virtnet.conf']['after']
    # idempotent: same content -> nothing to write
    files2 = dict((k, v['after']) for k, v in p.files.items())
    p2 = _nflog.plan(f, params(persistent=True), files2)
    assert [o for o in p2.file_ops if o == 'write'] == []
    # absent removes them
    p3 = _nflog.plan(f, params(state='absent'), files2)
    assert p3.file_ops.count('remove') == 2


def test_persistent_el6_block_in_sysctl_conf():
    f = facts('probe_el6.txt')
    conf = 'kernel.sysrq = 0\nnet.ipv4.ip_forward = 1\n'
    files = {'/etc/sysconfig/modules/virtnet.modules': None, '/etc/sysctl.conf': conf}
    p = _nflog.plan(f, params(persistent=True), files)
    mod = p.files['/etc/sysconfig/modules/virtnet.modules']['after']
    assert mod.startswith('#!/bin/sh') and '/sbin/modprobe ipt_LOG' in mod
    assert p.file_ops[p.file_ops.index('/etc/sysconfig/modules/virtnet.modules') + 1] == '0755'
    after = p.files['/etc/sysctl.conf']['after']
    assert after.startswith(conf)
    assert _nflog.BLOCK_BEGIN in after and 'net.netfilter.nf_log.2 = ipt_LOG' in after
    files2 = {'/etc/sysconfig/modules/virtnet.modules': mod, '/etc/sysctl.conf': after}
    assert 'write' not in _nflog.plan(f, params(persistent=True), files2).file_ops
    p3 = _nflog.plan(f, params(state='absent'), files2)
    assert p3.files['/etc/sysctl.conf']['after'] == conf
    assert 'remove' in p3.file_ops


def test_read_files():
    text = '@@file /a\n@@exists\nx\ny\n@@file /b\n@@end\n'
    assert _nflog.read_files(wire.parse(text)) == {'/a': 'x\ny\n', '/b': None}


def test_apply_script_writes_files_atomically(tmp_path):
    target = tmp_path / 'sub' / 'f.conf'
    ops = ['write', str(target), '0644', 'a = 1\n']
    script = _nflog.APPLY_SCRIPT
    r = subprocess.run(['sh', '-c', script, 'virtnet'] + ops, capture_output=True, text=True, check=False)
    assert target.read_text() == 'a = 1\n'
    assert oct(target.stat().st_mode & 0o777) == '0o644'
    assert '@@bindings' in r.stdout
    assert not [p for p in target.parent.iterdir() if p.name.startswith('.virtnet')]
    r = subprocess.run(['sh', '-c', script, 'virtnet', 'remove', str(target)], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and not target.exists()


def test_apply_script_reports_modprobe_failure_with_kernel(tmp_path):
    fake = tmp_path / 'modprobe'
    fake.write_text('#!/bin/sh\necho "FATAL: Module $1 not found." >&2\nexit 1\n')
    fake.chmod(0o755)
    r = subprocess.run(['sh', '-c', _nflog.APPLY_SCRIPT, 'virtnet', 'modprobe', 'ipt_LOG'], capture_output=True,
                       text=True, env={'PATH': '%s:/usr/bin:/bin' % tmp_path}, check=False)
    assert r.returncode == 10
    assert 'cannot load kernel module ipt_LOG on kernel' in r.stderr and 'FATAL' in r.stderr


def test_apply_script_stages_files_and_changes_nothing_when_one_cannot_be_written(tmp_path):
    """The first file is staged, the second cannot be written: no file moved into place, no temporary file
    left, and the runtime change after them (a bind through a fake sysctl) is never made."""
    base = tmp_path / 'etc'
    base.mkdir()
    for d in [base, tmp_path] + [p for p in tmp_path.parents if str(p).startswith(tempfile.gettempdir() + '/')]:
        d.chmod(d.stat().st_mode | 0o755)   # let the unprivileged user in (every level, with or without xdist)
    good, bad_dir = base / 'ok' / 'a.conf', base / 'ro'
    good.parent.mkdir()
    good.parent.chmod(0o777)
    bad_dir.mkdir()
    bad_dir.chmod(0o555)
    fake = tmp_path / 'bin'
    fake.mkdir()
    (fake / 'sysctl').write_text('#!/bin/sh\necho "$*" >> %s\n' % (tmp_path / 'sysctl.log'))
    (fake / 'sysctl').chmod(0o755)
    ops = ['write', str(good), '0644', 'a = 1\n', 'write', str(bad_dir / 'b.conf'), '0644', 'b = 2\n',
           'bind', '2', 'nf_log_ipv4']
    r = subprocess.run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c',
                        _nflog.APPLY_SCRIPT, 'virtnet'] + ops, capture_output=True, text=True, check=False,
                       env={'PATH': '%s:/usr/bin:/bin' % fake}) if os.geteuid() == 0 else None
    if r is None:
        pytest.skip('needs root to drop to an unprivileged user (root writes into a 0500 directory)')
    assert r.returncode == 13, r.stderr
    assert 'cannot write %s: ' % (bad_dir / 'b.conf') in r.stderr and 'Permission denied' in r.stderr
    assert '(nothing was changed)' in r.stderr
    assert not good.exists() and list(good.parent.iterdir()) == []
    assert not (tmp_path / 'sysctl.log').exists()


def test_read_files_script_keeps_content_exact(tmp_path):
    """The real script under sh: a file whose last line has no newline, an empty file, a missing one.
    Before _wire, the next ``@@file`` header was glued to such a last line and that file was lost."""
    files = {'no_eol': 'a = 1\nb = 2', 'eol': 'x\n', 'empty': '', 'crlf': 'y = 1\r\n\x0c\n', 'cr_last': 'z\r'}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content.encode())
    names = ('no_eol', 'eol', 'empty', 'crlf', 'cr_last', 'missing')
    paths = [str(tmp_path / n) for n in names]
    out = subprocess.run(['sh', '-c', _nflog.READ_FILES_SCRIPT, 'virtnet'] + paths, check=True,
                         capture_output=True).stdout.decode()     # bytes: text=True would translate CRLF
    assert _nflog.read_files(wire.parse(out)) == dict(zip(paths, [files.get(n) for n in names]))
