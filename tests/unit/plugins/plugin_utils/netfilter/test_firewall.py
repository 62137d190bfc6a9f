# SPDX-License-Identifier: GPL-3.0-or-later
"""firewall_info's parser and diagnosis on outputs captured on lab hosts (tests/unit/fixtures/firewall/*.txt,
taken by tests/integration/test_firewall_info.py with VIRTNET_CAPTURE_FIXTURES=DIR: the probe + firewall
script's raw output in each reproduced case). Cases that the lab cannot produce (firewalld's zones, a read
that is refused to a non-root user, strict rp_filter with a routed network) are derived from those
captures by editing a section, and say so."""
import os
import re
import textwrap

import pytest

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _firewall as F
from ansible_collections.virtops.virtnet.plugins.plugin_utils._action_module import CommandResult, ModuleFailed
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._probe import PROBE_SCRIPT

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))), 'fixtures',
                    'firewall')


def raw(name):
    with open(os.path.join(HERE, name + '.txt')) as fh:
        return fh.read()


def run(name_or_text, networks=None, host='h'):
    text = raw(name_or_text) if '\n' not in name_or_text else name_or_text
    return F.diagnose(F.parse(text), host, networks)


def ids(res):
    return [(f['id'], f['severity']) for f in res['findings']]


def section(text, name, new_lines):
    """Replace the body of section ``@@name`` (up to the next ``@@``) with ``new_lines``."""
    pattern = re.compile(r'^@@%s\n(?:(?!@@).*\n)*' % re.escape(name), re.M)
    assert pattern.search(text), name
    return pattern.sub(lambda m: '@@%s\n%s' % (name, ''.join(x + '\n' for x in new_lines)), text, count=1)


# ------------------------------------------------------------------------------------------ table
CASES = [
    # fixture, libvirt's rules in, findings (id, severity) in order
    ('plain_debian12', ['iptables-nft'], [('br-netfilter-bridged', 'info')]),
    ('plain_el7', ['iptables-legacy'], [('nft-unreadable', 'info'), ('br-netfilter-bridged', 'info')]),
    ('plain_el6', ['iptables-legacy'], [('nft-unreadable', 'info'), ('br-netfilter-bridged', 'info')]),
    ('docker_same_table_debian12', ['iptables-nft'],
     [('docker-forward-drop', 'warning'), ('br-netfilter-bridged', 'warning')]),
    ('docker_libvirt_legacy_debian12', ['iptables-legacy'],
     [('docker-forward-drop', 'error'), ('mixed-backends', 'warning'), ('br-netfilter-bridged', 'warning')]),
    ('docker_fixed_debian12', ['iptables-legacy'],
     [('mixed-backends', 'warning'), ('br-netfilter-bridged', 'warning'), ('docker-forward-drop', 'info')]),
    ('mixed_debian12', ['iptables-nft'], [('mixed-backends', 'warning'), ('br-netfilter-bridged', 'info')]),
    ('ip_forward_off_el7', ['iptables-legacy'],
     [('ip-forward-disabled', 'error'), ('nft-unreadable', 'info'), ('br-netfilter-bridged', 'info')]),
    ('nft_drop_chain_debian12', ['iptables-nft'],
     [('forward-drop-policy', 'error'), ('br-netfilter-bridged', 'warning')]),
]


@pytest.mark.parametrize('name, rules_in, findings', CASES, ids=[c[0] for c in CASES])
def test_captured_cases(name, rules_in, findings):
    res = run(name)
    assert res['changed'] is False
    assert res['libvirt']['rules_in'] == rules_in
    assert res['libvirt']['firewall_backend'] == 'iptables'
    assert ids(res) == findings
    for f in res['findings']:
        assert f['id'] in F.FINDING_IDS
        assert f['evidence'] and f['fix'] and f['title']
        assert f['ref'].startswith(f['id'])
    assert res['summary'].startswith('h: libvirt uses iptables (rules in %s)' % ', '.join(rules_in))
    assert res['counts'] == dict((s, len([f for f in findings if f[1] == s])) for s in F.SEVERITIES)
    assert [n['name'] for n in res['networks']] == ['default']
    assert res['networks'][0]['bridge'] == 'virbr0' and res['networks'][0]['forward'] == 'nat'


def test_docker_error_finding_details():
    res = run('docker_libvirt_legacy_debian12')
    f = res['findings'][0]
    assert f['ref'] == 'docker-forward-drop@iptables-nft:ip:filter:FORWARD'
    assert f['where'] == dict(backend='iptables-nft', family='ip', table='filter', chain='FORWARD', hook='forward')
    assert 'iptables-nft-save filter: :FORWARD DROP' in f['evidence']
    assert 'iptables-nft-save filter: -A DOCKER-USER -j RETURN' in f['evidence']
    assert "libvirt's rules are in: iptables-legacy" in f['evidence']
    assert f['fix'][:2] == ['iptables-nft -I DOCKER-USER -s 192.168.122.0/24 -j ACCEPT',
                            'iptables-nft -I DOCKER-USER -d 192.168.122.0/24 -m conntrack --ctstate '
                            'RELATED,ESTABLISHED -j ACCEPT']
    assert res['docker'] == dict(present=True, backends=['iptables-nft'],
                                 chains=['DOCKER', 'DOCKER-ISOLATION-STAGE-1', 'DOCKER-ISOLATION-STAGE-2',
                                         'DOCKER-USER'])
    assert res['iptables_default'] == 'legacy'
    fwd = [(h['backend'], h['table'], h['policy']) for h in res['hooks']['forward'] if h['family'] == 'ip']
    assert ('iptables-nft', 'filter', 'drop') in fwd and ('iptables-legacy', 'filter', 'accept') in fwd


def test_docker_fixed_accepts_both_directions_only():
    res = run('docker_fixed_debian12')
    assert res['findings'][-1]['severity'] == 'info'
    # one direction only is not enough: the reply would hit the DROP policy
    text = raw('docker_fixed_debian12').replace(
        '-A DOCKER-USER -d 192.168.122.0/24 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n', '')
    f = [x for x in run(text)['findings'] if x['id'] == 'docker-forward-drop'][0]
    assert f['severity'] == 'error'
    assert f['fix'][0] == ('iptables-nft -I DOCKER-USER -d 192.168.122.0/24 -m conntrack --ctstate '
                           'RELATED,ESTABLISHED -j ACCEPT')


def test_nft_drop_chain_details_and_fix():
    res = run('nft_drop_chain_debian12')
    f = res['findings'][0]
    assert f['where'] == dict(backend='nftables', family='inet', table='hfguard', chain='forward_guard',
                              hook='forward')
    assert f['evidence'][:3] == ['nft: table inet hfguard', 'nft: chain forward_guard',
                                 'nft: type filter hook forward priority filter + 10; policy drop;']
    assert f['fix'][0] == 'nft insert rule inet hfguard forward_guard iifname "virbr0" ip saddr 192.168.122.0/24 accept'
    hook = [h for h in res['hooks']['forward'] if h['backend'] == 'nftables'][0]
    assert hook['priority'] == 10 and hook['policy'] == 'drop'
    # iptables-nft's own tables are not counted as native nft tables
    assert res['backends']['nftables']['tables'] == ['inet hfguard']


def test_mixed_evidence_names_each_half():
    f = run('mixed_debian12')['findings'][0]
    assert 'iptables-legacy-save: -A INPUT -p tcp -m tcp --dport 9 -j DROP' in f['evidence']
    assert any(e.startswith('iptables-nft-save: -A ') for e in f['evidence'])
    assert f['fix'][0] == 'read both halves: iptables-legacy-save; iptables-nft-save; nft list ruleset'


def test_networks_option_filters_and_validates():
    res = run('plain_el7', networks=['default'])
    assert [n['name'] for n in res['networks']] == ['default']
    with pytest.raises(F.FirewallError, match=r"networks: 'web' is not an active libvirt network on h "
                                              r"\(active: default\); use one of those names"):
        run('plain_el7', networks=['web'])


def test_no_tools_is_a_clear_error():
    with pytest.raises(F.FirewallError, match=r'^no iptables, iptables-legacy, iptables-nft or nft command on h: '
                                              r'there is no firewall tool to read'):
        run('no_tools_debian12')


def test_not_root_is_a_clear_error():
    """Derived: the el6 capture with the read refused as it is to a non-root user."""
    text = raw('plain_el6')
    denied = 'iptables-save v1.4.7: Cannot initialize: Permission denied (you must be root)'
    text = section(text, 'fw_legacy', [denied])
    text = section(text, 'fw_legacy_six', [denied.replace('iptables', 'ip6tables')])
    text = section(text, 'fw_rc', ['fw_legacy 1 iptables-save'])
    text = text.replace('fw_legacy_six 0 ip6tables-save', 'fw_legacy_six 1 ip6tables-save')
    with pytest.raises(F.FirewallError, match=r'could not read any firewall on h: iptables-save: .*you must be root.*'
                                              r'run the task as root \(become: true\)'):
        run(text)


def test_incomplete_output():
    text = raw('plain_el6')
    with pytest.raises(F.FirewallError, match='no fw_end marker'):
        F.parse(text[:text.index('@@fw_end')])
    with pytest.raises(F.FirewallError, match='no end marker'):
        F.parse('@@osrelease\n2.6.32\n')


def test_rp_filter_strict_with_a_routed_network():
    """Derived: the el7 capture with rp_filter=1 on all and the default network in route mode."""
    text = raw('plain_el7').replace('/proc/sys/net/ipv4/conf/all/rp_filter=0', '/proc/sys/net/ipv4/conf/all/rp_filter=1')
    assert ('rp-filter-strict', 'info') in ids(run(text))
    routed = re.sub(r"<forward mode='nat'>.*?</forward>", "<forward mode='route'/>", text, flags=re.S)
    res = run(routed)
    f = [x for x in res['findings'] if x['id'] == 'rp-filter-strict'][0]
    assert f['severity'] == 'warning' and 'routed networks default' in f['title']
    assert '/proc/sys/net/ipv4/conf/all/rp_filter = 1' in f['evidence']
    assert 'net.ipv4.conf.all.rp_filter=2' in f['fix'][0]


def test_br_netfilter_absent_no_finding():
    text = re.sub(r'^/proc/sys/net/bridge/.*\n', '', raw('plain_el6'), flags=re.M)
    assert 'br-netfilter-bridged' not in [f['id'] for f in run(text)['findings']]


# firewall-cmd output in its documented format (firewalld is not installed in the lab: NOT captured)
FIREWALLD_RUNNING = [
    'state=running',
    '@@fw_fwd_zones',
    'block dmz drop external home internal libvirt libvirt-routed nm-shared public trusted work',
    '@@fw_fwd_active',
    'libvirt',
    '  interfaces: virbr1',
    'public',
    '  interfaces: eth0 virbr0',
    '@@fw_fwd_policies',
    'allow-host-ipv6 libvirt-routed-in libvirt-routed-out libvirt-to-host',
]


def test_firewalld_zone_of_the_bridge():
    text = section(raw('plain_el7'), 'fw_firewalld', FIREWALLD_RUNNING)
    res = run(text)
    assert res['firewalld']['running'] and res['firewalld']['active_zones']['public']['interfaces'] == ['eth0', 'virbr0']
    f = [x for x in res['findings'] if x['id'] == 'firewalld-zone'][0]
    assert f['severity'] == 'error'
    assert 'bridge virbr0 is in zone public, not libvirt' in f['title']
    assert f['fix'][0] == 'firewall-cmd --zone=libvirt --change-interface=virbr0 (and --permanent)'
    fixed = [x.replace('virbr1', 'virbr0').replace('eth0 virbr0', 'eth0') for x in FIREWALLD_RUNNING]
    good = section(raw('plain_el7'), 'fw_firewalld', fixed)
    res = run(good)
    assert [x['id'] for x in res['findings'] if x['id'].startswith('firewalld')] == ['firewalld-running']


def test_firewalld_process_without_firewall_cmd():
    text = section(raw('plain_el7'), 'fw_procs', ['4242 firewalld'])
    f = [x for x in run(text)['findings'] if x['id'] == 'firewalld-running'][0]
    assert f['severity'] == 'warning' and 'zones could not be read (no firewall-cmd)' in f['title']


# ------------------------------------------------------------------------------------------ nft parser
def test_parse_nft_skips_sets_and_reads_priorities():
    # nft indents with tabs
    text = textwrap.dedent('''\
        table inet filter {
            set allowed {
                type ipv4_addr
                elements = { 10.0.0.1,
                         10.0.0.2 }
            }
            chain input {
                type filter hook input priority filter; policy accept;
                ip saddr @allowed accept
            }
            chain fwd_in {
                type filter hook forward priority -5; policy drop;
                comment "guard"
                ct state established,related accept
            }
            chain helper {
                counter
            }
        }
        table ip libvirt_network {
            chain guest_nat {
                type nat hook postrouting priority srcnat; policy accept;
                ip saddr 192.168.122.0/24 masquerade
            }
        }
        # Warning: table ip filter is managed by iptables-nft, do not touch!
        ''').replace('    ', '\t')
    tables = F.parse_nft(text)
    assert [t.label for t in tables] == ['inet filter', 'ip libvirt_network']
    chains = {c.name: c for c in tables[0].chains}
    assert sorted(chains) == ['fwd_in', 'helper', 'input']
    assert (chains['fwd_in'].hook, chains['fwd_in'].priority, chains['fwd_in'].policy) == ('forward', -5, 'drop')
    assert chains['fwd_in'].rules == ['ct state established,related accept']
    assert chains['input'].rules == ['ip saddr @allowed accept'] and chains['input'].priority == 0
    assert not chains['helper'].base and chains['helper'].rules == ['counter']
    assert tables[1].chains[0].priority == 100


def test_libvirt_nft_backend_and_network_conf():
    """Derived: network.conf with firewall_backend, and libvirt's nft table in the ruleset."""
    text = section(raw('plain_debian12'), 'fw_netconf', ['# libvirt 10.4+', 'firewall_backend = "nftables"'])
    res = run(text)
    assert res['libvirt']['firewall_backend'] == 'nftables'
    assert res['libvirt']['source'] == '/etc/libvirt/network.conf firewall_backend'


# ------------------------------------------------------------------------------------------ module run
class Host:
    def __init__(self, params, fixture='plain_el6'):
        self.params = params
        self.check_mode = False
        self.host = 'el6-1'
        self.scripts = []
        self.out = raw(fixture)

    def fail_json(self, msg, **kw):
        raise ModuleFailed(msg, result=kw)

    def run_script(self, script, args=(), what='', **kw):
        self.scripts.append((script, list(args)))
        return CommandResult(0, self.out, '', '')


def test_task_one_constant_script_no_arguments():
    m = Host(dict(networks=['default']))
    res = F.FirewallTask(m).run()
    assert res['summary'].startswith('el6-1: libvirt uses iptables (rules in iptables-legacy)')
    (script, args), = m.scripts
    assert script == PROBE_SCRIPT + F.FIREWALL_SCRIPT and args == []      # constant text, no user value


@pytest.mark.parametrize('bad', ['a;b', '', 'x' * 65, '$(id)', 'default\n', 'n\u00e9t', None])
def test_task_rejects_bad_network_names_before_running_anything(bad):
    m = Host(dict(networks=[bad]))
    with pytest.raises(ModuleFailed, match=r'^networks: .* is not a libvirt network name'):
        F.FirewallTask(m).run()
    assert m.scripts == []


def test_task_failure_is_a_message():
    m = Host(dict(networks=[]), fixture='no_tools_debian12')
    with pytest.raises(ModuleFailed, match='no firewall tool to read'):
        F.FirewallTask(m).run()
