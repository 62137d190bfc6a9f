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
* ``RuleTask``: the whole module run shared by ``trace_rule`` and ``log_rule``.

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

from ansible_collections.virtops.virtnet.plugins.plugin_utils._action_module import RemoteCommandError
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._wire import parse
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._probe import (
    PROBE_SCRIPT, ProbeError, iptables_commands, parse_probe, probe,
)

__all__ = ['parse_save', 'Ruleset', 'SavedRule', 'Rule', 'RuleError', 'build_rules', 'plan', 'parse_tag',
           'render_batch', 'check_protocol', 'RuleTask', 'APPLY_SCRIPT', 'REMOVER_SCRIPT', 'parse_removers', 'TAG_PREFIX',
           'BACKEND_SPEC', 'MATCH_SPEC', 'LIMITS_SPEC', 'RULESET_SPEC']

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
MAX_REPLANS = 5  # reads and plans of one task when other runs keep changing the table
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
            if c not in ('PREROUTING', 'OUTPUT'):
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


# ---------------------------------------------------------------------------------- remote scripts
# Removes, at its expiry time, exactly the rules of ours that carry this expiry; runs detached.
#  $1 save  $2 restore  $3 wait flag or ''  $4 table  $5 name  $6 expiry epoch  $7 ack file
# It writes its pid to the ack file first (the apply script waits for that: proof it runs in its own
# session), sleeps until the expiry, then tries up to 10 times with backoff (1, 2, 4 ... 30 s, about
# 3 minutes in all) until a read of the table succeeds AND shows none of these rules.  A failed read
# (iptables-save exit status, e.g. a table in flux or a missing binary) is told apart from "nothing
# left", and a failed iptables-restore (xtables lock busy past its wait, a concurrent restore that
# changed the table: EAGAIN) is retried.  Every outcome is logged: syslog through logger, tag
# virtnet-expire, where a syslog daemon listens on /dev/log (logger exits 0 without one), else a line in /var/tmp/virtnet-expire.log
# ($VIRTNET_EXPIRE_LOG overrides the file: for tests).
REMOVER_SCRIPT = r'''
S=$1 R=$2 W=$3 T=$4 N=$5 E=$6
log() {
  m="host=$(uname -n 2>/dev/null) table=$T name=$N exp=$E save=$S: $*"
  if ! { [ -S /dev/log ] && command -v logger >/dev/null 2>&1 && logger -t "virtnet-expire[$$]" -p user.notice -- "$m" 2>/dev/null; }; then
    printf '%s virtnet-expire[%s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$" "$m" >> "${VIRTNET_EXPIRE_LOG:-/var/tmp/virtnet-expire.log}" 2>/dev/null
  fi
}
[ -n "$7" ] && echo "$$" > "$7"
now=$(date +%s); d=$((E - now)); [ "$d" -gt 0 ] && sleep "$d"
LK=/var/lock/virtnet-rules.lock; [ -d /var/lock ] && [ -w /var/lock ] || LK=/tmp/virtnet-rules.lock
locked() { if command -v flock >/dev/null 2>&1; then flock -w 30 "$LK" "$@"; else "$@"; fi; }
a=0; delay=1; removed=0; why=''
while [ $a -lt 10 ]; do
  a=$((a + 1))
  if ! out=$(locked "$S" -t "$T" 2>&1); then
    why="read failed: $(printf '%s' "$out" | head -n 2 | tr '\n' ' ')"
  else
    r=$(printf '%s\n' "$out" | grep -e '^-A ' | grep -F -e "virtnet:$N:" | grep -F -e ":exp=$E" | sed -e 's/^-A /-D /')
    if [ -z "$r" ]; then
      if [ $removed -gt 0 ]; then log "removed $removed rule(s) (attempt $a)"; else log "nothing left to remove (attempt $a)"; fi
      exit 0
    fi
    c=$(printf '%s\n' "$r" | grep -c .)
    if [ -n "$W" ]; then err=$(printf '*%s\n%s\nCOMMIT\n' "$T" "$r" | locked "$R" --noflush "$W" 2>&1)
    else err=$(printf '*%s\n%s\nCOMMIT\n' "$T" "$r" | locked "$R" --noflush 2>&1); fi
    if [ $? -eq 0 ]; then removed=$((removed + c)); why=''; continue; fi
    why="$R failed: $(printf '%s' "$err" | head -n 2 | tr '\n' ' ')"
  fi
  log "attempt $a: $why; retrying in ${delay}s"
  sleep $delay
  delay=$((delay * 2)); [ $delay -gt 30 ] && delay=30
done
log "GAVE UP after $a attempts ($why): rules tagged virtnet:$N: with exp=$E may be left;" \
    "they no longer match (-m time --datestop) and the next trace_rule/log_rule run on this host purges them"
exit 1
'''

# Appended to the probe: $1 table, $2 backend (auto|legacy|nft), then iptables/ip6tables.  A failed
# read prints no section (the caller then reads again with SAVE_SCRIPT, which reports the error).
PROBE_SAVE_TAIL = r'''
t=$1; b=$2; shift 2
if [ "$b" = auto ]; then case "$(iptables --version 2>/dev/null)" in *nf_tables*) b=nft ;; *) b=legacy ;; esac; fi
for base in "$@"; do
  if [ "$b" = nft ] && command -v "$base-nft-save" >/dev/null 2>&1; then s=$base-nft-save
  elif [ "$b" = legacy ] && command -v "$base-legacy-save" >/dev/null 2>&1; then s=$base-legacy-save
  else s=$base-save; fi
  if out=$("$s" -t "$t" 2>/dev/null); then printf '@@save %s\n%s\n' "$s" "$out"; fi
done
printf '@@end\n'
'''

# Reads the tables: $1 table, then save commands, each printed as a section.
SAVE_SCRIPT = r'''
t=$1; shift
for s in "$@"; do
  printf '@@save %s\n' "$s"
  "$s" -t "$t" || { printf 'cannot read table %s with %s\n' "$t" "$s" >&2; exit 30; }
done
printf '@@end\n'
'''

# Applies up to two batches (ipv4, ipv6).  With two, both are tried with --test first, so an
# error in the second leaves the first untouched.  Then starts the detached remover(s), waits (5 s
# at most) for each to confirm it runs, prints "@@remover <save> <pid>" (pid '-' when it did not
# confirm), and prints the tables again.
#  $1 restore1 $2 wait1 $3 save1 $4 batch1   $5 restore2 $6 wait2 $7 save2 $8 batch2
#  $9 table  ${10} remover script ('' = none)  ${11} name  ${12} expiry epoch
#  ${13} ${14} fingerprints: the sorted tags of every rule of ours in the table as the plan read it
# Runs of this collection on one host take turns (flock on /var/lock/virtnet-rules.lock, 30 s at most,
# where flock exists), and a table whose tags differ from the fingerprint (another run or a remover
# changed it since the plan's read) is left alone: exit 40, the controller reads and plans again.
# SIGHUP is ignored before the remover is forked: ansible's ssh runs this under a pty (-tt), and
# when the session ends the kernel sends SIGHUP to its foreground process group, which kills a
# child that has not reached setsid() yet (the cause of removers lost now and then under load).
APPLY_SCRIPT = r'''
rs() { if [ -n "$2" ]; then printf '%s\n' "$4" | "$1" --noflush "$2" $3
       else printf '%s\n' "$4" | "$1" --noflush $3; fi; }
R1=$1 W1=$2 S1=$3 B1=$4 R2=$5 W2=$6 S2=$7 B2=$8 T=$9; shift 9; RM=$1 NAME=$2 EXP=$3 FP1=$4 FP2=$5
LK=/var/lock/virtnet-rules.lock; [ -d /var/lock ] && [ -w /var/lock ] || LK=/tmp/virtnet-rules.lock
if command -v flock >/dev/null 2>&1; then
  exec 8>>"$LK" && flock -w 30 8 || { echo "another run held $LK for more than 30 s (nothing applied)" >&2; exit 24; }
fi
fp() { "$1" -t "$T" 2>/dev/null | grep -o 'virtnet:[A-Za-z0-9_.-]*:[0-9a-f]\{8\}\(:exp=[0-9]*\)\{0,1\}' | LC_ALL=C sort; }
if { [ -n "$B1" ] && [ "$(fp "$S1")" != "$FP1" ]; } || { [ -n "$B2" ] && [ "$(fp "$S2")" != "$FP2" ]; }; then
  echo "table $T changed since it was read (nothing applied)" >&2; exit 40
fi
if [ -n "$B1" ] && [ -n "$B2" ]; then
  rs "$R1" "$W1" --test "$B1" || { echo "$R1 rejected the batch (nothing applied)" >&2; exit 20; }
  rs "$R2" "$W2" --test "$B2" || { echo "$R2 rejected the batch (nothing applied)" >&2; exit 21; }
fi
if [ -n "$B1" ]; then rs "$R1" "$W1" "" "$B1" || { echo "$R1 rejected the batch (nothing applied)" >&2; exit 22; }; fi
if [ -n "$B2" ]; then rs "$R2" "$W2" "" "$B2" || { echo "$R2 rejected the batch" >&2; exit 23; }; fi
if [ -n "$RM" ]; then
  trap '' HUP
  for g in 1 2; do
    if [ $g = 1 ]; then s=$S1 r=$R1 w=$W1 b=$B1; else s=$S2 r=$R2 w=$W2 b=$B2; fi
    [ -n "$b" ] || continue
    ack=$(mktemp 2>/dev/null) || { ack=/tmp/virtnet-expire.$$.$g; : > "$ack"; }
    if command -v setsid >/dev/null 2>&1; then
      setsid sh -c "$RM" virtnet-expire "$s" "$r" "$w" "$T" "$NAME" "$EXP" "$ack" </dev/null >/dev/null 2>&1 8>&- &
    else
      sh -c "$RM" virtnet-expire "$s" "$r" "$w" "$T" "$NAME" "$EXP" "$ack" </dev/null >/dev/null 2>&1 8>&- &
    fi
    i=0; while [ ! -s "$ack" ] && [ $i -lt 50 ]; do sleep 0.1 2>/dev/null || sleep 1; i=$((i + 1)); done
    pid=$(cat "$ack" 2>/dev/null); rm -f "$ack"
    printf '@@remover %s %s\n' "$s" "${pid:--}"
  done
fi
for s in "$S1" "$S2"; do
  [ -n "$s" ] || continue
  printf '@@save %s\n' "$s"; "$s" -t "$T" || exit 31
done
printf '@@end\n'
'''


def fingerprint(ruleset, table):
    """The tags of every rule of ours in ``table``, sorted, one per line: what the apply script compares with
    the table just before it applies (an empty string for none)."""
    return '\n'.join(sorted(r.comment for r in ruleset.ours(table)))


def parse_removers(text):
    """``@@remover <save> <pid>`` sections of the apply script -> {save command: pid or None}."""
    out = {}
    for section in parse(text):
        parts = (section.arg or '').split() if section.name == 'remover' else []
        if len(parts) == 2:
            out[parts[0]] = int(parts[1]) if parts[1].isdigit() else None
    return out


def saved_tables(text):
    """``@@save <command>`` sections (the table as that save command printed it) -> {command: text}."""
    return dict((arg.strip(), '\n'.join(section.lines) + '\n') for arg, section in parse(text).by_arg('save').items()
                if arg)


# ---------------------------------------------------------------------------------- module run
class RuleTask:
    """The run shared by trace_rule and log_rule: probe, read, plan, apply, report."""

    def __init__(self, module, kind):
        self.module = module
        self.kind = kind
        self.params = module.params

    def run(self):
        m = self.module
        p = self.params
        try:
            rules = build_rules(self.kind, p)
        except RuleError as e:
            m.fail_json(msg=str(e))
        table = 'raw' if self.kind == 'trace' else p['table']
        families = ['ipv4', 'ipv6'] if p['family'] == 'both' else [p['family']]
        early = {}
        if 'probe' not in m.cache:
            # one round trip: the probe, then the table read with the save command the shell picks
            # the same way iptables_commands() does; checked below, re-read if they disagree
            bases = ['iptables' if f == 'ipv4' else 'ip6tables' for f in families]
            res = m.run_script(PROBE_SCRIPT + PROBE_SAVE_TAIL, [table, p['backend']] + bases, what='Host probe')
            try:
                m.cache['probe'] = parse_probe(res.stdout)
            except ProbeError as e:
                m.fail_json(msg='%s; stdout=%r stderr=%r' % (e, res.stdout[-500:], res.stderr[-500:]))
            early = saved_tables(res.stdout)
        facts = probe(m)
        cmds = {}
        try:
            for family in families:
                cmds[family] = iptables_commands(facts, family, p['backend'])
        except ProbeError as e:
            m.fail_json(msg='%s (host %s, iptables %s)' % (e, m.host, facts.get('iptables_version')))
        if p.get('expires') and p['state'] == 'present' and not facts.get('time_match'):
            m.warn('iptables on this host has no "time" match: expiring rules rely on the detached remover only')
        saves = [cmds[f]['save'][0] for f in families]
        if all(s in early for s in saves):
            sections = early
        else:
            res = m.run_script(SAVE_SCRIPT, [table] + saves, what='Reading table %s' % table)
            sections = saved_tables(res.stdout)
        for attempt in range(1, MAX_REPLANS + 1):
            rulesets = {f: parse_save(sections.get(cmds[f]['save'][0], '')) for f in families}
            if self.kind == 'log' and p['state'] == 'present':
                for f in families:
                    if not rulesets[f].has_chain(table, p['chain']):
                        m.fail_json(msg='chain=%r: no such chain in table %s (%s); create it first or use a built-in '
                                        'chain' % (p['chain'], table, f))
            now = facts.get('epoch') or int(time.time())
            expires = p.get('expires') if p['state'] == 'present' else None
            try:
                plans = plan(rules, rulesets, p['name'], p['state'], table, now, expires,
                             time_match=bool(facts.get('time_match')))
            except RuleError as e:
                m.fail_json(msg=str(e))
            changed = any(fp.batch for fp in plans.values())
            before = []
            for f in families:
                before += ['%s: %s' % (f, r.line) for r in rulesets[f].ours(table, p['name'])]
            result = dict(changed=changed, backend=cmds[families[0]]['backend'], table=table,
                          purged=[r.line for fp in plans.values() for r in fp.purged],
                          batch={f: plans[f].batch for f in families if plans[f].batch},
                          probe=facts)
            after_sets = rulesets
            if changed and not m.check_mode:
                args = []
                for i in range(2):
                    if i < len(families):
                        c = cmds[families[i]]
                        args += [c['restore'][0], '-w' if c['wait'] else '', c['save'][0], render_batch(plans[families[i]])]
                    else:
                        args += ['', '', '', '']
                want_remover = bool(expires) and any(plans[f].add for f in families)
                args += [table, REMOVER_SCRIPT if want_remover else '', p['name'], str(now + expires) if expires else '']
                args += [fingerprint(rulesets[families[i]], table) if i < len(families) else '' for i in range(2)]
                try:
                    res = m.run_script(APPLY_SCRIPT, args, what='iptables-restore of the %s table' % table, ok_rcs=(0, 40))
                except RemoteCommandError as e:
                    hint = ''
                    if expires and facts.get('time_match'):
                        hint = ' (rules with expires use "-m time": does kernel %s have xt_time?)' % facts.get('kernel')
                    m.fail_json(msg=e.message + hint, rc=e.rc, stdout=e.stdout, stderr=e.stderr,
                                batch=result['batch'])
                if res.rc == 40:  # another run (or a remover) changed our rules since the read: read, plan again
                    if attempt >= MAX_REPLANS:
                        m.fail_json(msg='the %s table kept changing under this task (%d reads): another run of this '
                                        'collection on the host? Nothing was applied; run it again' % (table, attempt),
                                    batch=result['batch'])
                    res = m.run_script(SAVE_SCRIPT, [table] + saves, what='Reading table %s' % table)
                    sections = saved_tables(res.stdout)
                    continue
                result['replans'] = attempt - 1
                sections = saved_tables(res.stdout)
                after_sets = {f: parse_save(sections.get(cmds[f]['save'][0], '')) for f in families}
                rules_after = []
                for f in families:
                    rules_after += [r.line for r in after_sets[f].ours(table, p['name'])]
                after = []
                for f in families:
                    after += ['%s: %s' % (f, r.line) for r in after_sets[f].ours(table, p['name'])]
                if p['state'] == 'present':
                    missing = [r for r in rules if r.hash not in set(
                        s.tag['hash'] for s in after_sets[r.family].ours(table, p['name']))]
                    if missing:
                        m.fail_json(msg='iptables-restore succeeded but %d rule(s) are not in iptables-save afterwards'
                                        % len(missing), batch=result['batch'])
                if want_remover:
                    result['expires_at'] = now + expires
                    started = parse_removers(res.stdout)
                    result['removers'] = dict((f, started.get(cmds[f]['save'][0])) for f in families
                                              if plans[f].add)
                    lost = sorted(f for f, pid in result['removers'].items() if not pid)
                    if lost:
                        m.warn('the detached remover for %s did not confirm it started within 5 s: the rules stop '
                               'matching at expires_at (-m time) and the next run on this host purges them'
                               % ', '.join(lost))
            else:
                rules_after = []
                after = []
                for f in families:
                    fp = plans[f]
                    deleted = set(id(r) for r in fp.delete)
                    kept = [r for r in rulesets[f].ours(table, p['name']) if id(r) not in deleted]
                    rules_after += [r.line for r in kept] + list(fp.preview)
                    after += ['%s: %s' % (f, r.line) for r in kept] + ['%s: %s' % (f, x) for x in fp.preview]
                if expires and changed:
                    result['expires_at'] = now + expires
            break
        result['rules'] = rules_after
        if m.diff_mode:
            result['diff'] = dict(before='\n'.join(before) + ('\n' if before else ''),
                                  after='\n'.join(after) + ('\n' if after else ''),
                                  before_header='%s rules tagged virtnet:%s (table %s)' % (self.kind, p['name'], table),
                                  after_header='%s rules tagged virtnet:%s (table %s)' % (self.kind, p['name'], table))
        return result
