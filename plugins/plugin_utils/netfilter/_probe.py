# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Host probe for the netfilter action plugins (controller side).

THIS IS PRIVATE TO virtops.virtnet; the API may change without notice outside the collection.

One short POSIX sh script (constant text, no user input) collects everything the netfilter
plugins decide on: kernel release, distro, iptables versions and backends, which tools exist,
the nf_log bindings and the host clock.  The output is a list of sections
(``@@<name>`` then raw text, read by ``_wire``), turned into facts here, on the controller.

API
---
``PROBE_SCRIPT``                 the remote script
``parse_probe(text) -> dict``    pure parser (unit-tested with real outputs)
``probe(module) -> dict``        run once per task and host, cached in ``module.cache``
``version_tuple(text)``          ``'1.4.7'`` -> ``(1, 4, 7)``
``iptables_commands(facts, family, backend) -> dict(save=[...], restore=[...], iptables=[...])``
"""

from __future__ import annotations

import re

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._wire import parse, parse_kv

__all__ = ['PROBE_SCRIPT', 'READ_BINDINGS', 'parse_probe', 'probe', 'version_tuple', 'iptables_commands', 'ProbeError',
           'TOOLS', 'parse_bindings', 'parse_nf_log_proc']

TOOLS = ('iptables', 'iptables-save', 'iptables-restore', 'ip6tables', 'ip6tables-save', 'ip6tables-restore',
         'iptables-legacy', 'iptables-legacy-save', 'iptables-legacy-restore',
         'ip6tables-legacy', 'ip6tables-legacy-save', 'ip6tables-legacy-restore',
         'iptables-nft', 'iptables-nft-save', 'iptables-nft-restore',
         'ip6tables-nft', 'ip6tables-nft-save', 'ip6tables-nft-restore',
         'nft', 'xtables-monitor', 'dmesg', 'journalctl', 'modprobe', 'sysctl', 'setsid', 'nohup',
         'systemctl')

# Prints the nf_log bindings, one ``net.netfilter.nf_log.<pf> = <logger>`` line each (``parse_bindings``);
# a part of PROBE_SCRIPT and of nf_log's apply script.
READ_BINDINGS = r'''
n=''; for f in /proc/sys/net/netfilter/nf_log/*; do [ -r "$f" ] && n="$n net.netfilter.nf_log.${f##*/}"; done
if [ -n "$n" ] && command -v sysctl >/dev/null 2>&1 && sysctl $n 2>/dev/null; then :; else
  for f in /proc/sys/net/netfilter/nf_log/*; do
    [ -r "$f" ] && printf '%s=%s\n' "${f##*/}" "$(cat "$f" 2>/dev/null)"
  done
fi'''.strip('\n')

# Constant text: no user value ever goes in here.  Every section is printed even when empty,
# so the parser can tell "absent" from "not probed".
PROBE_SCRIPT = r'''
s() { printf '@@%s\n' "$1"; }
s osrelease; cat /proc/sys/kernel/osrelease 2>/dev/null
s uname; uname -r 2>/dev/null
s os-release; cat /etc/os-release 2>/dev/null
s redhat-release; cat /etc/redhat-release 2>/dev/null
s centos-release; cat /etc/centos-release 2>/dev/null
s debian_version; cat /etc/debian_version 2>/dev/null
s tools
for t in TOOLS_LIST; do
  p=$(command -v "$t" 2>/dev/null) && printf '%s=%s\n' "$t" "$p"
done
for t in iptables iptables-legacy iptables-nft ip6tables; do
  s "version $t"; command -v "$t" >/dev/null 2>&1 && "$t" --version 2>&1 | head -n 1
done
s time_match; iptables -m time --help >/dev/null 2>&1 && echo yes
s nf_log_proc; cat /proc/net/netfilter/nf_log 2>/dev/null
s nf_log_sysctl
# the distro's view (sysctl) first: it is what net.netfilter.nf_log.N takes; /proc as fallback
READ_BINDINGS
s nf_log_all_netns; cat /proc/sys/net/netfilter/nf_log_all_netns 2>/dev/null
s netns; readlink /proc/1/ns/net 2>/dev/null; readlink /proc/self/ns/net 2>/dev/null
s systemd; [ -d /run/systemd/system ] && echo yes
s epoch; date +%s
s id; id -u
s end
'''.replace('TOOLS_LIST', ' '.join(TOOLS)).replace('READ_BINDINGS', READ_BINDINGS)


class ProbeError(Exception):
    pass


def version_tuple(text):
    """First dotted number in ``text`` as a tuple of ints, or ``None``."""
    m = re.search(r'(\d+)\.(\d+)(?:\.(\d+))?', text or '')
    if not m:
        return None
    return tuple(int(x) for x in m.groups() if x is not None)


def _os_release(lines):
    out = {}
    for k, v in parse_kv(lines).items():
        if len(v) >= 2 and v[0] == v[-1] and v[0] in '"\'':
            v = v[1:-1]
        out[k] = v
    return out


def _distro(sections):
    osr = _os_release(sections.get('os-release', []))
    if osr.get('ID'):
        ver = osr.get('VERSION_ID', '')
        like = osr.get('ID_LIKE', '').split()
        family = 'redhat' if (osr['ID'] in ('rhel', 'centos', 'rocky', 'almalinux', 'fedora', 'ol')
                              or 'rhel' in like or 'fedora' in like) else \
            'debian' if (osr['ID'] in ('debian', 'ubuntu') or 'debian' in like) else osr['ID']
        return dict(id=osr['ID'], version=ver, major=ver.split('.')[0] if ver else '', family=family,
                    pretty=osr.get('PRETTY_NAME', ''), source='/etc/os-release')
    for name in ('centos-release', 'redhat-release'):
        lines = [x for x in sections.get(name, []) if x.strip()]
        if lines:
            text = lines[0].strip()
            m = re.search(r'release\s+(\d+(?:\.\d+)*)', text)
            ver = m.group(1) if m else ''
            low = text.lower()
            did = 'centos' if 'centos' in low else 'rhel' if 'red hat' in low else \
                'fedora' if 'fedora' in low else low.split()[0]
            return dict(id=did, version=ver, major=ver.split('.')[0] if ver else '', family='redhat',
                        pretty=text, source='/etc/' + name)
    deb = [x for x in sections.get('debian_version', []) if x.strip()]
    if deb:
        ver = deb[0].strip()
        return dict(id='debian', version=ver, major=ver.split('.')[0], family='debian', pretty='Debian ' + ver,
                    source='/etc/debian_version')
    return dict(id='unknown', version='', major='', family='unknown', pretty='', source=None)


def _iptables_version(lines):
    """Parse ``iptables --version``: version tuple, text and backend (1.4.x prints none: legacy)."""
    line = next((x for x in lines if x.strip()), '')
    m = re.search(r'v(\d+(?:\.\d+)+)', line)
    if not m:
        return None
    backend = 'nft' if '(nf_tables)' in line else 'legacy'
    return dict(version=m.group(1), version_tuple=version_tuple(m.group(1)), backend=backend, text=line.strip())


def parse_nf_log_proc(lines):
    """``/proc/net/netfilter/nf_log`` -> {pf: dict(bound=name or None, registered=[...])}."""
    out = {}
    for line in lines:
        m = re.match(r'\s*(\d+)\s+(\S+)\s*(?:\(([^)]*)\))?', line)
        if not m:
            continue
        pf = int(m.group(1))
        bound = None if m.group(2) == 'NONE' else m.group(2)
        registered = [x for x in (m.group(3) or '').split(',') if x]
        out[pf] = dict(bound=bound, registered=registered)
    return out


def parse_bindings(lines):
    """``sysctl net.netfilter.nf_log.N`` lines (or ``N=value``) -> {pf: logger or None}."""
    out = {}
    for k, v in parse_kv(lines).items():
        k = k.rsplit('.', 1)[-1]
        if k.isdigit():
            out[int(k)] = None if v in ('NONE', '') else v
    return out


def parse_probe(text):
    parsed = parse(text)
    if not parsed.ended:
        raise ProbeError('host probe output is incomplete (no end marker)')
    sections = parsed.as_dict()
    kernel = next((x.strip() for x in sections.get('osrelease', []) if x.strip()), '')
    kernel_source = '/proc/sys/kernel/osrelease'
    if not kernel:
        kernel = next((x.strip() for x in sections.get('uname', []) if x.strip()), '')
        kernel_source = 'uname -r'
    tools = parse_kv(sections.get('tools', []))
    versions_out = parsed.by_arg('version')
    versions = {}
    for name in ('iptables', 'iptables-legacy', 'iptables-nft', 'ip6tables'):
        v = _iptables_version(versions_out[name].lines if name in versions_out else [])
        if v:
            versions[name] = v
    main = versions.get('iptables')
    backend = main['backend'] if main else None
    nf_log_sysctl = parse_bindings(sections.get('nf_log_sysctl', []))
    all_netns_lines = [x.strip() for x in sections.get('nf_log_all_netns', []) if x.strip()]
    all_netns = int(all_netns_lines[0]) if all_netns_lines and all_netns_lines[0].isdigit() else None
    ns = [x.strip() for x in sections.get('netns', []) if x.strip()]
    # Non-initial netns: pid 1's netns differs from ours (same pid namespace), or the
    # init-netns-only sysctl nf_log_all_netns is missing while the per-netns nf_log ones exist.
    in_netns = None
    if len(ns) == 2:
        in_netns = ns[0] != ns[1]
    kver = version_tuple(kernel) or (0, 0)
    if all_netns is None and nf_log_sysctl and kver >= (4, 11):
        in_netns = True
    epoch = next((x.strip() for x in sections.get('epoch', []) if x.strip().isdigit()), None)
    uid = next((x.strip() for x in sections.get('id', []) if x.strip().isdigit()), None)
    facts = dict(
        kernel=kernel,
        kernel_source=kernel_source,
        kernel_version=version_tuple(kernel),
        distro=_distro(sections),
        tools=tools,
        iptables=versions,
        iptables_version=main['version'] if main else None,
        iptables_backend=backend,
        time_match=bool([x for x in sections.get('time_match', []) if x.strip() == 'yes']),
        nf_log=parse_nf_log_proc(sections.get('nf_log_proc', [])),
        nf_log_sysctl=nf_log_sysctl,
        nf_log_all_netns=all_netns,
        in_netns=in_netns,
        systemd=bool([x for x in sections.get('systemd', []) if x.strip() == 'yes']),
        epoch=int(epoch) if epoch else None,
        uid=int(uid) if uid else None,
    )
    return facts


def probe(module):
    """Run the probe once per task (cached in ``module.cache['probe']``)."""
    if 'probe' not in module.cache:
        res = module.run_script(PROBE_SCRIPT, what='Host probe')
        try:
            module.cache['probe'] = parse_probe(res.stdout)
        except ProbeError as e:
            module.fail_json(msg='%s; stdout=%r stderr=%r' % (e, res.stdout[-500:], res.stderr[-500:]))
    return module.cache['probe']


def _restore_wait(info):
    """``iptables-restore --wait`` exists from 1.6.2 (nft variants accept it too)."""
    vt = info.get('version_tuple') if info else None
    return bool(vt) and tuple(vt) >= (1, 6, 2)


def iptables_commands(facts, family, backend='auto'):
    """argv prefixes for save/restore/iptables of ``family`` ('ipv4'/'ipv6') with ``backend``.

    Returns dict(save, restore, iptables, backend, wait) or raises ProbeError naming what is missing.
    """
    tools = facts.get('tools', {})
    base = 'iptables' if family == 'ipv4' else 'ip6tables'
    detected = facts.get('iptables_backend')
    if backend == 'auto':
        backend = detected or 'legacy'
    if backend == 'nft':
        names = ('%s-nft-save' % base, '%s-nft-restore' % base, '%s-nft' % base)
        if not all(n in tools for n in names):
            if detected == 'nft' and all(n in tools for n in ('%s-save' % base, '%s-restore' % base)):
                names = ('%s-save' % base, '%s-restore' % base, base)
            else:
                raise ProbeError('backend nft needs %s on the host (found: %s)' % (
                    ', '.join(names), ', '.join(sorted(n for n in tools if 'tables' in n)) or 'none'))
        info = facts.get('iptables', {}).get('iptables-nft') or facts.get('iptables', {}).get('iptables')
    else:
        legacy = ('%s-legacy-save' % base, '%s-legacy-restore' % base, '%s-legacy' % base)
        plain = ('%s-save' % base, '%s-restore' % base, base)
        if all(n in tools for n in legacy):
            names = legacy
            info = facts.get('iptables', {}).get('iptables-legacy') or facts.get('iptables', {}).get('iptables')
        elif all(n in tools for n in plain) and detected != 'nft':
            names = plain
            info = facts.get('iptables', {}).get('iptables')
        else:
            raise ProbeError('backend legacy needs %s (or %s) on the host' % (', '.join(legacy), ', '.join(plain)))
    wait = _restore_wait(info)
    restore = [names[1], '--noflush'] + (['-w'] if wait else [])
    return dict(save=[names[0]], restore=restore, iptables=[names[2]], backend=backend, wait=wait,
                version=info.get('version') if info else None)
