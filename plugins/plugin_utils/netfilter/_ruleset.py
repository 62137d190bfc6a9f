# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Ruleset model for tagged TRACE/LOG rules (controller side).

THIS IS PRIVATE TO virtops.virtnet; the API may change without notice outside the collection.

* ``parse_save(text) -> Ruleset``: ``iptables-save`` output -> tables, chains, policies, rules.
* ``build_rules(kind, params) -> [Rule]``: validated parameters -> the rules we want (raises
  ``RuleError`` naming the parameter and the fix; nothing has been touched at that point).
* ``plan(...) -> Plan``: compare with what the host has (found by comment tag
  ``virtnet:<name>:<hash>[:exp=<epoch>]``) and render ONE ``iptables-restore --noflush`` batch
  per family (``-D`` lines of our old rules, then the new ones).

The task that applies a plan on a host (its scripts and the module run of ``trace_rule`` and ``log_rule``)
is ``_rule_task.py``.

Identity of a rule = ``<name>`` plus a hash of everything that makes the rule (family, table,
chain, matches, rate, target, whether it expires).  The hash is in the tag, so the comparison
never depends on how a given iptables version prints a rule back.  The expiry time is not
in the hash: re-running a task with ``expires`` keeps a rule that has not expired yet.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shlex
import time

__all__ = ['parse_save', 'Ruleset', 'SavedRule', 'Rule', 'RuleError', 'build_rules', 'plan', 'FamilyPlan', 'parse_tag',
           'render_batch', 'check_protocol', 'TAG_PREFIX', 'XTABLES_TABLES', 'BACKEND_SPEC', 'MATCH_SPEC', 'LIMITS_SPEC', 'RULESET_SPEC',
           'LOG_LEVELS', 'TABLES', 'TRACE_CHAINS']

# Argument specs shared by the netfilter action plugins; their documentation is the doc fragment
# virtops.virtnet.netfilter (sub-fragments MATCH, LIMITS, BACKEND).
BACKEND_SPEC = dict(
    backend=dict(type='str', default='auto', choices=['auto', 'legacy', 'nft']),
)
MATCH_SPEC = dict(
    protocol=dict(type='str'),
    source=dict(type='str'),
    destination=dict(type='str'),
    source_port=dict(type='str'),
    destination_port=dict(type='list', elements='str'),
    in_interface=dict(type='str'),
    out_interface=dict(type='str'),
    extra=dict(type='list', elements='str'),
)
LIMITS_SPEC = dict(
    rate=dict(type='int'),
    expires=dict(type='int'),
)
# Options of every tagged rule set (trace_rule, log_rule).
RULESET_SPEC = dict(
    name=dict(type='str', required=True),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    family=dict(type='str', default='ipv4', choices=['ipv4', 'ipv6', 'both']),
    **MATCH_SPEC, **LIMITS_SPEC, **BACKEND_SPEC
)

TAG_PREFIX = 'virtnet:'
NAME_RE = re.compile(r'^[A-Za-z0-9_.-]{1,64}$')
TAG_RE = re.compile(r'^virtnet:([A-Za-z0-9_.-]{1,64}):([0-9a-f]{8})(?::exp=(\d+))?$')
IFACE_RE = re.compile(r'^[A-Za-z0-9_.@:+-]{1,15}$')
CHAIN_RE = re.compile(r'^[A-Za-z0-9_.-]{1,28}$')
EXTRA_RE = re.compile(r'^[A-Za-z0-9_.,:/=+@%!-]+$')
PREFIX_RE = re.compile(r'^[A-Za-z0-9 _.:,=/#@+\[\]-]*$')
PROTOCOLS = ('tcp', 'udp', 'udplite', 'icmp', 'icmpv6', 'ipv6-icmp', 'esp', 'ah', 'sctp', 'dccp', 'gre', 'all')
PORT_PROTOCOLS = ('tcp', 'udp', 'udplite', 'sctp', 'dccp', '6', '17', '136', '132', '33')
FORBIDDEN_EXTRA = {
    '-A', '--append', '-D', '--delete', '-I', '--insert', '-R', '--replace', '-F', '--flush', '-Z', '--zero',
    '-N', '--new-chain', '-X', '--delete-chain', '-P', '--policy', '-E', '--rename-chain', '-L', '--list',
    '-S', '--list-rules', '-t', '--table', '-j', '--jump', '-g', '--goto', '--comment', '-C', '--check',
    '-h', '--help', '-V', '--version', '--modprobe', '-w', '--wait', '-W', '--wait-interval',
}
LOG_LEVELS = {'emerg': 0, 'alert': 1, 'crit': 2, 'error': 3, 'warning': 4, 'notice': 5, 'info': 6, 'debug': 7}
TABLES = ('filter', 'nat', 'mangle', 'raw', 'security')
# Tables iptables-nft creates (``nft list tables`` names them ``<family> <table>``; ``broute`` is ebtables'); any
# other table is a native nftables one (libvirt's ``libvirt_network`` with firewall_backend=nftables, firewalld, ...).
XTABLES_TABLES = frozenset(TABLES + ('broute',))
TRACE_CHAINS = ('PREROUTING', 'OUTPUT')   # the raw table's chains: where TRACE can go
MAX_COMMENT = 256


class RuleError(Exception):
    """Invalid parameters: the message names the parameter and the fix."""


# ---------------------------------------------------------------------------------- model
def parse_tag(comment):
    """``virtnet:<name>:<hash>[:exp=<epoch>]`` -> dict(name, hash, exp) or None."""
    m = TAG_RE.match(comment or '')
    if not m:
        return None
    return dict(name=m.group(1), hash=m.group(2), exp=int(m.group(3)) if m.group(3) else None)


class SavedRule:
    """One ``-A`` line of ``iptables-save``."""

    def __init__(self, table, chain, line, tokens):
        self.table = table
        self.chain = chain
        self.line = line
        self.tokens = tokens
        self.comment = None
        for i, tok in enumerate(tokens[:-1]):
            if tok == '--comment':
                self.comment = tokens[i + 1]
        self.tag = parse_tag(self.comment)

    @property
    def delete_line(self):
        return '-D' + self.line[2:]

    def __repr__(self):
        return 'SavedRule(%r)' % self.line


class Ruleset:
    """Tables -> chains (with policies) and rules, in file order."""

    def __init__(self):
        self.tables = {}   # table -> dict(chains={name: policy or '-'}, rules=[SavedRule])

    def table(self, name):
        return self.tables.setdefault(name, dict(chains={}, rules=[]))

    def rules(self, table=None):
        for tname, t in self.tables.items():
            if table is None or table == tname:
                yield from t['rules']

    def ours(self, table=None, name=None):
        """Rules carrying our tag (all of ours when ``name`` is None or 'all')."""
        return [r for r in self.rules(table)
                if r.tag is not None and (name in (None, 'all') or r.tag['name'] == name)]

    def others(self, table=None):
        return [r.line for r in self.rules(table) if r.tag is None]

    def has_chain(self, table, chain):
        return chain in self.tables.get(table, {}).get('chains', {})


def _split(line):
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def parse_save(text):
    """Parse ``iptables-save`` output (legacy or nft flavour, 1.4.7 to 1.8.x)."""
    rs = Ruleset()
    current = None
    for raw in (text or '').splitlines():
        line = raw.strip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('*'):
            current = rs.table(line[1:].strip())
            current_name = line[1:].strip()
        elif current is None:
            continue
        elif line.startswith(':'):
            parts = line[1:].split()
            if parts:
                current['chains'][parts[0]] = parts[1] if len(parts) > 1 else '-'
        elif line.startswith('-A '):
            tokens = _split(line)
            chain = tokens[1] if len(tokens) > 1 else ''
            current['rules'].append(SavedRule(current_name, chain, line, tokens))
        elif line == 'COMMIT':
            current = None
    return rs


# ---------------------------------------------------------------------------------- validation
def _fail(param, value, why, fix):
    raise RuleError('%s=%r: %s; %s' % (param, value, why, fix))


def _check_name(name, allow_all):
    if name == 'all' and not allow_all:
        raise RuleError("name='all' is reserved for state=absent (removes every rule of ours); pick another name")
    if not NAME_RE.match(name or ''):
        _fail('name', name, 'must be 1-64 characters of letters, digits, "_", "." and "-"', 'rename the rule set')


def _address(param, value, families):
    if value is None:
        return None
    try:
        net = ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError:
        _fail(param, value, 'is not an IP address or CIDR network', 'use e.g. 192.168.122.0/24 or 2001:db8::/32')
    fam = 'ipv4' if net.version == 4 else 'ipv6'
    if fam not in families or len(families) > 1:
        family = families[0] if len(families) == 1 else 'both'
        _fail(param, value, 'is an %s address but family is %s' % (fam.upper().replace('V', 'v'), family),
              'set family: %s' % fam)
    return str(net)


def _port(param, value):
    text = str(value).strip()
    m = re.match(r'^(\d{1,5})(?:[:-](\d{1,5}))?$', text)
    if not m:
        _fail(param, value, 'is not a port or a port range', 'use a number 1-65535 or a range like 8000:8100')
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else None
    for p in (lo, hi):
        if p is not None and not 1 <= p <= 65535:
            _fail(param, value, 'port %d is out of range' % p, 'use ports 1-65535')
    if hi is not None and hi < lo:
        _fail(param, value, 'range is reversed', 'write it low:high (%d:%d)' % (hi, lo))
    return str(lo) if hi is None or hi == lo else '%d:%d' % (lo, hi)


def check_protocol(value, family):
    """A protocol name or number for ``family`` (None: either) -> its iptables word; RuleError if invalid."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text.isdigit():
        if not 0 <= int(text) <= 255:
            _fail('protocol', value, 'protocol numbers go from 0 to 255', 'use a name like tcp or a number 0-255')
        return text
    if text not in PROTOCOLS:
        _fail('protocol', value, 'unknown protocol', 'use one of %s or a number 0-255' % ', '.join(PROTOCOLS))
    if family == 'ipv6' and text == 'icmp':
        _fail('protocol', value, 'icmp does not exist for IPv6', 'use icmpv6 (or family: ipv4)')
    if family == 'ipv4' and text in ('icmpv6', 'ipv6-icmp'):
        _fail('protocol', value, '%s does not exist for IPv4' % text, 'use icmp (or family: ipv6)')
    return text


def _iface(param, value):
    if value is None:
        return None
    text = str(value)
    if len(text) > 15:
        _fail(param, value, 'interface names are at most 15 characters', 'use the real interface name (ip link)')
    if not IFACE_RE.match(text) or text in ('.', '..'):
        _fail(param, value, 'interface names cannot contain "/", whitespace, quotes or shell characters',
              'use the real interface name (ip link), "+" as a wildcard suffix')
    return text


def _extra(tokens):
    out = []
    for tok in tokens or []:
        tok = str(tok)
        if not EXTRA_RE.match(tok):
            _fail('extra', tok, 'tokens may only contain letters, digits and _ . , : / = + @ % ! -',
                  'pass each iptables word as one list item, with no quotes, spaces or shell characters')
        if tok in FORBIDDEN_EXTRA:
            _fail('extra', tok, 'commands, targets, tables and comments are set by the module',
                  'use only match options in extra (e.g. ["-m", "conntrack", "--ctstate", "NEW"])')
        out.append(tok)
    return out


class Rule:
    """One rule we want: family, table, chain, match words, target words, tag."""

    def __init__(self, name, family, table, chain, matches, target, rate=None, expiring=False, position='insert'):
        self.name = name
        self.family = family
        self.table = table
        self.chain = chain
        self.matches = list(matches)
        self.target = list(target)
        self.rate = rate
        self.expiring = expiring
        self.position = position
        ident = '\0'.join([family, table, chain] + self.matches + ['|rate=%s' % rate, '|exp=%s' % bool(expiring)]
                          + self.target)
        self.hash = hashlib.sha1(ident.encode('utf-8')).hexdigest()[:8]

    def tag(self, exp=None):
        tag = '%s%s:%s' % (TAG_PREFIX, self.name, self.hash)
        if exp is not None:
            tag += ':exp=%d' % exp
        return tag

    def words(self, exp=None, time_match=True):
        """The rule's words after ``-A/-I CHAIN``."""
        words = list(self.matches) + ['-m', 'comment', '--comment', self.tag(exp)]
        if self.rate:
            words += ['-m', 'limit', '--limit', '%d/second' % self.rate, '--limit-burst', str(max(5, self.rate))]
        if exp is not None and time_match:
            words += ['-m', 'time', '--datestop', time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(exp))]
        return words + list(self.target)

    def line(self, exp=None, op='-A', index=None, time_match=True):
        head = [op, self.chain] + ([str(index)] if index is not None else [])
        return ' '.join(_restore_word(w) for w in head + self.words(exp, time_match))


def _restore_word(word):
    """Quote a word for an iptables-restore line (double quotes; values are validated)."""
    if word == '' or re.search(r'\s', word):
        return '"%s"' % word
    return word


def build_rules(kind, params):
    """Validate ``params`` and return the list of ``Rule`` we want (empty for state=absent)."""
    _check_name(params['name'], allow_all=params['state'] == 'absent')
    if params['state'] == 'absent':
        return []
    families = ['ipv4', 'ipv6'] if params['family'] == 'both' else [params['family']]
    src = _address('source', params.get('source'), families)
    dst = _address('destination', params.get('destination'), families)
    dports = [_port('destination_port', p) for p in (params.get('destination_port') or [])]
    sport = _port('source_port', params['source_port']) if params.get('source_port') is not None else None
    in_if = _iface('in_interface', params.get('in_interface'))
    out_if = _iface('out_interface', params.get('out_interface'))
    extra = _extra(params.get('extra'))
    rate = params.get('rate')
    if rate is not None and not 1 <= rate <= 10000:
        _fail('rate', rate, 'must be between 1 and 10000 packets per second', 'lower the rate')
    expires = params.get('expires')
    if expires is not None and not 1 <= expires <= 30 * 86400:
        _fail('expires', expires, 'must be between 1 second and 30 days', 'pick a shorter lifetime')

    if kind == 'trace':
        table = 'raw'
        chains = params.get('chains') or ['PREROUTING']
        for c in chains:
            if c not in TRACE_CHAINS:
                _fail('chains', c, 'TRACE works only in the raw table chains PREROUTING and OUTPUT',
                      'use chains: [PREROUTING] and/or [OUTPUT]')
        target = ['-j', 'TRACE']
        position = 'insert'
    else:
        table = params['table']
        chain = params['chain']
        if not CHAIN_RE.match(chain or ''):
            _fail('chain', chain, 'chain names are 1-28 letters, digits, "_", "." or "-"', 'use an existing chain')
        chains = [chain]
        prefix = params.get('prefix')
        target = ['-j', 'LOG']
        if prefix is not None:
            if len(prefix) > 29:
                _fail('prefix', prefix, 'is %d characters, the kernel allows at most 29' % len(prefix),
                      'shorten it')
            if not PREFIX_RE.match(prefix):
                _fail('prefix', prefix, 'may not contain quotes, backslashes or shell characters',
                      'use letters, digits, spaces and _ . : , = / # @ + [ ] -')
            if prefix:
                target += ['--log-prefix', prefix]
        level = str(params.get('level') or 'warning')
        level = str(LOG_LEVELS.get(level, level))
        if not level.isdigit() or not 0 <= int(level) <= 7:
            _fail('level', params.get('level'), 'unknown log level', 'use 0-7 or %s' % ', '.join(LOG_LEVELS))
        target += ['--log-level', level]
        position = params.get('position') or 'append'

    rules = []
    for family in families:
        proto = check_protocol(params.get('protocol'), family)
        if (dports or sport) and (proto is None or proto not in PORT_PROTOCOLS):
            _fail('destination_port' if dports else 'source_port', dports or sport,
                  'ports need protocol tcp, udp, udplite, sctp or dccp', 'set protocol: tcp (or udp...)')
        for chain in chains:
            if in_if and chain in ('OUTPUT', 'POSTROUTING'):
                _fail('in_interface', in_if, 'chain %s has no input interface' % chain,
                      'use out_interface, or a PREROUTING/INPUT/FORWARD chain')
            if out_if and chain in ('PREROUTING', 'INPUT'):
                _fail('out_interface', out_if, 'chain %s has no output interface yet' % chain,
                      'use in_interface, or an OUTPUT/FORWARD/POSTROUTING chain')
            base = []
            if src:
                base += ['-s', src]
            if dst:
                base += ['-d', dst]
            if in_if:
                base += ['-i', in_if]
            if out_if:
                base += ['-o', out_if]
            if proto:
                base += ['-p', proto]
            if sport or dports:
                base += ['-m', proto if not proto.isdigit() else 'tcp']
            if sport:
                base += ['--sport', sport]
            for dport in dports or [None]:
                matches = list(base)
                if dport:
                    matches += ['--dport', dport]
                matches += extra
                rules.append(Rule(params['name'], family, table, chain, matches, target, rate=rate,
                                  expiring=expires is not None, position=position))
    seen = set()
    unique = []
    for r in rules:
        if r.hash not in seen:
            seen.add(r.hash)
            unique.append(r)
    return unique


# ---------------------------------------------------------------------------------- plan
class FamilyPlan:
    def __init__(self, family, table):
        self.family = family
        self.table = table
        self.delete = []     # SavedRule
        self.add = []        # rendered lines for the batch (-I CHAIN n / -A CHAIN)
        self.preview = []    # the same rules as iptables-save would print them (-A CHAIN)
        self.keep = []       # SavedRule
        self.purged = []     # SavedRule (expired, any name)

    @property
    def batch(self):
        if not self.delete and not self.add:
            return []
        return ['*%s' % self.table] + [r.delete_line for r in self.delete] + self.add + ['COMMIT']


def plan(rules, rulesets, name, state, table, now, expires=None, time_match=True):
    """Compare wanted ``rules`` with ``rulesets`` ({family: Ruleset}) -> {family: FamilyPlan}.

    ``time_match=False`` (iptables without ``-m time``): expiring rules rely on the remover only.
    """
    exp = now + expires if expires else None
    plans = {}
    for family, rs in rulesets.items():
        fp = FamilyPlan(family, table)
        wanted = [r for r in rules if r.family == family]
        wanted_hashes = set(r.hash for r in wanted)
        kept_hashes = set()
        for saved in rs.ours(table):
            expired = saved.tag['exp'] is not None and saved.tag['exp'] <= now
            mine = name == 'all' or saved.tag['name'] == name
            if expired:
                fp.purged.append(saved)
                fp.delete.append(saved)
            elif not mine:
                continue
            elif state == 'present' and saved.tag['hash'] in wanted_hashes and saved.tag['hash'] not in kept_hashes:
                kept_hashes.add(saved.tag['hash'])
                fp.keep.append(saved)
            else:
                fp.delete.append(saved)
        index = {}
        for r in wanted:
            if r.hash in kept_hashes:
                continue
            if r.position == 'insert':
                index[r.chain] = index.get(r.chain, 0) + 1
                fp.add.append(r.line(exp, op='-I', index=index[r.chain], time_match=time_match))
            else:
                fp.add.append(r.line(exp, op='-A', time_match=time_match))
            fp.preview.append(r.line(exp, op='-A', time_match=time_match))
            if len(r.tag(exp)) > MAX_COMMENT:
                raise RuleError('name=%r: the rule tag would exceed %d characters' % (name, MAX_COMMENT))
        plans[family] = fp
    return plans


def render_batch(fp):
    return '\n'.join(fp.batch)
