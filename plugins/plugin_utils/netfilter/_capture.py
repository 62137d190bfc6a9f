# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Trace capture for virtops.virtnet.trace_capture (controller side).

THIS IS PRIVATE TO virtops.virtnet; the API may change without notice outside the collection.

The host is driven with constant POSIX sh scripts (user values only as positional parameters):
``START_SCRIPT`` writes a marker to ``/dev/kmsg`` (kernel log) or starts ``xtables-monitor
--trace`` / ``nft monitor trace`` in the background (nfnetlink) and records a state file;
``STOP_SCRIPT`` writes the end marker or stops the monitor by its PID, and prints, in sections,
the host's interfaces and addresses, the trace lines of the capture window (cut on the host, so
only the window travels) and the lines that say that log lines were lost.  ``CaptureTask``
(``_capture_task.py``) runs them and reads their output with ``_wire`` (the one parser of the
``@@section`` format).

Everything else here is pure and unit-tested with real lab captures:

``new_capture_id()``, ``check_capture_id(cid)``, ``leftover_warnings(lines)``
``parse_ifaces(lines)``, ``parse_addrs(lines)``   the STOP_SCRIPT's ``@@ifaces`` / ``@@addrs`` bodies
``host_line_filter(lines, ifaces, addrs) -> (kept, foreign)``  drop other hosts' kernel lines
``flow_matches(packet, match)``, ``filter_packets(packets, match) -> (kept, dropped)``
``drop_orphans(packets) -> (kept, dropped)``
``loss_warnings(lines) -> [str]``
``unparsed_summary(unparsed, count) -> dict``   the parser's unparsed lines, as returned and warned
``trace_rules_in(iptables_save_text)``, ``diagnose_empty(...) -> [str]``   likely causes when nothing was captured
``choose_source(facts, source, backend)``, ``choose_reader(facts, reader)``,
``choose_monitor(facts, monitor, native_tables)``, ``native_nft_tables(nft_list_tables_text)``
"""

from __future__ import annotations

import ipaddress
import re
import secrets

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._ruleset import XTABLES_TABLES, parse_save

__all__ = ['START_SCRIPT', 'STOP_SCRIPT', 'CUT_AWK', 'PROBE_CMD_SCRIPT', 'CaptureError', 'new_capture_id',
           'check_capture_id', 'leftover_warnings', 'parse_ifaces', 'parse_addrs',
           'host_line_filter', 'flow_matches', 'filter_packets', 'drop_orphans', 'loss_warnings', 'unparsed_summary',
           'diagnose_empty', 'choose_source', 'choose_reader',
           'choose_monitor', 'native_nft_tables', 'trace_rules_in', 'KEEP_RE']

CAPTURE_ID_RE = re.compile(r'^[a-z0-9]{6,32}$')

# What the host keeps of a kernel log window (the same pattern is in the remote awk script):
# trace lines, and the lines that report lost lines.
KEEP_RE = r'TRACE: |callbacks suppressed|messages lost|rate-limit|ratelimit|Suppressed [0-9]|' \
          r'messages dropped|Missed [0-9]+ kernel messages|No buffer space'
LOSS_PATTERNS = (
    (re.compile(r'(\S+): (\d+) callbacks suppressed'),
     'the kernel suppressed {n} log lines ({what} callbacks suppressed): some trace lines are missing'),
    (re.compile(r'\*\* (\d+) printk messages dropped'),
     'the kernel dropped {n} printk messages (log buffer overrun): some trace lines are missing'),
    (re.compile(r'imjournal: (?:begin to drop messages due to rate-limiting|(\d+) messages lost due to rate-limiting)'),
     'rsyslog (imjournal) lost {n} messages to rate limiting: some trace lines are missing from the syslog file'),
    (re.compile(r'imuxsock (?:\S+ )*?begins to drop messages .*rate-limiting|imuxsock lost (\d+) messages'),
     'rsyslog (imuxsock) dropped {n} messages to rate limiting'),
    (re.compile(r'Suppressed (\d+) messages from'),
     'journald suppressed {n} messages (rate limiting): some trace lines may be missing'),
    (re.compile(r'Missed (\d+) kernel messages'),
     'journald missed {n} kernel messages (kmsg overrun): some trace lines are missing'),
    (re.compile(r'No buffer space available|ENOBUFS'),
     'the nfnetlink monitor could not keep up (No buffer space available): trace events were lost'),
)
TRACE_LINE_RE = re.compile(r'TRACE: ')
FIELD_RE = re.compile(r'\b(IN|OUT|PHYSIN|PHYSOUT|MAC|SRC)=(\S*)')


class CaptureError(Exception):
    pass


# ---------------------------------------------------------------------------------------- remote
# Shell function of both scripts: a process that has exited but is not reaped yet (a zombie; the
# monitor's parent is init, which reaps when it gets to it) answers kill -0, yet runs nothing.
RUNNING_FN = r'''
running() { kill -0 "$1" 2>/dev/null || return 1; case "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null)" in Z*) return 1 ;; esac; }'''
# Constant text.  $1 capture id (validated), $2 source, $3 tool (dmesg|journalctl|syslog|
# xtables-monitor|nft), $4 syslog file or 'auto', $5 lifetime of a background monitor in
# seconds.  Prints @@state then the state file.
START_SCRIPT = RUNNING_FN + r'''
id=$1; src=$2; tool=$3; file=$4; life=$5
d=/run; { [ -d "$d" ] && [ -w "$d" ]; } || d=/tmp
st="$d/virtnet-capture-$id.state"
# what earlier runs left (a start cut off, a stop that never came): a monitor that ended and whose start
# never wrote its state is removed; the others are reported
for x in /run /tmp; do
  for f in "$x"/virtnet-capture-*.pid; do
    [ -f "$f" ] || continue
    o=${f##*/virtnet-capture-}; o=${o%.pid}; p=$(cat "$f" 2>/dev/null)
    if [ -n "$p" ] && running "$p"; then printf '@@leftover\nrunning %s %s\n' "$o" "$p"
    elif [ -f "$x/virtnet-capture-$o.state" ]; then printf '@@leftover\nended %s %s\n' "$o" "$p"
    else rm -f "$f" "/tmp/virtnet-capture-$o.log"; printf '@@leftover\nremoved %s %s\n' "$o" "$p"; fi
  done
done
for x in /run /tmp; do
  [ -e "$x/virtnet-capture-$id.state" ] && { echo "capture $id is already running on this host" >&2; exit 3; }
done
pid=''; log=''
if [ "$src" = nfnetlink ]; then
  case "$tool" in
    xtables-monitor) set -- xtables-monitor --trace ;;
    nft) set -- nft monitor trace ;;
    *) echo "unknown monitor $tool" >&2; exit 2 ;;
  esac
  mon=$1
  command -v "$mon" >/dev/null 2>&1 || { echo "$mon not found on the host" >&2; exit 4; }
  # line-buffered output: the monitor is stopped with SIGTERM, which does not flush stdio
  command -v stdbuf >/dev/null 2>&1 && set -- stdbuf -oL "$@"
  # a monitor whose stop never comes (controller gone) ends by itself
  command -v timeout >/dev/null 2>&1 && set -- timeout "$life" "$@"
  log="/tmp/virtnet-capture-$id.log"; pidf="$d/virtnet-capture-$id.pid"
  rm -f "$log" "$pidf"; : > "$log" || exit 4
  w='echo $$ > "$1"; shift; exec "$@"'
  if command -v setsid >/dev/null 2>&1; then
    ( cd / && exec setsid nohup sh -c "$w" virtnet "$pidf" "$@" > "$log" 2>&1 < /dev/null ) &
  else
    ( cd / && exec nohup sh -c "$w" virtnet "$pidf" "$@" > "$log" 2>&1 < /dev/null ) &
  fi
  i=0; while [ ! -s "$pidf" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  pid=$(cat "$pidf" 2>/dev/null)
  sleep 0.5
  if [ -z "$pid" ] || ! running "$pid"; then
    echo "$mon exited at once:" >&2; head -n 20 "$log" >&2; rm -f "$log" "$pidf"; exit 5
  fi
else
  if [ "$tool" = syslog ]; then
    if [ "$file" = auto ]; then
      file=''
      for f in /var/log/messages /var/log/kern.log /var/log/syslog; do [ -r "$f" ] && { file=$f; break; }; done
      [ -n "$file" ] || { echo "no syslog file (/var/log/messages, /var/log/kern.log, /var/log/syslog)" >&2; exit 4; }
    fi
    [ -r "$file" ] || { echo "cannot read $file" >&2; exit 4; }
  fi
  printf '%s\n' "virtnet-capture:$id:start" > /dev/kmsg || { echo "cannot write to /dev/kmsg" >&2; exit 6; }
fi
{
  printf 'id=%s\nsource=%s\ntool=%s\nfile=%s\n' "$id" "$src" "$tool" "$file"
  printf 'started=%s\nsince=%s\npid=%s\nlog=%s\n' "$(date +%s)" "$(date '+%Y-%m-%d %H:%M:%S')" "$pid" "$log"
} > "$st" || exit 4
printf '@@state\n'; cat "$st"
'''

# awk program cutting a kernel log window: variables a (start marker), b (stop marker), k (regex
# of the lines to keep), m (max lines to print).  Prints the kept lines, then an @@cut section.
CUT_AWK = r'''BEGIN { f = 0; t = 0 }
f == 0 { if (index($0, a)) f = 1; next }
index($0, b) { f = 2; exit }
$0 ~ k { t++; if (t <= m) print }
END { printf "@@cut\nstart=%d\nstop=%d\nkept=%d\n", (f > 0), (f == 2), t }'''

# $1 capture id, $2 max lines.  Prints @@state, @@ifaces, @@addrs, @@lines, @@loss, @@cut, @@end.
STOP_SCRIPT = RUNNING_FN + r'''
id=$1; max=$2
st=''
for x in /run /tmp; do [ -f "$x/virtnet-capture-$id.state" ] && { st="$x/virtnet-capture-$id.state"; break; }; done
[ -n "$st" ] || { echo "no capture $id on this host (already stopped, or the host rebooted)" >&2; exit 3; }
get() { sed -n "s/^$1=//p" "$st" | head -n 1; }
src=$(get source); tool=$(get tool); file=$(get file); since=$(get since); pid=$(get pid); log=$(get log)
s() { printf '@@%s\n' "$1"; }
keep='KEEP_RE'
cut='CUT_AWK'
if [ "$src" = nfnetlink ]; then
  if [ -n "$pid" ] && running "$pid"; then
    case "$(tr '\000' ' ' < /proc/$pid/cmdline 2>/dev/null)" in
      *xtables-monitor*|*nft*) kill "$pid" 2>/dev/null ;;
      *) echo "pid $pid is not our monitor any more; not killed" >&2 ;;
    esac
    i=0; while running "$pid" && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done
    running "$pid" && kill -9 "$pid" 2>/dev/null
    alive=1
  else
    alive=0
  fi
fi
s state; cat "$st"
s ifaces; for i in /sys/class/net/*; do [ -e "$i" ] && printf '%s %s\n' "${i##*/}" "$(cat "$i/address" 2>/dev/null)"; done
s addrs; ip -o addr show 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "inet" || $i == "inet6") print $(i+1) }'
a="virtnet-capture:$id:start"; b="virtnet-capture:$id:stop"
if [ "$src" = nfnetlink ]; then
  s lines; head -n "$max" "$log" 2>/dev/null
  s cut; printf 'start=1\nstop=1\nkept=%s\nalive=%s\n' "$(wc -l < "$log" 2>/dev/null | tr -d ' ')" "$alive"
  s loss; grep -E 'No buffer space|ENOBUFS' "$log" 2>/dev/null | head -n 20
  rm -f "$log" "${st%.state}.pid"
else
  printf '%s\n' "$b" > /dev/kmsg 2>/dev/null
  case "$tool" in
    dmesg)
      s lines; dmesg 2>/dev/null | awk -v a="$a" -v b="$b" -v k="$keep" -v m="$max" "$cut"
      s loss ;;
    journalctl)
      i=0; while [ $i -lt 30 ]; do
        journalctl -k --no-pager --since "$since" 2>/dev/null | grep -q "$b" && break; sleep 0.1; i=$((i+1)); done
      s lines; journalctl -k --no-pager -o short-iso --since "$since" 2>/dev/null | awk -v a="$a" -v b="$b" -v k="$keep" -v m="$max" "$cut"
      s loss; journalctl -u systemd-journald --no-pager --since "$since" 2>/dev/null | grep -E 'Suppressed [0-9]|Missed [0-9]' | head -n 20 ;;
    syslog)
      i=0; while [ $i -lt 30 ]; do grep -q "$b" "$file" 2>/dev/null && break; sleep 0.1; i=$((i+1)); done
      s lines; awk -v a="$a" -v b="$b" -v k="$keep" -v m="$max" "$cut" "$file"
      s loss ;;
  esac
fi
rm -f "$st"
s end
'''.replace('CUT_AWK', CUT_AWK).replace('KEEP_RE', KEEP_RE)

# $1 timeout seconds, $2 netns ('' for none), then the command.  Runs the command (inside the
# netns) with a timeout when coreutils' timeout exists.
PROBE_CMD_SCRIPT = r'''
t=$1; ns=$2; shift 2
if [ -n "$ns" ]; then set -- ip netns exec "$ns" "$@"; fi
if command -v timeout >/dev/null 2>&1; then exec timeout "$t" "$@"; fi
exec "$@"
'''


# ---------------------------------------------------------------------------------------- ids
def new_capture_id():
    return secrets.token_hex(6)


def check_capture_id(cid):
    if not isinstance(cid, str) or not CAPTURE_ID_RE.match(cid):
        raise CaptureError('capture_id must be 6 to 32 lowercase letters or digits (as returned by action=start), got %r'
                           % (cid,))
    return cid


# ---------------------------------------------------------------------------------------- remote output
def leftover_warnings(lines):
    """The ``@@leftover`` lines of START_SCRIPT -> one warning each."""
    out = []
    for line in lines:
        words = line.split()
        if len(words) < 2:
            continue
        what, cid, pid = words[0], words[1], (words[2] if len(words) > 2 else '?')
        if what == 'removed':
            out.append('removed what capture %s left on the host: its start was cut off before it returned, and '
                       'its monitor (pid %s) had ended' % (cid, pid))
        elif what == 'ended':
            out.append('capture %s was never stopped and its monitor (pid %s) has ended (lifetime): '
                       'action=stop capture_id=%s collects its lines and removes its files' % (cid, pid, cid))
        elif what == 'running':
            out.append('capture %s is still running on the host (monitor pid %s): it ends by itself after its '
                       'lifetime, or action=stop capture_id=%s stops it' % (cid, pid, cid))
    return out


def parse_ifaces(lines):
    """``name mac`` lines -> {name: mac or ''}."""
    out = {}
    for line in lines:
        parts = line.split()
        if parts:
            out[parts[0]] = parts[1].lower() if len(parts) > 1 else ''
    return out


def parse_addrs(lines):
    """``addr/prefix`` lines -> set of address strings (no prefix)."""
    out = set()
    for line in lines:
        word = line.strip().split('/')[0]
        try:
            out.add(str(ipaddress.ip_address(word)))
        except ValueError:
            continue
    return out


# ---------------------------------------------------------------------------------------- host filter
def _iface_base(name):
    """``vnet0@if12`` -> ``vnet0``."""
    return name.split('@', 1)[0]


def _is_unicast(mac):
    try:
        return not int(mac.split(':')[0], 16) & 1
    except (ValueError, IndexError):
        return False


def _norm_mac(mac):
    parts = mac.lower().split(':')
    return ':'.join(p.zfill(2) for p in parts)


def host_line_filter(lines, ifaces, addrs=None):
    """Keep the kernel-log TRACE lines that belong to this host.

    All network namespaces of a machine (lab hosts, containers) share one kernel log.  A line is
    foreign when it names an interface (IN/OUT/PHYSIN/PHYSOUT) the host does not have, when its
    MAC= header was addressed neither to nor from one of the host's MACs (unicast only), or, for
    a locally generated packet (no IN, no MAC), when its source is not one of the host's addresses.
    Non-TRACE lines are kept.  Returns (kept, foreign_count).
    """
    names = set(_iface_base(n) for n in ifaces or {})
    macs = set(_norm_mac(m) for m in (ifaces or {}).values() if m and m != '00:00:00:00:00:00')
    kept = []
    foreign = 0
    for line in lines:
        if not names or not TRACE_LINE_RE.search(line):
            kept.append(line)
            continue
        fields = dict(FIELD_RE.findall(line))
        bad = False
        for key in ('IN', 'OUT', 'PHYSIN', 'PHYSOUT'):
            val = fields.get(key)
            if val and val not in names:
                bad = True
                break
        mac = fields.get('MAC')
        if not bad and mac and macs:
            octets = mac.lower().split(':')
            if len(octets) >= 12:
                dst = ':'.join(octets[0:6])
                src = ':'.join(octets[6:12])
                if _is_unicast(dst) and dst not in macs and src not in macs:
                    bad = True
        if not bad and not mac and not fields.get('IN') and addrs:
            src = fields.get('SRC')
            if src:
                try:
                    src = str(ipaddress.ip_address(src))
                except ValueError:
                    src = None
            if src and src not in addrs:
                bad = True
        if bad:
            foreign += 1
        else:
            kept.append(line)
    return kept, foreign


# ---------------------------------------------------------------------------------------- flow filter
_PROTO_NUM = {'1': 'icmp', '6': 'tcp', '17': 'udp', '58': 'icmpv6', '132': 'sctp', '47': 'gre', '50': 'esp'}


def _norm_proto(p):
    if p is None:
        return None
    p = str(p).lower()
    p = _PROTO_NUM.get(p, p)
    return 'icmpv6' if p in ('ipv6-icmp', 'icmp6') else p


def _port_in(spec, value):
    """``spec`` '3128' or '1024:65535' (or a list of them); ``value`` int/str/None."""
    if spec is None:
        return True
    if value is None or value == '':
        return False
    try:
        value = int(value)
    except (TypeError, ValueError):
        return False
    specs = spec if isinstance(spec, (list, tuple)) else [spec]
    for s in specs:
        s = str(s)
        if ':' in s:
            lo, hi = s.split(':', 1)
            lo = int(lo) if lo else 0
            hi = int(hi) if hi else 65535
            if lo <= value <= hi:
                return True
        elif s.isdigit() and int(s) == value:
            return True
    return False


def _addr_in(spec, value):
    if spec is None:
        return True
    if not value:
        return False
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network(spec, strict=False)
    except ValueError:
        return False


def _iface_in(spec, value):
    if spec is None:
        return True
    if not value:
        return False
    if spec.endswith('+'):
        return value.startswith(spec[:-1])
    return value == spec


def _views(packet):
    """Each (src, dst, sport, dport, in) the packet was seen with (before and after NAT)."""
    views = []
    hops = packet.get('hops') or []
    for hop in hops:
        views.append((hop.get('src'), hop.get('dst'), hop.get('sport'), hop.get('dport'), hop.get('in')))
    if not views:
        views.append((packet.get('src'), packet.get('dst'), packet.get('sport'), packet.get('dport'), None))
    return views


def flow_matches(packet, match, both_directions=True):
    """Does ``packet`` (parser dict) belong to the flow ``match`` describes?

    A packet matches when any of its hops (addresses and ports change with NAT) matches; with
    ``both_directions`` the reverse view (source and destination swapped) matches replies too,
    where ``in_interface`` is not checked.
    """
    if not match:
        return True
    proto = _norm_proto(match.get('protocol'))
    if proto and proto != 'all' and _norm_proto(packet.get('proto')) != proto:
        return False
    for src, dst, sport, dport, iif in _views(packet):
        if (_addr_in(match.get('source'), src) and _addr_in(match.get('destination'), dst)
                and _port_in(match.get('source_port'), sport) and _port_in(match.get('destination_port'), dport)
                and _iface_in(match.get('in_interface'), iif)):
            return True
        if both_directions and (
                _addr_in(match.get('source'), dst) and _addr_in(match.get('destination'), src)
                and _port_in(match.get('source_port'), dport) and _port_in(match.get('destination_port'), sport)):
            return True
    return False


def filter_packets(packets, match, both_directions=True):
    kept, dropped = [], 0
    for p in packets:
        if flow_matches(p, match, both_directions):
            kept.append(p)
        else:
            dropped += 1
    return kept, dropped


def drop_orphans(packets):
    """Packets whose first hop is not in the raw table (their start was another host's, or lost)."""
    kept, dropped = [], 0
    for p in packets:
        hops = p.get('hops') or []
        if hops and hops[0].get('table') not in ('raw', None):
            dropped += 1
        else:
            kept.append(p)
    return kept, dropped


# ---------------------------------------------------------------------------------------- warnings
def loss_warnings(lines):
    """Warnings for lines that say log lines were lost (deduplicated, with totals)."""
    totals = {}
    order = []
    for line in lines:
        for regex, text in LOSS_PATTERNS:
            m = regex.search(line)
            if not m:
                continue
            n = next((int(g) for g in m.groups() if g and g.isdigit()), None)
            what = m.group(1) if m.groups() and m.group(1) and not m.group(1).isdigit() else ''
            key = (text, what)
            if key not in totals:
                totals[key] = None
                order.append(key)
            if n is not None:
                totals[key] = (totals[key] or 0) + n
            break
    out = []
    for key in order:
        text, what = key
        n = totals[key]
        out.append(text.format(n=n if n is not None else 'some', what=what or 'kernel'))
    return out


# ---------------------------------------------------------------------------------------- diagnosis
_EXP_RE = re.compile(r':exp=(\d+)')


def trace_rules_in(save_text):
    """TRACE rules in the raw table of an ``iptables-save`` text: list of dict(rule, ours, expires)."""
    out = []
    for rule in parse_save(save_text).rules('raw'):
        tokens = rule.tokens
        if any(tok == '-j' and nxt == 'TRACE' for tok, nxt in zip(tokens, tokens[1:])):
            # ours: any virtnet: comment (also rule sets tagged by hand), expiry as trace_rule writes it
            comment = rule.comment or ''
            exp = _EXP_RE.search(comment)
            out.append(dict(rule=rule.line, ours=comment.startswith('virtnet:'),
                            expires=int(exp.group(1)) if exp else None))
    return out


def diagnose_empty(source, facts, snapshots, cut=None, raw_count=0, foreign=0, flow_dropped=0, family='ipv4',
                   now=None, probe_result=None):
    """Likely causes, most likely first, when a capture returned no packet."""
    facts = facts or {}
    causes = []
    backend = facts.get('iptables_backend')
    cut = cut or {}
    if source == 'kernel_log' and backend == 'nft':
        causes.append('the host\'s iptables uses the nf_tables backend: its TRACE events go to nfnetlink, not to the '
                      'kernel log; use source=nfnetlink (xtables-monitor --trace)')
    if source == 'nfnetlink' and backend == 'legacy':
        causes.append('the host\'s iptables uses the legacy backend: its TRACE output goes to the kernel log, '
                      'not to nfnetlink; use source=kernel_log')
    if source == 'kernel_log' and cut and not cut.get('start'):
        causes.append('the start marker was not found in the kernel log: the ring buffer wrapped during the '
                      'capture (too much traffic traced, or a small log_buf_len), or the log is not readable')
    pf = 10 if family == 'ipv6' else 2
    if source == 'kernel_log':
        bound = (facts.get('nf_log_sysctl') or {}).get(pf, 'unknown')
        if bound is None:
            causes.append('no kernel logger is bound to net.netfilter.nf_log.%d: TRACE prints nothing '
                          '(run virtops.virtnet.nf_log)' % pf)
        elif bound in ('nfnetlink_log',):
            causes.append('net.netfilter.nf_log.%d is bound to nfnetlink_log: TRACE lines go to nfnetlink, not to '
                          'the kernel log (run virtops.virtnet.nf_log)' % pf)
        if facts.get('in_netns') and facts.get('nf_log_all_netns') in (0, None):
            causes.append('the host runs in a non-initial network namespace: kernels from 4.11 log its lines '
                          'only with net.netfilter.nf_log_all_netns=1 on the machine (%s here)' % (
                              'unreadable' if facts.get('nf_log_all_netns') is None else '0'))
    if raw_count and not flow_dropped and foreign >= raw_count:
        causes.append('%d trace lines were captured, all from other network namespaces sharing this kernel '
                      '(other hosts or containers)' % raw_count)
    if flow_dropped:
        causes.append('%d traced packets were captured but none matched the flow filter (match)' % flow_dropped)
    rules = []
    for fam, text in (snapshots or {}).items():
        rules.extend(trace_rules_in(text))
    ours = [r for r in rules if r['ours']]
    if not rules:
        causes.append('no TRACE rule in the raw table (add one with virtops.virtnet.trace_rule; an expired rule '
                      'of ours is removed by its remover)')
    elif not ours:
        causes.append('no TRACE rule of ours (comment virtnet:) in the raw table; the TRACE rules there are: %s'
                      % '; '.join(r['rule'] for r in rules[:3]))
    else:
        now = now if now is not None else facts.get('epoch')
        expired = [r for r in ours if r['expires'] is not None and now is not None and r['expires'] <= now]
        if expired and len(expired) == len(ours):
            causes.append('our TRACE rules have expired (-m time --datestop): they no longer match')
    if probe_result is not None and probe_result.get('rc') not in (0, None):
        causes.append('the probe command failed (rc=%s): maybe no traffic was sent' % probe_result.get('rc'))
    if not causes:
        causes.append('no matching traffic passed the host during the capture')
    return causes


# ---------------------------------------------------------------------------------------- choices
def choose_source(facts, source='auto', backend='auto'):
    """'kernel_log' or 'nfnetlink' for ``source`` auto: nfnetlink on nf_tables hosts with a monitor."""
    if source != 'auto':
        return source
    be = facts.get('iptables_backend') if backend == 'auto' else backend
    tools = facts.get('tools') or {}
    if be == 'nft' and ('xtables-monitor' in tools or 'nft' in tools):
        return 'nfnetlink'
    return 'kernel_log'


def choose_reader(facts, reader='auto'):
    if reader != 'auto':
        return reader
    tools = facts.get('tools') or {}
    if 'dmesg' in tools:
        return 'dmesg'
    if 'journalctl' in tools and facts.get('systemd'):
        return 'journalctl'
    return 'syslog'


def native_nft_tables(text):
    """``nft list tables`` output -> the ``family name`` of every table that iptables-nft did not create."""
    out = []
    for line in (text or '').splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == 'table' and words[2] not in XTABLES_TABLES:
            out.append('%s %s' % (words[1], words[2]))
    return out


def choose_monitor(facts, monitor='auto', native_tables=None):
    """The nfnetlink monitor: ``nft monitor trace`` when native nft tables hold rules (xtables-monitor
    prints their rules as made-up iptables commands, losing e.g. ``masquerade to :1024-65535``), else
    xtables-monitor (iptables syntax for iptables-nft rules), else nft."""
    tools = facts.get('tools') or {}
    if monitor != 'auto':
        return monitor
    if native_tables and 'nft' in tools:
        return 'nft'
    if 'xtables-monitor' in tools:
        return 'xtables-monitor'
    if 'nft' in tools:
        return 'nft'
    raise CaptureError('source nfnetlink needs xtables-monitor or nft on the host (neither found)')


UNPARSED_SHOWN = 5


def unparsed_summary(unparsed, count):
    """The parser's unparsed-line records -> what trace_capture returns and warns: ``count`` (all of
    them), ``lines`` (the first UNPARSED_SHOWN records, ``line`` numbered among the capture lines
    parsed) and ``warning`` (one sentence with the first few)."""
    count = max(int(count or 0), len(unparsed))
    shown = [dict(u) for u in unparsed[:UNPARSED_SHOWN]]
    warning = None
    if count:
        warning = '%d trace line%s of the capture could not be read (not in any packet): %s%s' % (
            count, '' if count == 1 else 's',
            '; '.join('line %s: %s: %s' % (u['line'], u['reason'], u['text'][:200]) for u in shown),
            '; ...' if count > len(shown) else '')
    return {'count': count, 'lines': shown, 'warning': warning}
