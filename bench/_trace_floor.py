# SPDX-License-Identifier: GPL-3.0-or-later
"""Common-case floors of the trace parser, for bench_trace_parse.py.

Each function is the parser's hot path cut down to what the benchmark's well-formed input needs:
the same field-block and head caches (the parser's own helpers), one 17-key hop dict per trace line,
grouping into packets, a window sweep and a finished-packet dict -- and nothing else: no malformed-line
checks, no other formats, no observed or implied NAT, no trace-id changes, no verdicts, no stats.
Output is NOT the parser's. They answer one question: how fast can a parser with this output
contract (every hop a dict, built as the line is read) go in this interpreter at all? The
benchmark records them as ``floor_common_case_times_grep`` next to our ratio.
"""
from __future__ import annotations

from collections import deque

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_parse as tp


class _Pkt(object):
    __slots__ = ("id", "key", "hops", "labels", "last_hook", "last_prio", "last_num", "chains", "seen", "done")

    def __init__(self, pid, key):
        self.id = pid
        self.key = key
        self.hops = []
        self.labels = []
        self.last_hook = None
        self.last_prio = None
        self.last_num = -1
        self.chains = set()
        self.seen = 0
        self.done = False


def _finish(pkt, source):
    first = pkt.hops[0]
    return {"id": pkt.id, "source": source, "family": None, "proto": None, "src": first["src"], "dst": first["dst"],
            "sport": first["sport"], "dport": first["dport"], "hops": pkt.hops, "nat": [], "verdict": None,
            "summary": " \u2192 ".join(pkt.labels)}


def _sweep(queue, index, tick, window, source):
    out = []
    while queue and queue[0].seen < tick - window:
        pkt = queue.popleft()
        if not pkt.done:
            pkt.done = True
            out.append(_finish(pkt, source))
            if index.get(pkt.key) is pkt:
                del index[pkt.key]
    return out


def kernel_log(lines, window=tp.DEFAULT_WINDOW):
    """Legacy ``TRACE:`` lines of a dmesg log -> packets (common case only)."""
    parser = tp._Parser()
    caches = parser.legacy_caches
    by_key = {}
    queue = deque()
    last_rest = record = None
    tick = serial = 0
    next_hooks = tp._NEXT_HOOKS
    for line in lines:
        at = line.find("TRACE: ")
        if at < 0:
            continue
        tick += 1
        sp = line.find(" ", at + 7)
        head = line[at + 7:sp]
        info = parser.heads.get(head) or parser._legacy_head(head)
        rest = line[sp + 1:]
        if rest != last_rest:
            record = tp._legacy_fields(rest, caches)
            last_rest = rest
        time = line[1:line.find("]")].strip()
        _table, _chain, _kind, rulenum, hook, prio, label, hdict = info
        key = record[4]
        pkt = by_key.get(key)
        if pkt is not None:
            last = pkt.last_hook
            if not (hook == last and (prio > pkt.last_prio or prio == pkt.last_prio and rulenum > pkt.last_num)
                    or last is not None and hook in next_hooks[last]):
                pkt = None
        if pkt is None:
            serial += 1
            pkt = by_key[key] = _Pkt("legacy-%d" % serial, key)
            queue.append(pkt)
        hop = record[5].copy()
        hop.update(hdict)
        hop["sport"] = record[2]
        hop["dport"] = record[3]
        hop["time"] = time
        pkt.hops.append(hop)
        pkt.labels.append(label)
        pkt.last_hook, pkt.last_prio, pkt.last_num, pkt.seen = hook, prio, rulenum, tick
        if not tick & 255:
            yield from _sweep(queue, by_key, tick, window, "legacy")
    yield from _sweep(queue, by_key, tick + window + 1, window, "legacy")


def xtables(lines, window=tp.DEFAULT_WINDOW):
    """``xtables-monitor --trace`` lines -> packets (common case only)."""
    parser = tp._Parser()
    caches = parser.xt_caches
    heads = {}
    by_id = {}
    queue = deque()
    last_body = fields = pkt = None
    fresh = False
    tick = 0
    next_hooks = tp._NEXT_HOOKS
    for line in lines:
        if line[0] == "P":
            sp1 = line.find(" ", 8)
            sp2 = line.find(" ", sp1 + 1)
            body = line[sp2 + 1:]
            if body != last_body:
                fields = tp._xt_fields(body.rstrip("\r\n"), caches)
                last_body = body
            fresh = True
            continue
        tick += 1
        sp1 = line.find(" ", 9)
        sp2 = line.find(" ", sp1 + 1)
        pid = line[sp1 + 1:sp2]
        rest = line[sp2 + 1:]
        info = heads.get(rest) or heads.setdefault(rest, parser._xt_info(rest))
        _table, _chain, _kind, _verdict, hook, label, hdict, _proto, chain_key, _implied, _vclass = info
        if fresh:
            fresh = False
            pkt = by_id.get(pid)
            if pkt is not None and hook is not None:
                last = pkt.last_hook
                if chain_key in pkt.chains or not (last is None or hook == last or hook in next_hooks[last]):
                    pkt.seen = -window - 1     # reused id: the sweep closes it
                    pkt = None
            if pkt is None:
                pkt = by_id[pid] = _Pkt(pid, pid)
                queue.append(pkt)
            pkt.chains.add(chain_key)
        hop = fields[2].copy()
        hop["sport"] = fields[4]
        hop["dport"] = fields[5]
        hop.update(hdict)
        pkt.hops.append(hop)
        pkt.labels.append(label)
        if hook is not None:
            pkt.last_hook = hook
        pkt.seen = tick
        if not tick & 255:
            yield from _sweep(queue, by_id, tick, window, "xtables")
    yield from _sweep(queue, by_id, tick + window + 1, window, "xtables")
