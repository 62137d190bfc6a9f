# SPDX-License-Identifier: GPL-3.0-or-later
"""Host probe: parse real probe outputs (Debian 12 host and netns, EL6, EL7, EL9)."""
import os
import subprocess

import pytest

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _probe
from nf_fixtures import fixture

CASES = [
    # fixture, kernel, distro id, major, iptables version, backend, in_netns
    ('probe_el6.txt', '2.6.32-754.el6.x86_64', 'centos', '6', '1.4.7', 'legacy', False),
    ('probe_el7.txt', '3.10.0-1160.el7.x86_64', 'centos', '7', '1.4.21', 'legacy', False),
    ('probe_el9.txt', '5.14.0-427.13.1.el9_4.x86_64', 'rocky', '9', '1.8.10', 'nft', False),
    ('probe_debian12.txt', '6.18.44-fc-v595', 'debian', '12', '1.8.9', 'nft', None),
    ('probe_debian12_netns.txt', '6.18.44-fc-v595', 'debian', '12', '1.8.9', 'nft', True),
]


@pytest.mark.parametrize('name,kernel,did,major,ipt,backend,in_netns', CASES)
def test_parse(name, kernel, did, major, ipt, backend, in_netns):
    f = _probe.parse_probe(fixture(name))
    assert f['kernel'] == kernel
    assert f['distro']['id'] == did
    assert f['distro']['major'] == major
    assert f['distro']['family'] in ('redhat', 'debian')
    assert f['iptables_version'] == ipt
    assert f['iptables_backend'] == backend
    assert f['in_netns'] is in_netns
    assert f['epoch'] == 1795726964 or f['epoch'] > 1700000000
    assert f['uid'] == 0
    assert 2 in f['nf_log_sysctl']


def test_el6_has_no_os_release_and_uses_centos_release():
    f = _probe.parse_probe(fixture('probe_el6.txt'))
    assert f['distro']['source'] == '/etc/centos-release'
    assert f['distro']['version'] == '6.10'
    assert 'nft' not in f['tools'] and 'xtables-monitor' not in f['tools']
    assert f['nf_log_all_netns'] is None


def test_debian_nf_log_bindings_and_registered_loggers():
    f = _probe.parse_probe(fixture('probe_debian12.txt'))
    assert f['nf_log_sysctl'][2] == 'nf_log_ipv4'
    assert f['nf_log_sysctl'][0] is None
    assert f['nf_log'][2]['registered'] == ['nf_log_ipv4', 'nfnetlink_log']
    assert f['nf_log'][0]['bound'] is None
    assert f['nf_log_all_netns'] == 1
    assert f['iptables']['iptables-legacy']['backend'] == 'legacy'


def test_kernel_falls_back_to_uname():
    text = fixture('probe_el7.txt').replace('@@osrelease\n3.10.0-1160.el7.x86_64\n', '@@osrelease\n')
    f = _probe.parse_probe(text)
    assert f['kernel'] == '3.10.0-1160.el7.x86_64'
    assert f['kernel_source'] == 'uname -r'


def test_incomplete_output_is_an_error():
    with pytest.raises(_probe.ProbeError):
        _probe.parse_probe(fixture('probe_el7.txt').replace('@@end\n', ''))


@pytest.mark.parametrize('text,expected', [
    ('iptables v1.4.7', ('1.4.7', 'legacy')),
    ('iptables v1.4.21', ('1.4.21', 'legacy')),
    ('iptables v1.8.4 (legacy)', ('1.8.4', 'legacy')),
    ('iptables v1.8.9 (nf_tables)', ('1.8.9', 'nft')),
    ('', None),
])
def test_iptables_version(text, expected):
    v = _probe._iptables_version([text])
    assert (v['version'], v['backend']) == expected if expected else v is None


@pytest.mark.parametrize('name,family,backend,save,restore', [
    ('probe_el6.txt', 'ipv4', 'auto', 'iptables-save', ['iptables-restore', '--noflush']),
    ('probe_el7.txt', 'ipv6', 'auto', 'ip6tables-save', ['ip6tables-restore', '--noflush']),
    ('probe_el9.txt', 'ipv4', 'auto', 'iptables-nft-save', ['iptables-nft-restore', '--noflush', '-w']),
    ('probe_debian12.txt', 'ipv4', 'legacy', 'iptables-legacy-save', ['iptables-legacy-restore', '--noflush', '-w']),
    ('probe_debian12.txt', 'ipv6', 'nft', 'ip6tables-nft-save', ['ip6tables-nft-restore', '--noflush', '-w']),
])
def test_iptables_commands(name, family, backend, save, restore):
    c = _probe.iptables_commands(_probe.parse_probe(fixture(name)), family, backend)
    assert c['save'] == [save]
    assert c['restore'] == restore


def test_nft_backend_missing_is_a_clear_error():
    f = _probe.parse_probe(fixture('probe_el6.txt'))
    with pytest.raises(_probe.ProbeError, match='backend nft needs iptables-nft-save'):
        _probe.iptables_commands(f, 'ipv4', 'nft')


def test_probe_script_is_posix_sh_and_runs_here():
    script = _probe.PROBE_SCRIPT
    assert 'python' not in script
    assert subprocess.run(['sh', '-n', '-c', script], check=False).returncode == 0
    out = subprocess.run(['sh', '-c', script], capture_output=True, text=True, env={'LC_ALL': 'C', 'PATH': os.environ['PATH']}, check=False)
    facts = _probe.parse_probe(out.stdout)   # this very machine: whatever it has, the output parses
    assert facts['kernel']


class FakeModule:
    def __init__(self, out):
        self.cache = {}
        self.calls = 0
        self.out = out

    def run_script(self, script, args=(), what=''):
        self.calls += 1

        class R:
            stdout = self.out
            stderr = ''
        return R()

    def fail_json(self, msg, **kw):
        raise AssertionError(msg)


def test_probe_is_cached_per_task():
    m = FakeModule(fixture('probe_el7.txt'))
    a = _probe.probe(m)
    b = _probe.probe(m)
    assert a is b and m.calls == 1
