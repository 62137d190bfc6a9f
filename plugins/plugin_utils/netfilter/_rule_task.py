# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The task that applies tagged TRACE/LOG rules on a host (controller side, POSIX sh on the host).

THIS IS PRIVATE TO virtops.virtnet; the API may change without notice outside the collection.

``RuleTask(module, kind).run()`` is the whole module run shared by ``trace_rule`` and ``log_rule``:
probe the host and read the table (one round trip), plan with the ruleset model (``_ruleset``),
apply every family's batch with one ``APPLY_SCRIPT`` run (``iptables-restore --noflush``, the
detached ``REMOVER_SCRIPT`` for expiring rules), read back and report.  The scripts print
``@@save`` / ``@@remover`` sections, read with ``_wire``.
"""

from __future__ import annotations

import time

from ansible_collections.virtops.virtnet.plugins.plugin_utils._action_module import RemoteCommandError
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _wire as wire
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._probe import (
    PROBE_SCRIPT, ProbeError, iptables_commands, parse_probe, probe,
)
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._ruleset import (
    RuleError, build_rules, parse_save, plan, render_batch,
)

__all__ = ['RuleTask', 'APPLY_SCRIPT', 'REMOVER_SCRIPT', 'SAVE_SCRIPT', 'PROBE_SAVE_TAIL', 'fingerprint',
           'saved_tables', 'removers']

MAX_REPLANS = 5  # reads and plans of one task when other runs keep changing the table


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


def removers(out):
    """The ``@@remover <save> <pid>`` sections of the apply script's output (``_wire.Sections``)
    -> {save command: pid or None}."""
    found = {}
    for section in out:
        parts = (section.arg or '').split() if section.name == 'remover' else []
        if len(parts) == 2:
            found[parts[0]] = int(parts[1]) if parts[1].isdigit() else None
    return found


def saved_tables(out):
    """The ``@@save <command>`` sections of a script's output (``_wire.Sections``) -> {command: the table
    as that save command printed it}."""
    return dict((arg.strip(), '\n'.join(section.lines) + '\n') for arg, section in out.by_arg('save').items()
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
            res, out = wire.run(m, PROBE_SCRIPT + PROBE_SAVE_TAIL, [table, p['backend']] + bases, what='Host probe')
            try:
                m.cache['probe'] = parse_probe(res.stdout)
            except ProbeError as e:
                m.fail_json(msg='%s; stdout=%r stderr=%r' % (e, res.stdout[-500:], res.stderr[-500:]))
            early = saved_tables(out)
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
            sections = saved_tables(wire.run(m, SAVE_SCRIPT, [table] + saves, what='Reading table %s' % table)[1])
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
                    res, out = wire.run(m, APPLY_SCRIPT, args, what='iptables-restore of the %s table' % table,
                                        ok_rcs=(0, 40))
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
                    sections = saved_tables(wire.run(m, SAVE_SCRIPT, [table] + saves, what='Reading table %s' % table)[1])
                    continue
                result['replans'] = attempt - 1
                sections = saved_tables(out)
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
                    started = removers(out)
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
