# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""nf_log matrix and plan (controller side).

THIS IS PRIVATE TO virtops.virtnet; the API may change without notice outside the collection.

Which kernel module provides the logger that TRACE and LOG use, and which name the
``net.netfilter.nf_log.<pf>`` sysctl takes, depends on the kernel (and on RHEL backports):

=================================  ======================  ============================
kernel                             module (ipv4 / ipv6)    sysctl value (ipv4 / ipv6)
=================================  ======================  ============================
2.6.32 (EL6) and anything < 3.17   ipt_LOG / ip6t_LOG      ipt_LOG / ip6t_LOG
EL7 (3.10 with backports), 3.17+   nf_log_ipv4 / _ipv6     nf_log_ipv4 / nf_log_ipv6
5.13 and later (EL9, Debian 12)    nf_log_syslog           nf_log_ipv4 / nf_log_ipv6
=================================  ======================  ============================

A logger already registered for that protocol family (listed in
``/proc/net/netfilter/nf_log``, e.g. built into the kernel) needs no modprobe.  The sysctl
must be written after the module is loaded: an unregistered name fails with ENOENT.

API
---
``FAMILIES``                               family -> protocol family number
``choose(facts, family) -> dict``          module, logger, why, needs_modprobe, pf
``plan(facts, params, files) -> Plan``     everything to do, computed before anything runs
``APPLY_SCRIPT``                           constant sh interpreter of the plan's operations
``READ_FILES_SCRIPT``                      prints the persistent files we manage
"""

from __future__ import annotations

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._probe import READ_BINDINGS, parse_bindings, probe
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _wire as wire

__all__ = ['FAMILIES', 'choose', 'plan', 'read_files', 'APPLY_SCRIPT', 'READ_FILES_SCRIPT', 'NfLogError',
           'persist_paths', 'BLOCK_BEGIN', 'BLOCK_END', 'NfLogTask']

FAMILIES = {'ipv4': 2, 'arp': 3, 'bridge': 7, 'ipv6': 10}
# the per-family loggers of kernels >= 3.17 (one module each until 5.12, all in nf_log_syslog since 5.13)
NF_LOG_LOGGERS = {'ipv4': 'nf_log_ipv4', 'ipv6': 'nf_log_ipv6', 'bridge': 'nf_log_bridge', 'arp': 'nf_log_arp'}

BLOCK_BEGIN = '# BEGIN virtops.virtnet nf_log (managed, do not edit)'
BLOCK_END = '# END virtops.virtnet nf_log'


class NfLogError(Exception):
    pass


def _is_el(facts, major):
    d = facts.get('distro') or {}
    return d.get('family') == 'redhat' and d.get('major') == str(major)


def _kernel(facts):
    return tuple(facts.get('kernel_version') or (0, 0, 0))


def choose(facts, family):
    """Module and logger for ``family`` on this host, with the reason."""
    pf = FAMILIES[family]
    k = _kernel(facts)
    kernel = facts.get('kernel') or 'unknown'
    if k >= (5, 13):
        era = 'kernel %s >= 5.13: the loggers live in nf_log_syslog' % kernel
        module = 'nf_log_syslog'
        logger = NF_LOG_LOGGERS[family]
    elif k >= (3, 17) or _is_el(facts, 7):
        era = ('EL7 kernel %s (nf_log backported)' % kernel) if k < (3, 17) else \
            'kernel %s between 3.17 and 5.12: one nf_log_<family> module per family' % kernel
        module = logger = NF_LOG_LOGGERS[family]
    else:
        era = 'kernel %s older than 3.17 (EL6 era): the LOG targets are the loggers' % kernel
        if family == 'arp':
            raise NfLogError('family arp has no kernel logger on kernel %s (needs 3.17 or later)' % kernel)
        module = logger = {'ipv4': 'ipt_LOG', 'ipv6': 'ip6t_LOG', 'bridge': 'ebt_log'}[family]
    registered = (facts.get('nf_log') or {}).get(pf, {}).get('registered', [])
    if logger in registered:
        why = '%s; logger %s is already registered for pf %d, no modprobe needed' % (era, logger, pf)
        needs = False
    else:
        why = '%s; logger %s is not registered yet, load module %s' % (era, logger, module)
        needs = True
    return dict(family=family, pf=pf, module=module, logger=logger, needs_modprobe=needs, why=why)


def persist_paths(facts):
    """Where this distro keeps boot-time modules and sysctls."""
    if _is_el(facts, 6) or (not facts.get('systemd') and _kernel(facts) < (3, 0)
                            and (facts.get('distro') or {}).get('family') == 'redhat'):
        return dict(style='el6', modules='/etc/sysconfig/modules/virtnet.modules', sysctl='/etc/sysctl.conf',
                    sysctl_block=True)
    return dict(style='systemd', modules='/etc/modules-load.d/virtnet.conf',
                sysctl='/etc/sysctl.d/90-virtnet.conf', sysctl_block=False)


READ_FILES_SCRIPT = r'''
for f in "$@"; do
  printf '@@file %s\n' "$f"
  if [ -f "$f" ]; then
    printf '@@exists\n'; cat "$f"
    [ -n "$(tail -c 1 "$f" 2>/dev/null)" ] && printf '\n@@no_eol\n'
  fi
done
printf '@@end\n'
'''


def read_files(out):
    """READ_FILES_SCRIPT output (``_wire.Sections``) -> {path: content or None (no such file)}; content is
    exact, including a last line without its newline (``@@no_eol``)."""
    files = {}
    current = None
    for section in out:
        if section.name == 'file':
            current = section.arg
            files[current] = None
        elif section.name == 'exists' and current is not None:
            files[current] = section.text
        elif section.name == 'no_eol' and files.get(current):
            files[current] = files[current][:-1]
        elif section.name == 'end':
            current = None
    return files


# Operations, interpreted by a constant script; values are positional parameters only.
#   modprobe MODULE | bind PF VALUE | allnetns VALUE | write PATH MODE CONTENT | remove PATH
APPLY_SCRIPT = r'''
kernel=$(cat /proc/sys/kernel/osrelease 2>/dev/null || uname -r)
staged=''; removes=''
drop() { for x in $staged; do rm -f "${x%%|*}"; done; }
while [ $# -gt 0 ]; do
  op=$1; shift
  case "$op" in
    modprobe)
      if ! out=$(modprobe "$1" 2>&1); then
        drop; printf 'cannot load kernel module %s on kernel %s: %s\n' "$1" "$kernel" "$out" >&2; exit 10
      fi; shift ;;
    bind)
      if command -v sysctl >/dev/null 2>&1; then sysctl -w "net.netfilter.nf_log.$1=$2" >/dev/null
      else printf '%s\n' "$2" > "/proc/sys/net/netfilter/nf_log/$1"; fi
      if [ $? -ne 0 ]; then
        drop; printf 'cannot set net.netfilter.nf_log.%s=%s (logger not registered on kernel %s?)\n' "$1" "$2" "$kernel" >&2; exit 11
      fi; shift 2 ;;
    allnetns)
      if ! printf '%s\n' "$1" > /proc/sys/net/netfilter/nf_log_all_netns; then
        drop; printf 'cannot set net.netfilter.nf_log_all_netns=%s\n' "$1" >&2; exit 12
      fi; shift ;;
    write)
      d=${1%/*}; t="$d/.virtnet.$$.${1##*/}.tmp"
      if ! err=$( { [ -d "$d" ] || mkdir -p "$d"; } 2>&1 && { printf '%s' "$3" | cat > "$t"; } 2>&1 && chmod "$2" "$t" 2>&1 ); then
        rm -f "$t" 2>/dev/null; drop
        printf 'cannot write %s: %s (nothing was changed)\n' "$1" "$(printf '%s' "$err" | tr '\n' ' ')" >&2; exit 13
      fi
      staged="$staged $t|$1"; shift 3 ;;
    remove)
      removes="$removes $1"; shift ;;
    *) drop; printf 'internal error: unknown op %s\n' "$op" >&2; exit 15 ;;
  esac
done
for x in $staged; do mv -f "${x%%|*}" "${x#*|}" || { drop; printf 'cannot move %s into place\n' "${x#*|}" >&2; exit 13; }; done
for f in $removes; do rm -f "$f" || exit 14; done
printf '@@bindings\n'
READ_BINDINGS
'''.replace('READ_BINDINGS', READ_BINDINGS)


def _strip_block(text):
    out, inside = [], False
    for line in (text or '').splitlines():
        if line.strip() == BLOCK_BEGIN:
            inside = True
            continue
        if inside and line.strip() == BLOCK_END:
            inside = False
            continue
        if not inside:
            out.append(line)
    return out


def _sysctl_lines(bindings, all_netns):
    lines = ['net.netfilter.nf_log.%d = %s' % (pf, value) for pf, value in bindings]
    if all_netns:
        lines.append('net.netfilter.nf_log_all_netns = 1')
    return lines


class Plan:
    def __init__(self):
        self.ops = []          # flat list of words for APPLY_SCRIPT (runtime changes)
        self.file_ops = []     # file writes/removals: staged first, moved into place last
        self.changes = []      # human readable
        self.chosen = {}
        self.families = {}
        self.files = {}        # path -> dict(before, after)
        self.netns = {}
        self.warnings = []

    @property
    def changed(self):
        return bool(self.changes)


def plan(facts, params, files=None):
    """Compute what to do.  ``files`` = current persistent files (read_files) or None."""
    p = Plan()
    state = params['state']
    families = params['families']
    force = params.get('force', False)
    nf_log = facts.get('nf_log') or {}
    sysctl = facts.get('nf_log_sysctl') or {}
    modules, bindings = [], []
    for family in families:
        c = choose(facts, family)
        p.chosen[family] = c
        pf = c['pf']
        current = sysctl[pf] if pf in sysctl else nf_log.get(pf, {}).get('bound')
        if current == c['logger'] and c['needs_modprobe']:
            # a bound logger is a registered one (the sysctl may name it differently from /proc)
            c['needs_modprobe'] = False
            c['why'] = c['why'].split('; logger')[0] + '; logger %s is already bound, nothing to load' % c['logger']
        info = dict(pf=pf, sysctl='net.netfilter.nf_log.%d' % pf, before=current or 'NONE')
        if state == 'present':
            if current not in (None, c['logger']) and not force:
                raise NfLogError(
                    'net.netfilter.nf_log.%d (%s) is bound to %s, another logger (TRACE output goes there, '
                    'not to the kernel log); set force: true to bind %s instead' % (pf, family, current, c['logger']))
            if current is not None and current != c['logger']:
                p.warnings.append('net.netfilter.nf_log.%d was bound to %s; rebinding to %s (force: true)' % (
                    pf, current, c['logger']))
            if c['needs_modprobe']:
                p.ops += ['modprobe', c['module']]
                p.changes.append('load kernel module %s' % c['module'])
            if current != c['logger']:
                p.ops += ['bind', str(pf), c['logger']]
                p.changes.append('set net.netfilter.nf_log.%d = %s' % (pf, c['logger']))
            info['after'] = c['logger']
            if c['module'] not in modules:
                modules.append(c['module'])
            bindings.append((pf, c['logger']))
        else:
            if current == c['logger'] or (current is not None and force):
                p.ops += ['bind', str(pf), 'NONE']
                p.changes.append('set net.netfilter.nf_log.%d = NONE' % pf)
                info['after'] = 'NONE'
            else:
                info['after'] = current or 'NONE'
                if current is not None:
                    p.warnings.append('net.netfilter.nf_log.%d is bound to %s, not ours (%s); left alone' % (
                        pf, current, c['logger']))
        p.families[family] = info

    # network namespaces: kernels >= 4.11 log from non-initial netns only with nf_log_all_netns=1
    in_netns = facts.get('in_netns')
    all_netns = facts.get('nf_log_all_netns')
    kver = _kernel(facts)
    want_all = params.get('all_netns')
    p.netns = dict(in_netns=in_netns, nf_log_all_netns=all_netns, needed=None, note='')
    if kver >= (4, 11):
        if in_netns:
            p.netns['needed'] = True
            p.netns['note'] = ('this host is a non-initial network namespace on kernel %s: LOG/TRACE output appears '
                               'only when the initial namespace has net.netfilter.nf_log_all_netns=1 (not visible '
                               'or settable from here)' % facts.get('kernel'))
            if want_all:
                p.warnings.append('all_netns: true cannot be applied from inside a network namespace; set '
                                  'net.netfilter.nf_log_all_netns=1 on the physical host')
        elif all_netns is not None:
            p.netns['note'] = 'initial network namespace; nf_log_all_netns=%s' % all_netns
            if state == 'present' and want_all and all_netns != 1:
                p.ops += ['allnetns', '1']
                p.changes.append('set net.netfilter.nf_log_all_netns = 1')
            elif state == 'absent' and want_all and all_netns == 1:
                p.ops += ['allnetns', '0']
                p.changes.append('set net.netfilter.nf_log_all_netns = 0')
    else:
        p.netns['needed'] = False
        p.netns['note'] = 'kernel %s logs from every network namespace (nf_log_all_netns is 4.11+)' % facts.get('kernel')

    if files is not None:
        _plan_files(p, facts, params, files, modules, bindings)
    return p


def _plan_files(p, facts, params, files, modules, bindings):
    paths = persist_paths(facts)
    state = params['state']
    persistent = params.get('persistent') and state == 'present'
    want_all = bool(params.get('all_netns')) and not facts.get('in_netns') and persistent
    if paths['style'] == 'el6':
        mod_content = ('#!/bin/sh\n# managed by virtops.virtnet nf_log\n'
                       + ''.join('/sbin/modprobe %s >/dev/null 2>&1\n' % m for m in modules)) if persistent else None
        mod_mode = '0755'
    else:
        mod_content = ('# managed by virtops.virtnet nf_log\n' + ''.join('%s\n' % m for m in modules)) \
            if persistent else None
        mod_mode = '0644'
    # modules that need no loading (built in) are still listed: harmless, and correct after a kernel update
    _want_file(p, paths['modules'], files.get(paths['modules']), mod_content if modules else None, mod_mode)

    lines = _sysctl_lines(bindings, want_all) if persistent else []
    if paths['sysctl_block']:
        before = files.get(paths['sysctl'])
        kept = _strip_block(before)
        if lines:
            after_lines = kept + [BLOCK_BEGIN] + lines + [BLOCK_END]
        else:
            after_lines = kept
        after = '\n'.join(after_lines) + '\n' if after_lines else ''
        if before is None and not lines:
            after = None
        _want_file(p, paths['sysctl'], before, after, '0644')
    else:
        content = ('# managed by virtops.virtnet nf_log\n' + ''.join('%s\n' % x for x in lines)) if lines else None
        _want_file(p, paths['sysctl'], files.get(paths['sysctl']), content, '0644')


def _want_file(p, path, before, after, mode):
    if before == after:
        return
    if after is None:
        if before is None:
            return
        p.file_ops += ['remove', path]
        p.changes.append('remove %s' % path)
    else:
        p.file_ops += ['write', path, mode, after]
        p.changes.append('write %s' % path)
    p.files[path] = dict(before=before or '', after=after or '')


class NfLogTask:
    """The nf_log module run: probe, plan, apply with one script, verify, report."""

    def __init__(self, module):
        self.module = module
        self.params = module.params

    def run(self):
        m = self.module
        params = dict(self.params)
        params['families'] = list(dict.fromkeys(params['families']))
        facts = probe(m)
        files = None
        if params['persistent'] or params['state'] == 'absent':
            paths = persist_paths(facts)
            files = read_files(wire.run(m, READ_FILES_SCRIPT, [paths['modules'], paths['sysctl']],
                                        what='Reading persistent nf_log files')[1])
        try:
            p = plan(facts, params, files)
        except NfLogError as e:
            m.fail_json(msg=str(e), probe=facts)
        for w in p.warnings:
            m.warn(w)
        if p.netns.get('needed') and params['state'] == 'present':
            m.warn(p.netns['note'])
        result = dict(changed=p.changed, changes=p.changes,
                      chosen={f: dict(module=c['module'], logger=c['logger'], why=c['why'],
                                      modprobe=c['needs_modprobe'], sysctl='net.netfilter.nf_log.%d' % c['pf'])
                              for f, c in p.chosen.items()},
                      families=p.families, netns=p.netns, files=sorted(p.files), probe=facts,
                      kernel=facts.get('kernel'), distro=facts.get('distro'))
        if p.changed and not m.check_mode:
            res, out = wire.run(m, APPLY_SCRIPT, p.file_ops + p.ops, what='nf_log set-up', check_rc=False)
            if res.rc != 0:
                detail = (res.stderr or res.stdout).strip()
                m.fail_json(msg='nf_log failed on %s (kernel %s): %s' % (m.host, facts.get('kernel'), detail),
                            rc=res.rc, stdout=res.stdout, stderr=res.stderr, chosen=result['chosen'],
                            changes=p.changes)
            now = parse_bindings(out.get('bindings', []))
            for family, info in p.families.items():
                bound = now.get(info['pf'])
                info['after'] = bound or 'NONE'
                if params['state'] == 'present' and bound != p.chosen[family]['logger']:
                    m.fail_json(msg='net.netfilter.nf_log.%d is %s after setting it to %s (kernel %s)' % (
                        info['pf'], bound or 'NONE', p.chosen[family]['logger'], facts.get('kernel')),
                        chosen=result['chosen'])
        if m.diff_mode:
            before = ''.join('net.netfilter.nf_log.%d = %s\n' % (i['pf'], i['before']) for i in p.families.values())
            after = ''.join('net.netfilter.nf_log.%d = %s\n' % (i['pf'], i['after']) for i in p.families.values())
            diffs = [dict(before=before, after=after, before_header='nf_log bindings', after_header='nf_log bindings')]
            for path, d in sorted(p.files.items()):
                diffs.append(dict(before=d['before'], after=d['after'], before_header=path, after_header=path))
            result['diff'] = diffs
        return result
