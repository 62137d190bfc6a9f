# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Read-only firewall diagnosis for virtops.virtnet.firewall_info (controller side).

THIS IS PRIVATE TO virtops.virtnet; the API may change without notice outside the collection.

One constant POSIX sh script (``FIREWALL_SCRIPT``, appended to the host probe so that one round
trip does it all) prints, as ``@@fw_*`` sections: the iptables-legacy and iptables-nft rulesets
(IPv4 and IPv6), ``nft list ruleset``, ``/etc/libvirt/network.conf``, the libvirtd version, the
sysctls that decide forwarding (``ip_forward``, ``bridge-nf-call-*``, ``rp_filter``), libvirt's
active network status files, the firewalld / Docker processes of the host's network namespace and,
when firewalld runs, its zones and policies.  It only reads: no ``-L`` that could load a table,
no write.  Everything else here is pure and unit-tested with outputs captured on lab hosts:

``parse(text) -> dict``                    the sections, parsed (rulesets, nft tables, sysctls...)
``parse_nft(text) -> [NftTable]``          ``nft list ruleset`` -> tables, chains, base chains, rules
``parse_networks(lines) -> [dict]``        libvirt network status XML -> name, bridge, forward, subnets
``diagnose(facts, host, networks=None) -> dict``   backends, libvirt's backend, hooks, findings, summary
``FirewallTask(module).run()``             the module run

Findings are dicts ``{id, ref, severity, title, where, evidence, fix}``.  ``id`` is stable (part of
the API: meant for the trace explanation to link a dropped packet to it); ``ref`` names the instance
(``id@backend:family:table:chain``); ``where`` is ``{backend, family, table, chain, hook}`` so that
a dropped trace hop can be matched to the finding about that table and chain.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._wire import parse as parse_wire
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._probe import PROBE_SCRIPT, ProbeError, parse_probe
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._ruleset import parse_save

__all__ = ['FIREWALL_SCRIPT', 'FINDING_IDS', 'FirewallError', 'parse', 'parse_nft', 'parse_networks', 'diagnose',
           'FirewallTask', 'NETWORK_NAME_RE']

# Stable finding ids (documented in the module's RETURN and docs/firewall.md).
FINDING_IDS = ('docker-forward-drop', 'forward-drop-policy', 'mixed-backends', 'ip-forward-disabled',
               'br-netfilter-bridged', 'rp-filter-strict', 'firewalld-running', 'firewalld-zone',
               'nft-unreadable')
NETWORK_NAME_RE = re.compile(r'^[A-Za-z0-9_.:+-]{1,64}$')
DOCKER_CHAINS = ('DOCKER', 'DOCKER-USER', 'DOCKER-FORWARD', 'DOCKER-ISOLATION-STAGE-1')
LIBVIRT_CHAIN_RE = re.compile(r'^LIBVIRT_')
LIBVIRT_NFT_TABLE = 'libvirt_network'
FORWARDING_MODES = ('nat', 'route', 'open')
SEVERITIES = ('error', 'warning', 'info')

# iptables built-in chains -> (hook, priority) per table (the priorities nft gives them).
IPT_HOOKS = {
    'raw': {'PREROUTING': -300, 'OUTPUT': -300},
    'mangle': {'PREROUTING': -150, 'INPUT': -150, 'FORWARD': -150, 'OUTPUT': -150, 'POSTROUTING': -150},
    'nat': {'PREROUTING': -100, 'INPUT': 100, 'OUTPUT': -100, 'POSTROUTING': 100},
    'filter': {'INPUT': 0, 'FORWARD': 0, 'OUTPUT': 0},
    'security': {'INPUT': 50, 'FORWARD': 50, 'OUTPUT': 50},
}
NFT_PRIORITIES = {'raw': -300, 'mangle': -150, 'dstnat': -100, 'filter': 0, 'security': 50, 'srcnat': 100,
                  'out': 100, 'bridge dstnat': -300}

# Constant text: no user value ever goes in here.  Appended to PROBE_SCRIPT.  Every reader is
# announced by its section and followed by a ``@@fw_rc`` line ``<section> <rc> <command>``, so a
# missing tool (no section) is told apart from a failed read (rc != 0, the error text as content).
FIREWALL_SCRIPT = r'''
have() { command -v "$1" >/dev/null 2>&1; }
rd() { rk=$1; shift; have "$1" || return 0; out=$("$@" 2>&1); rc=$?
  printf '@@%s\n' "$rk"; [ -n "$out" ] && printf '%s\n' "$out"; printf '@@fw_rc\n%s %s %s\n' "$rk" "$rc" "$1"; }
ipt=$(iptables --version 2>/dev/null)
for b in iptables ip6tables; do
  k=''; [ "$b" = ip6tables ] && k=_six
  if have "$b-legacy-save"; then rd "fw_legacy$k" "$b-legacy-save"
  else case "$ipt" in *nf_tables*) ;; *) rd "fw_legacy$k" "$b-save" ;; esac; fi
  if have "$b-nft-save"; then rd "fw_nft$k" "$b-nft-save"
  else case "$ipt" in *nf_tables*) rd "fw_nft$k" "$b-save" ;; esac; fi
done
rd fw_ruleset nft list ruleset
printf '@@fw_netconf\n'; cat /etc/libvirt/network.conf 2>/dev/null && echo
printf '@@fw_libvirtd\n'; have libvirtd && libvirtd --version 2>/dev/null | head -n 1
printf '@@fw_sysctl\n'
for f in /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding \
         /proc/sys/net/bridge/bridge-nf-call-iptables /proc/sys/net/bridge/bridge-nf-call-ip6tables \
         /proc/sys/net/bridge/bridge-nf-call-arptables /proc/sys/net/ipv4/conf/*/rp_filter; do
  # a /proc/sys file answers only the first read(2): read gets the value, then EOF (rc 1)
  v=''; [ -r "$f" ] && { read -r v < "$f" || :; }; [ -n "$v" ] && printf '%s=%s\n' "$f" "$v"
done
printf '@@fw_networks\n'
d=/run/libvirt/network; [ -d "$d" ] || d=/var/run/libvirt/network
for f in "$d"/*.xml; do [ -r "$f" ] && { printf '#file %s\n' "$f"; cat "$f"; echo; }; done
printf '@@fw_procs\n'
me=$(readlink /proc/self/ns/net 2>/dev/null)
for p in /proc/[0-9]*; do
  c=''; read -r c 2>/dev/null < "$p/comm" || c=$(sed -n 's/^Name:[[:space:]]*//p' "$p/status" 2>/dev/null)
  case "$c" in firewalld|dockerd)
    n=$(readlink "$p/ns/net" 2>/dev/null); [ "$n" = "$me" ] && printf '%s %s\n' "${p#/proc/}" "$c" ;;
  esac
done
printf '@@fw_firewalld\n'
if have firewall-cmd; then
  st=$(firewall-cmd --state 2>&1); printf 'state=%s\n' "$st"
  if [ "$st" = running ]; then
    printf '@@fw_fwd_zones\n'; firewall-cmd --get-zones 2>&1
    printf '@@fw_fwd_active\n'; firewall-cmd --get-active-zones 2>&1
    printf '@@fw_fwd_policies\n'; firewall-cmd --get-policies 2>&1
  fi
fi
printf '@@fw_end\n'
'''

READERS = {
    'fw_legacy': ('iptables-legacy', 'ip'), 'fw_legacy_six': ('iptables-legacy', 'ip6'),
    'fw_nft': ('iptables-nft', 'ip'), 'fw_nft_six': ('iptables-nft', 'ip6'),
}


class FirewallError(Exception):
    """Bad input or an unusable host: the message names the parameter or the fix."""


# ---------------------------------------------------------------------------------- nft ruleset
class NftChain:
    def __init__(self, name):
        self.name = name
        self.type = self.hook = self.policy = None
        self.priority = None
        self.priority_text = None
        self.header = None       # the 'type ... hook ...' line
        self.rules = []

    @property
    def base(self):
        return self.hook is not None


class NftTable:
    def __init__(self, family, name):
        self.family = family
        self.name = name
        self.chains = []
        self.owner = None        # 'iptables-nft' when iptables-nft manages it

    @property
    def label(self):
        return '%s %s' % (self.family, self.name)


def _priority(text):
    """``filter``, ``-150``, ``filter - 10``, ``srcnat + 5`` -> int (None when unknown)."""
    text = (text or '').strip()
    m = re.match(r'^(-?\d+)$', text)
    if m:
        return int(m.group(1))
    m = re.match(r'^([a-z ]+?)\s*(?:([+-])\s*(\d+))?$', text)
    if m and m.group(1).strip() in NFT_PRIORITIES:
        base = NFT_PRIORITIES[m.group(1).strip()]
        if m.group(2):
            base += int(m.group(3)) * (1 if m.group(2) == '+' else -1)
        return base
    return None


BASE_RE = re.compile(r'^type (\S+) hook (\S+)(?: device \S+)? priority ([^;]+);(?:\s*policy (\S+);)?')


def parse_nft(text):
    """``nft list ruleset`` -> [NftTable]; sets, maps and flowtables are skipped."""
    tables = []
    table = chain = None
    depth = 0
    skip_depth = None
    for raw in (text or '').splitlines():
        line = raw.strip()
        if not line:
            continue
        m = re.match(r'^# Warning: table (\S+) (\S+) is managed by iptables-nft', line)
        if m:
            for t in tables:
                if (t.family, t.name) == (m.group(1), m.group(2)):
                    t.owner = 'iptables-nft'
            continue
        if line.startswith('#'):
            continue
        opens, closes = line.count('{'), line.count('}')
        if skip_depth is not None:
            depth += opens - closes
            if depth <= skip_depth:
                skip_depth = None
            continue
        m = re.match(r'^table (\S+) (\S+) \{$', line)
        if m and depth == 0:
            table = NftTable(m.group(1), m.group(2))
            tables.append(table)
            depth = 1
            continue
        m = re.match(r'^chain (\S+) \{$', line)
        if m and depth == 1 and table is not None:
            chain = NftChain(m.group(1))
            table.chains.append(chain)
            depth = 2
            continue
        if depth == 1 and opens > closes:          # set / map / flowtable / counter ... block
            skip_depth = depth
            depth += opens - closes
            continue
        if line == '}':
            depth -= 1
            if depth == 1:
                chain = None
            elif depth == 0:
                table = None
            continue
        if depth == 2 and chain is not None:
            m = BASE_RE.match(line)
            if m:
                chain.type, chain.hook, chain.priority_text, chain.policy = m.groups()
                chain.priority_text = chain.priority_text.strip()
                chain.priority = _priority(chain.priority_text)
                chain.policy = chain.policy or 'accept'
                chain.header = line
            elif line.startswith('comment '):
                continue
            else:
                chain.rules.append(line)
            depth += opens - closes
    return tables


# ---------------------------------------------------------------------------------- other sections
def _attr(tag_text, name):
    m = re.search(r'\b%s=([\'"])([^\'"]*)\1' % re.escape(name), tag_text)
    return m.group(2) if m else None


def parse_networks(lines):
    """libvirt's active network status files -> [dict(name, bridge, forward, zone, subnets, file)]."""
    out = []
    text = '\n'.join(lines)
    for chunk in re.split(r'^#file ', text, flags=re.M):
        if not chunk.strip():
            continue
        path, dummy, xml = chunk.partition('\n')
        net = re.search(r'<network\b.*?</network>', xml, re.S)
        if not net:
            continue
        body = net.group(0)
        name = re.search(r'<name>([^<]+)</name>', body)
        bridge = re.search(r'<bridge\b[^>]*>', body)
        fwd = re.search(r'<forward\b[^>]*>', body)
        subnets = []
        for ip in re.finditer(r'<ip\b[^>]*>', body):
            tag = ip.group(0)
            addr = _attr(tag, 'address')
            if not addr:
                continue
            prefix = _attr(tag, 'prefix') or _attr(tag, 'netmask') or ('64' if ':' in addr else '24')
            try:
                subnets.append(str(ipaddress.ip_interface('%s/%s' % (addr, prefix)).network))
            except ValueError:
                continue
        out.append(dict(
            name=name.group(1).strip() if name else path.strip(),
            bridge=_attr(bridge.group(0), 'name') if bridge else None,
            zone=_attr(bridge.group(0), 'zone') if bridge else None,
            forward=(_attr(fwd.group(0), 'mode') or 'nat') if fwd else 'none',
            subnets=subnets,
            file=path.strip(),
        ))
    return out


def _sysctls(lines):
    out = {}
    for line in lines:
        k, sep, v = line.partition('=')
        if sep and k.startswith('/proc/sys/'):
            out[k[len('/proc/sys/'):].replace('/', '.')] = v.strip()
    return out


def _rcs(lines):
    out = {}
    for line in lines:
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1].lstrip('-').isdigit():
            out[parts[0]] = dict(rc=int(parts[1]), command=parts[2])
    return out


def _firewalld(sections):
    state = None
    for line in sections.get('fw_firewalld', []):
        if line.startswith('state='):
            state = line[6:].strip()
    zones = ' '.join(sections.get('fw_fwd_zones', [])).split()
    policies = ' '.join(sections.get('fw_fwd_policies', [])).split()
    active = {}
    current = None
    for line in sections.get('fw_fwd_active', []):
        if line and not line[0].isspace():
            current = line.split()[0]
            active[current] = dict(interfaces=[], sources=[])
        elif current and ':' in line:
            key, dummy, val = line.strip().partition(':')
            if key.strip() in ('interfaces', 'sources'):
                active[current][key.strip()] = val.split()
    return dict(state=state, zones=zones, policies=policies, active_zones=active)


def parse(text):
    """The probe + firewall script output -> facts dict (raises FirewallError when incomplete)."""
    try:
        probe = parse_probe(text)
    except ProbeError as e:
        raise FirewallError(str(e)) from e
    sections = parse_wire(text).as_dict()
    if 'fw_end' not in sections:
        raise FirewallError('firewall read is incomplete (no fw_end marker)')
    rcs = _rcs(sections.get('fw_rc', []))
    saves = {}
    for key, (backend, family) in READERS.items():
        if key not in sections:
            continue
        r = rcs.get(key, dict(rc=0, command='?'))
        text_k = '\n'.join(sections[key]) + '\n'
        saves[key] = dict(backend=backend, family=family, command=r['command'], rc=r['rc'],
                          error=text_k.strip() if r['rc'] else None,
                          ruleset=parse_save(text_k) if r['rc'] == 0 else None,
                          warnings=[x.strip() for x in sections[key] if x.startswith('# Warning')])
    nft = None
    if 'fw_ruleset' in sections:
        r = rcs.get('fw_ruleset', dict(rc=0, command='nft'))
        nft_text = '\n'.join(sections['fw_ruleset'])
        nft = dict(command=r['command'], rc=r['rc'], error=nft_text.strip() if r['rc'] else None,
                   tables=parse_nft(nft_text) if r['rc'] == 0 else [])
    conf = None
    for line in sections.get('fw_netconf', []):
        m = re.match(r'^\s*firewall_backend\s*=\s*"([^"]*)"', line)
        if m:
            conf = m.group(1)
    libvirtd = next((x.strip() for x in sections.get('fw_libvirtd', []) if x.strip()), None)
    procs = {}
    for line in sections.get('fw_procs', []):
        parts = line.split()
        if len(parts) == 2:
            procs.setdefault(parts[1], []).append(int(parts[0]))
    return dict(probe=probe, saves=saves, nft=nft, network_conf_backend=conf, libvirtd_version=libvirtd,
                sysctl=_sysctls(sections.get('fw_sysctl', [])),
                networks=parse_networks(sections.get('fw_networks', [])),
                processes=procs, firewalld=_firewalld(sections))


# ---------------------------------------------------------------------------------- analysis
def _finding(fid, severity, title, where, evidence, fix):
    where = dict(where or {})
    ref = fid
    if where:
        ref += '@' + ':'.join(str(where.get(k) or '-') for k in ('backend', 'family', 'table', 'chain'))
    return dict(id=fid, ref=ref, severity=severity, title=title, where=where, evidence=list(evidence),
                fix=list(fix))


def _policy_line(chain, policy):
    return ':%s %s' % (chain, policy)


def _tool(backend, family, facts):
    """The command a user types for that backend on that host."""
    base = 'iptables' if family == 'ip' else 'ip6tables'
    tools = facts['probe'].get('tools', {})
    name = '%s-%s' % (base, 'legacy' if backend == 'iptables-legacy' else 'nft')
    return name if name in tools else base


def _holds_rules(rs):
    """Rules, user chains or a non-ACCEPT policy in any table of an iptables ruleset."""
    n = 0
    for tname, t in rs.tables.items():
        n += len(t['rules'])
        builtin = IPT_HOOKS.get(tname, {})
        n += len([c for c, pol in t['chains'].items() if c not in builtin])
        n += len([c for c, pol in t['chains'].items() if c in builtin and pol not in ('ACCEPT', '-')])
    return n


def _mentions(text, net):
    for sub in net['subnets']:
        if sub in text:
            return True
    return bool(net['bridge']) and ('"%s"' % net['bridge'] in text or ' %s ' % net['bridge'] in text + ' ')


def _ipt_accepts(rules, net, direction):
    """Does an ACCEPT rule among ``rules`` (SavedRule) let ``net``'s traffic out (or back in)?"""
    flag, iface = ('-s', '-i') if direction == 'out' else ('-d', '-o')
    for r in rules:
        t = r.tokens
        if '-j' not in t or t[t.index('-j') + 1] != 'ACCEPT':
            continue
        for i, tok in enumerate(t[:-1]):
            if i > 0 and t[i - 1] == '!':
                continue
            if tok == iface and net['bridge'] and t[i + 1] == net['bridge']:
                return r.line
            if tok == flag:
                try:
                    cand = ipaddress.ip_network(t[i + 1], strict=False)
                except ValueError:
                    continue
                for sub in net['subnets']:
                    s = ipaddress.ip_network(sub)
                    if s.version == cand.version and s.subnet_of(cand):
                        return r.line
    return None


class _Diagnosis:
    """One host's diagnosis: each step reads what the steps before it stored on ``self``."""

    def __init__(self, facts, host, networks=None):
        probe = facts['probe']
        saves = facts['saves']
        nft = facts['nft']
        all_nets = facts['networks']
        if networks:
            names = [n['name'] for n in all_nets]
            for want in networks:
                if want not in names:
                    raise FirewallError('networks: %r is not an active libvirt network on %s (active: %s); use '
                                        'one of those names or omit the option' % (want, host, ', '.join(names) or 'none'))
            nets = [n for n in all_nets if n['name'] in networks]
        else:
            nets = list(all_nets)
        fwd_nets = [n for n in nets if n['forward'] in FORWARDING_MODES]
        findings = []

        self.facts, self.host, self.probe, self.saves, self.nft = facts, host, probe, saves, nft
        self.nets, self.fwd_nets, self.findings = nets, fwd_nets, findings
        # filled by the steps, in run()'s order
        self.backends, self.native, self.lv_rules, self.lv_tables, self.libvirt = {}, [], [], [], {}
        self.hooks, self.docker, self.firewalld = {}, {}, {}

    def run(self):
        for step in (self.read_backends, self.find_libvirt, self.base_chains, self.check_docker,
                     self.check_forward_drops, self.check_mixed, self.check_sysctls, self.check_firewalld):
            step()
        return self.result()

    def read_backends(self):
        probe, saves, nft, findings, host = self.probe, self.saves, self.nft, self.findings, self.host
        # ---- backends
        backends = {}
        for s in [saves[k] for k in sorted(saves)]:
            b = backends.setdefault(s['backend'], dict(available=True, commands=[], rules=0, tables=[], errors=[]))
            b['commands'].append(s['command'])
            if s['error']:
                b['errors'].append('%s: %s' % (s['command'], s['error'].splitlines()[0] if s['error'] else ''))
                continue
            rs = s['ruleset']
            b['rules'] += _holds_rules(rs)
            b['tables'] += ['%s %s' % (s['family'], t) for t in rs.tables]
        nft_owned = set()
        for b in ('iptables-legacy', 'iptables-nft'):
            backends.setdefault(b, dict(available=False, commands=[], rules=0, tables=[], errors=[]))
        for t in backends['iptables-nft']['tables']:
            nft_owned.add(tuple(t.split(' ', 1)))
        native = []
        if nft is not None:
            for t in nft['tables']:
                if t.owner is None and (t.family, t.name) in nft_owned:
                    t.owner = 'iptables-nft'
                if t.owner is None:
                    native.append(t)
            backends['nftables'] = dict(available=True, commands=[nft['command'] + ' list ruleset'],
                                        rules=sum(len(c.rules) + (1 if c.base else 0) for t in native for c in t.chains),
                                        tables=[t.label for t in native],
                                        errors=[nft['error'].splitlines()[0]] if nft['error'] else [])
        else:
            backends['nftables'] = dict(available=False, commands=[], rules=0, tables=[], errors=[])
        for b in backends.values():
            b['holds_rules'] = b['rules'] > 0
        readable = [b for b in backends.values() if b['available'] and not b['errors']]
        if not any(b['available'] for b in backends.values()):
            raise FirewallError('no iptables, iptables-legacy, iptables-nft or nft command on %s: there is no firewall '
                                'tool to read (tools found: %s); install iptables or nftables, or check PATH'
                                % (host, ', '.join(sorted(probe.get('tools', {}))) or 'none'))
        if not readable:
            errs = [e for b in backends.values() for e in b['errors']]
            raise FirewallError('could not read any firewall on %s: %s; run the task as root (become: true)'
                                % (host, '; '.join(errs)))
        if nft is None:
            findings.append(_finding(
                'nft-unreadable', 'info', 'no nft command on this host: native nftables tables (firewalld, libvirt '
                '10.4+ nftables backend, nftables.service) cannot be read; only iptables was examined', None,
                ['tools: ' + ', '.join(sorted(t for t in probe.get('tools', {}) if 'tables' in t or t == 'nft'))],
                ['install nftables (the nft command) to see native nft tables']))
        self.backends, self.native = backends, native

    def find_libvirt(self):
        saves, native, facts = self.saves, self.native, self.facts
        # ---- libvirt's backend (read from the host)
        lv_rules = []
        for s in [saves[k] for k in sorted(saves)]:
            if s['ruleset'] is None:
                continue
            if any(LIBVIRT_CHAIN_RE.match(c) for t in s['ruleset'].tables.values() for c in t['chains']):
                if s['backend'] not in lv_rules:
                    lv_rules.append(s['backend'])
        lv_tables = [t for t in native if t.name == LIBVIRT_NFT_TABLE]
        if lv_tables:
            lv_rules.append('nftables')
        conf = facts['network_conf_backend']
        if conf:
            lv_backend, lv_source = conf, '/etc/libvirt/network.conf firewall_backend'
        elif lv_rules:
            lv_backend = 'nftables' if lv_rules == ['nftables'] else 'iptables'
            lv_source = "libvirt's rules found in %s" % ', '.join(lv_rules)
        else:
            lv_backend, lv_source = None, 'no libvirt rules found and no firewall_backend in /etc/libvirt/network.conf'
        libvirt = dict(firewall_backend=lv_backend, source=lv_source, rules_in=lv_rules,
                       network_conf=conf, version=facts['libvirtd_version'],
                       nft_tables=[t.label for t in lv_tables])
        self.lv_rules, self.lv_tables, self.libvirt = lv_rules, lv_tables, libvirt

    def base_chains(self):
        saves, native = self.saves, self.native
        # ---- base chains per hook
        hooks = {}
        for s in [saves[k] for k in sorted(saves)]:
            if s['ruleset'] is None:
                continue
            for tname, t in s['ruleset'].tables.items():
                for chain, pol in t['chains'].items():
                    prio = IPT_HOOKS.get(tname, {}).get(chain)
                    if prio is None or pol == '-':
                        continue
                    hooks.setdefault(chain.lower(), []).append(dict(
                        backend=s['backend'], family=s['family'], table=tname, chain=chain, priority=prio,
                        policy=pol.lower(), rules=len([r for r in t['rules'] if r.chain == chain])))
        for t in native:
            for c in t.chains:
                if c.base:
                    hooks.setdefault(c.hook, []).append(dict(
                        backend='nftables', family=t.family, table=t.name, chain=c.name, priority=c.priority,
                        priority_text=c.priority_text, type=c.type, policy=c.policy, rules=len(c.rules)))
        for h in hooks.values():
            h.sort(key=lambda x: (x['priority'] if x['priority'] is not None else 0, x['backend'], x['table']))
        self.hooks = hooks

    def check_docker(self):
        saves, fwd_nets, findings, facts, lv_rules = self.saves, self.fwd_nets, self.findings, self.facts, self.lv_rules
        # ---- Docker's FORWARD policy DROP
        docker = dict(present=False, backends=[], chains=[])
        for key in ('fw_legacy', 'fw_nft'):
            s = saves.get(key)
            if not s or s['ruleset'] is None:
                continue
            filt = s['ruleset'].tables.get('filter')
            if not filt:
                continue
            dchains = [c for c in filt['chains'] if c in DOCKER_CHAINS or c.startswith('DOCKER-')]
            if not dchains:
                continue
            docker['present'] = True
            docker['backends'].append(s['backend'])
            docker['chains'] = sorted(set(docker['chains']) | set(dchains))
            policy = filt['chains'].get('FORWARD')
            if policy != 'DROP':
                continue
            tool = _tool(s['backend'], 'ip', facts)
            rules = list(s['ruleset'].rules('filter'))
            user = [r for r in rules if r.chain == 'DOCKER-USER']
            jumps = [r.line for r in rules if r.chain == 'FORWARD' and r.tokens[-1].startswith('DOCKER')]
            lv_here = [r for r in rules if r.chain.startswith('LIBVIRT_FW')]
            evidence = ['%s filter: %s' % (s['command'], _policy_line('FORWARD', 'DROP'))]
            evidence += ['%s filter: :%s' % (s['command'], c) for c in dchains]
            evidence += ['%s filter: %s' % (s['command'], x) for x in jumps]
            evidence += ['%s filter: %s' % (s['command'], r.line) for r in user]
            missing, fix = [], []
            for net in fwd_nets:
                v4 = [x for x in net['subnets'] if ':' not in x]
                out_ok = _ipt_accepts(user, net, 'out')
                in_ok = _ipt_accepts(user, net, 'in')
                if out_ok and in_ok:
                    continue
                missing.append(net['name'])
                for sub in v4:
                    if not out_ok:
                        fix.append('%s -I DOCKER-USER -s %s -j ACCEPT' % (tool, sub))
                    if not in_ok:
                        fix.append('%s -I DOCKER-USER -d %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT'
                                   % (tool, sub))
            where = dict(backend=s['backend'], family='ip', table='filter', chain='FORWARD', hook='forward')
            if not missing:
                sev = 'info'
                title = ("Docker's FORWARD policy DROP (%s): DOCKER-USER accepts every forwarding libvirt network's "
                         "traffic" % s['backend'])
            elif lv_here:
                sev = 'warning'
                title = ("Docker set the FORWARD policy to DROP in %s; libvirt's own ACCEPT rules are in the same table, so "
                         "NAT and routed guests of %s pass today, but traffic libvirt adds no rule for (bridged traffic with "
                         "br_netfilter, 'open' networks, libvirt's nftables backend) is dropped unless DOCKER-USER accepts it"
                         % (s['backend'], ', '.join(missing)))
                evidence += ["%s filter: %s (libvirt's)" % (s['command'], r.line) for r in lv_here[:4]]
            else:
                sev = 'error'
                where_lv = ', '.join(lv_rules) or 'no iptables table'
                title = ("libvirt guests of %s cannot forward: Docker set the FORWARD policy to DROP in %s and libvirt's "
                         "ACCEPT rules are in %s, which does not override it (a packet must be accepted by every base "
                         "chain on the forward hook); DOCKER-USER does not accept them"
                         % (', '.join(missing), s['backend'], where_lv))
                evidence.append("libvirt's rules are in: %s" % where_lv)
            if not fix:
                fix.append('nothing to do now; a new libvirt network needs the same two DOCKER-USER rules for its subnet')
            fix.append('persist them: Docker never flushes DOCKER-USER, but they are lost at reboot (save them with '
                       'your distribution\'s iptables service, or a unit ordered after docker.service)')
            findings.append(_finding('docker-forward-drop', sev, title, where, evidence, fix))
        self.docker = docker

    def check_forward_drops(self):
        saves, fwd_nets, findings, facts = self.saves, self.fwd_nets, self.findings, self.facts
        lv_rules, lv_tables, hooks, docker, native = self.lv_rules, self.lv_tables, self.hooks, self.docker, self.native
        # ---- other DROP policies on the forward hook that libvirt's accept does not override
        lv_tables_where = set()
        for s in saves.values():
            if s['ruleset'] is not None and s['backend'] in lv_rules:
                if any(r.chain.startswith('LIBVIRT_FW') for r in s['ruleset'].rules('filter')):
                    lv_tables_where.add((s['backend'], s['family'], 'filter'))
        for t in lv_tables:
            lv_tables_where.add(('nftables', t.family, t.name))
        for hook in hooks.get('forward', []):
            if hook['policy'] != 'drop':
                continue
            if (hook['backend'], hook['family'], hook['table']) in lv_tables_where:
                continue
            if hook['backend'] in docker['backends'] and hook['table'] == 'filter':
                continue                     # the Docker finding covers it
            if hook['family'] not in ('ip', 'inet') or not fwd_nets:
                continue
            where = dict(backend=hook['backend'], family=hook['family'], table=hook['table'], chain=hook['chain'],
                         hook='forward')
            if hook['backend'] == 'nftables':
                tbl = next(t for t in native if t.name == hook['table'] and t.family == hook['family'])
                ch = next(c for c in tbl.chains if c.name == hook['chain'])
                text = '\n'.join(r for c in tbl.chains for r in c.rules)
                evidence = ['nft: table %s' % tbl.label, 'nft: chain %s' % ch.name, 'nft: %s' % ch.header]
                evidence += ['nft: %s' % r for r in ch.rules[:6]]
                fix = []
                for net in fwd_nets:
                    for sub in [x for x in net['subnets'] if ':' not in x]:
                        fix.append('nft insert rule %s %s %s iifname "%s" ip saddr %s accept'
                                   % (tbl.family, tbl.name, ch.name, net['bridge'], sub))
                        fix.append('nft insert rule %s %s %s oifname "%s" ip daddr %s ct state related,established '
                                   'accept' % (tbl.family, tbl.name, ch.name, net['bridge'], sub))
                fix.append('or, if nothing needs it, delete the table: nft delete table %s' % tbl.label)
            else:
                s = next(x for x in saves.values() if x['backend'] == hook['backend'] and x['family'] == hook['family'])
                rules = list(s['ruleset'].rules(hook['table']))
                text = '\n'.join(r.line for r in rules)
                tool = _tool(hook['backend'], hook['family'], facts)
                evidence = ['%s %s: %s' % (s['command'], hook['table'], _policy_line(hook['chain'], 'DROP'))]
                evidence += ['%s %s: %s' % (s['command'], hook['table'], r.line) for r in rules
                             if r.chain == hook['chain']][:6]
                fix = []
                for net in fwd_nets:
                    for sub in [x for x in net['subnets'] if ':' not in x]:
                        fix.append('%s -t %s -I %s -s %s -j ACCEPT' % (tool, hook['table'], hook['chain'], sub))
                        fix.append('%s -t %s -I %s -d %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT'
                                   % (tool, hook['table'], hook['chain'], sub))
            mentioned = [n['name'] for n in fwd_nets if _mentions(text, n)]
            lv_at = ', '.join(lv_rules) or 'no table'
            if mentioned:
                sev = 'warning'
                title = ('%s %s %s: base chain %s on the forward hook has policy drop; it has rules naming the guest '
                         'networks %s: check they accept both directions (libvirt\'s accept in %s does not override it)'
                         % (hook['backend'], hook['family'], hook['table'], hook['chain'], ', '.join(mentioned), lv_at))
            else:
                sev = 'error'
                title = ('%s %s %s: base chain %s on the forward hook has policy drop and no rule for the guests of %s; '
                         "libvirt's accept in %s does not override it (a packet must be accepted by every base chain "
                         'on a hook), so forwarded guest traffic is dropped there'
                         % (hook['backend'], hook['family'], hook['table'], hook['chain'],
                            ', '.join(n['name'] for n in fwd_nets), lv_at))
            findings.append(_finding('forward-drop-policy', sev, title, where, evidence, fix))

    def check_mixed(self):
        saves, findings, backends, native = self.saves, self.findings, self.backends, self.native
        # ---- rules in both iptables-legacy and nf_tables
        legacy_n = backends['iptables-legacy']['rules']
        nft_n = backends['iptables-nft']['rules'] + backends['nftables']['rules']
        if legacy_n and nft_n:
            evidence = []
            for key in ('fw_legacy', 'fw_legacy_six', 'fw_nft', 'fw_nft_six'):
                s = saves.get(key)
                if s and s['ruleset'] is not None and _holds_rules(s['ruleset']):
                    rules = list(s['ruleset'].rules())
                    evidence.append('%s: %d rules in tables %s' % (s['command'], len(rules), ', '.join(s['ruleset'].tables)))
                    evidence += ['%s: %s' % (s['command'], r.line) for r in rules[:3]]
                    evidence += ['%s: %s' % (s['command'], w) for w in s['warnings'][:1]]
            if native:
                evidence.append('nft list ruleset: native tables %s' % ', '.join(t.label for t in native))
            findings.append(_finding(
                'mixed-backends', 'warning',
                'rules in both iptables-legacy (%d) and nf_tables (%d): each tool shows only its half (iptables-legacy-save '
                'does not show nf_tables rules, iptables-nft-save and nft do not show legacy ones) and a packet must '
                'pass both' % (legacy_n, nft_n), dict(backend='iptables-legacy'), evidence,
                ['read both halves: iptables-legacy-save; iptables-nft-save; nft list ruleset',
                 'move every tool to one backend (update-alternatives --set iptables /usr/sbin/iptables-nft on Debian) '
                 'and restart the tools that write rules (libvirtd, docker) so that they re-create them there; then '
                 'flush the legacy tables (iptables-legacy -F; iptables-legacy -X; also -t nat, -t mangle, -t raw)']))

    def check_sysctls(self):
        nets, fwd_nets, findings, hooks = self.nets, self.fwd_nets, self.findings, self.hooks
        sysctl = self.facts['sysctl']
        brnf = sysctl.get('net.bridge.bridge-nf-call-iptables')
        # ---- sysctls
        ipf = sysctl.get('net.ipv4.ip_forward')
        if ipf == '0':
            sev = 'error' if fwd_nets else 'info'
            findings.append(_finding(
                'ip-forward-disabled', sev,
                'net.ipv4.ip_forward=0: the host routes nothing, guests of %s cannot reach beyond the host'
                % (', '.join(n['name'] for n in fwd_nets) or '(no forwarding network)'),
                dict(hook='forward'), ['/proc/sys/net/ipv4/ip_forward = 0'],
                ['sysctl -w net.ipv4.ip_forward=1',
                 'persist it: echo net.ipv4.ip_forward=1 > /etc/sysctl.d/60-virtnet-forward.conf (libvirt sets it when '
                 'it starts a NAT or routed network: something reset it afterwards, e.g. a sysctl.conf applied later)']))
        if brnf is not None:
            drop_fwd = [h for h in hooks.get('forward', []) if h['policy'] == 'drop']
            sev = 'warning' if brnf == '1' and drop_fwd else 'info'
            bridges = [n['bridge'] for n in nets if n['bridge']]
            if brnf == '1':
                title = ('br_netfilter is loaded with bridge-nf-call-iptables=1: traffic bridged inside %s (guest to '
                         'guest, guests on host bridges) traverses the iptables/nftables ip hooks as well'
                         % (', '.join(bridges) or 'the bridges'))
                if drop_fwd:
                    title += ', where the forward policy drop of %s drops it unless accepted' % ', '.join(
                        '%s %s %s' % (h['backend'], h['table'], h['chain']) for h in drop_fwd)
                fix = ['accept bridged traffic explicitly: iptables -I FORWARD -m physdev --physdev-is-bridged -j ACCEPT '
                       '(in DOCKER-USER on a Docker host)',
                       'or, if nothing needs it (Docker and Kubernetes do), sysctl -w net.bridge.bridge-nf-call-iptables=0']
                findings.append(_finding(
                    'br-netfilter-bridged', sev, title, dict(hook='forward'),
                    ['/proc/sys/net/bridge/%s = %s' % (k.split('.')[-1], v) for k, v in sorted(sysctl.items())
                     if k.startswith('net.bridge.')], fix))
        rp_all = sysctl.get('net.ipv4.conf.all.rp_filter', '0')
        strict = []
        for k, v in sorted(sysctl.items()):
            m = re.match(r'^net\.ipv4\.conf\.([^.]+)\.rp_filter$', k)
            if not m or m.group(1) in ('all', 'default'):
                continue
            eff = max(int(v or 0), int(rp_all or 0))
            if eff == 1:
                strict.append((m.group(1), v))
        if strict:
            routed = [n for n in nets if n['forward'] in ('route', 'open')]
            sev = 'warning' if routed else 'info'
            findings.append(_finding(
                'rp-filter-strict', sev,
                'strict reverse-path filtering (rp_filter=1) on %s: a packet arriving on an interface the route back '
                'does not use is dropped before any firewall rule (asymmetric routing%s)'
                % (', '.join(i for i, v in strict), ': routed networks %s' % ', '.join(n['name'] for n in routed)
                   if routed else ''),
                dict(hook='prerouting'),
                ['/proc/sys/net/ipv4/conf/all/rp_filter = %s' % rp_all]
                + ['/proc/sys/net/ipv4/conf/%s/rp_filter = %s' % (i, v) for i, v in strict],
                ['loose mode keeps the spoofing check without the asymmetry problem: sysctl -w '
                 'net.ipv4.conf.all.rp_filter=2 (and net.ipv4.conf.<if>.rp_filter=2 for each interface listed)']))

    def check_firewalld(self):
        nets, findings, facts = self.nets, self.findings, self.facts
        # ---- firewalld
        fwd = facts['firewalld']
        fwd_procs = facts['processes'].get('firewalld', [])
        running = fwd['state'] == 'running' or bool(fwd_procs)
        firewalld = dict(running=running, state=fwd['state'], pids=fwd_procs, zones=fwd['zones'],
                         active_zones=fwd['active_zones'], policies=fwd['policies'])
        if running:
            evidence = ['firewalld process(es) in this network namespace: %s' % (', '.join(map(str, fwd_procs)) or 'none')]
            evidence.append('firewall-cmd --state: %s' % (fwd['state'] or 'firewall-cmd not found'))
            if fwd['state'] == 'running':
                evidence.append('zones: ' + ' '.join(fwd['zones']))
                evidence.append('policies: ' + (' '.join(fwd['policies']) or 'none'))
                for z, d in sorted(fwd['active_zones'].items()):
                    evidence.append('active zone %s: interfaces %s' % (z, ' '.join(d['interfaces']) or '-'))
                findings.append(_finding(
                    'firewalld-running', 'info', "firewalld manages this host's firewall (nftables tables 'firewalld')",
                    dict(backend='nftables', family='inet', table='firewalld'), evidence,
                    ['libvirt networks belong in the zones libvirt (NAT, isolated) or libvirt-routed (routed); '
                     'check with firewall-cmd --get-zone-of-interface=<bridge>']))
                where_of = {}
                for z, d in fwd['active_zones'].items():
                    for i in d['interfaces']:
                        where_of[i] = z
                for net in nets:
                    if not net['bridge'] or net['forward'] in ('bridge', 'passthrough', 'private', 'vepa', 'hostdev'):
                        continue
                    want = net['zone'] or ('libvirt-routed' if net['forward'] in ('route', 'open') else 'libvirt')
                    have_z = where_of.get(net['bridge'])
                    problems = []
                    if want not in fwd['zones']:
                        problems.append('zone %s does not exist (firewall-cmd --get-zones)' % want)
                    if have_z != want:
                        problems.append('bridge %s is in zone %s, not %s' % (net['bridge'], have_z or '(none)', want))
                    if net['forward'] in ('route', 'open') and not [p for p in fwd['policies'] if p.startswith('libvirt')]:
                        problems.append('no libvirt-routed-in/-out policies (firewall-cmd --get-policies)')
                    if problems:
                        findings.append(_finding(
                            'firewalld-zone', 'error',
                            'firewalld: network %s: %s; guests lose DHCP/DNS or forwarding' % (net['name'], '; '.join(problems)),
                            dict(backend='nftables', family='inet', table='firewalld'), evidence,
                            ['firewall-cmd --zone=%s --change-interface=%s (and --permanent)' % (want, net['bridge']),
                             'restart the network so libvirt adds it again: virsh net-destroy %s; virsh net-start %s'
                             % (net['name'], net['name'])]))
            else:
                findings.append(_finding(
                    'firewalld-running', 'warning',
                    'a firewalld process runs in this network namespace but its zones could not be read (%s)'
                    % (fwd['state'] or 'no firewall-cmd'),
                    dict(backend='nftables', family='inet', table='firewalld'), evidence,
                    ['install firewall-cmd (package firewalld) or check the D-Bus system bus; then run again']))
        self.firewalld = firewalld

    def result(self):
        probe, nets, findings, host = self.probe, self.nets, self.findings, self.host
        backends, hooks, lv_rules, libvirt = self.backends, self.hooks, self.lv_rules, self.libvirt
        docker, firewalld, sysctl = self.docker, self.firewalld, self.facts['sysctl']
        lv_backend = libvirt['firewall_backend']
        order = {s: i for i, s in enumerate(SEVERITIES)}
        findings.sort(key=lambda f: order[f['severity']])
        counts = dict((s, len([f for f in findings if f['severity'] == s])) for s in SEVERITIES)
        with_rules = [b for b in ('iptables-legacy', 'iptables-nft', 'nftables') if backends[b]['holds_rules']]
        drops = ['%s %s %s %s' % (h['backend'], h['family'], h['table'], h['chain'])
                 for h in hooks.get('forward', []) if h['policy'] == 'drop']
        fwd_policies = ('policy drop in ' + ', '.join(drops)) if drops else 'every base chain accepts'
        if not hooks.get('forward'):
            fwd_policies = 'no base chain'
        summary = '%s: libvirt uses %s (rules in %s); backends with rules: %s; forward hook: %s; %s' % (
            host, lv_backend or 'unknown', ', '.join(lv_rules) or 'no rules found',
            ', '.join(with_rules) or 'no backend', fwd_policies,
            '; '.join('%s: %s' % (s, ', '.join(f['id'] for f in findings if f['severity'] == s))
                      for s in ('error', 'warning') if counts[s]) or 'no problem found')
        return dict(changed=False, summary=summary, findings=findings, counts=counts, backends=backends, libvirt=libvirt,
                    networks=nets, hooks=hooks, docker=docker, firewalld=firewalld,
                    sysctl=dict((k, v) for k, v in sysctl.items()),
                    iptables_default=probe.get('iptables_backend'))


def diagnose(facts, host, networks=None):
    """Facts from ``parse`` -> the module result (backends, libvirt, hooks, findings, summary)."""
    return _Diagnosis(facts, host, networks).run()


# ---------------------------------------------------------------------------------- module run
class FirewallTask:
    """Validate, read the host in one round trip, diagnose. Changes nothing on the host."""

    def __init__(self, module):
        self.module = module

    def run(self):
        m = self.module
        networks = m.params.get('networks') or []
        for name in networks:
            if not isinstance(name, str) or not NETWORK_NAME_RE.fullmatch(name):
                m.fail_json(msg='networks: %r is not a libvirt network name (1-64 ASCII letters, digits and _ . : + -); '
                                'list them with virsh net-list; nothing was run on the host' % (name,))
        res = m.run_script(PROBE_SCRIPT + FIREWALL_SCRIPT, what='Firewall read')
        try:
            facts = parse(res.stdout)
            return diagnose(facts, m.host, networks)
        except FirewallError as e:
            m.fail_json(msg=str(e))
