# -*- coding: utf-8 -*-
# Copyright (c) 2026, virtops.virtnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Netfilter trace parser (controller side).

PRIVATE MODULE: this is not a public API of the collection. It may change at any time
without notice. It serves the ``virtops.virtnet.nf_trace``/``nf_log_entries`` filters, the
``nf_trace_report`` filter and the ``trace_capture`` action plugin.

Input (auto-detected line by line, unrelated lines are ignored):

* legacy kernel log lines ``TRACE: table:chain:type:rulenum IN=... OUT=... ...`` as printed
  by ``dmesg`` (``[  123.456789] TRACE: ...``), ``dmesg -T`` (``[Thu Nov 26 20:56:35 2026]``),
  syslog files (``Nov 26 20:56:35 host kernel: [..] TRACE: ...``) and ``journalctl -k``
  (``short`` and ``short-iso``);
* ``xtables-monitor --trace`` (``PACKET: 2 1a2b3c4d IN=...`` followed by
  ``TRACE: 2 1a2b3c4d raw:PREROUTING:rule:0x3:CONTINUE  -4 -t raw -A ...``);
* ``nft monitor trace`` (``trace id 1a2b3c4d ip raw prerouting packet: ...``,
  ``... rule ... (verdict continue)``, ``... policy accept``, ``... verdict ...``).

API (used by ``trace_capture`` and the filters):

``iter_packets(lines, stats=None, window=DEFAULT_WINDOW, max_open=DEFAULT_MAX_OPEN)``
    Generator: lines in (any iterable of str), packets out. A packet is yielded when it is
    complete: when no further hop can join it, i.e. when ``window`` trace lines went by
    without a hop for it, when the open-packet table exceeds ``max_open`` (oldest first),
    when its nft trace id starts a new packet, or at the end of the input. Memory is bounded
    by ``max_open`` open packets whatever the input size. ``stats`` (a dict, optional) is
    filled in place: ``lines``, ``trace_lines``, ``malformed``, ``packets``, ``suppressed``
    (kernel ``callbacks suppressed`` lines, i.e. lost log lines).

``parse(text_or_lines, with_unparsed=False, **kwargs) -> {'packets': [...], 'stats': {...}}``
    Whole input at once; packets in order of first appearance. Never raises on any input. With
    ``with_unparsed``, also ``unparsed``: the trace-looking lines that could not be read, each
    ``{'line': N (from 1), 'text': the line as given, 'reason': ...}`` (the first ``MAX_UNPARSED``).

``parse_log_entries(lines) -> list of dict``
    LOG-target lines (with or without ``--log-prefix``) to dicts: ``time``, ``prefix``,
    ``in``, ``out``, ``src``, ``dst``, ``proto``, ``sport``, ``dport``, every other
    ``KEY=VALUE`` field lower-cased (numbers as int), bare words in ``flags``, ``opt`` and the
    ICMP error's inner packet in ``inner``.

``annotate(packets, iptables_save_text, ip6tables_save_text=None) -> packets``
    Resolves legacy ``(table, chain, rulenum)`` to the ``iptables-save`` rule line and policy
    hops to the chain policy, sets each hop's ``verdict`` from the rule's target, and adds the
    translation a NAT rule implies (MASQUERADE/SNAT/DNAT/REDIRECT) to the packet's ``nat``
    list (``implied: true``). Recomputes ``verdict`` and ``summary``. Mutates and returns.

``parse_iptables_save(text) -> {table: {'policies': {chain: policy}, 'rules': {chain: [line, ...]}}}``
    The snapshot model ``annotate`` uses (rule lines in order, so ``rulenum`` N is index N-1).

Packet schema: ``id``, ``family`` (ipv4|ipv6), ``proto``, ``src``, ``dst``, ``sport``, ``dport``
(as first seen), ``hops``, ``nat``, ``verdict``, ``summary``, ``source`` (legacy|xtables|nft|ebtables);
``approximate`` (true) and ``conntrack`` only where they apply.
Hop schema: ``table``, ``chain``, ``kind`` (rule|policy|return), ``rulenum``, ``handle``,
``verdict``, ``rule``, ``in``, ``out``, ``physin``, ``physout``, ``src``, ``dst``, ``sport``,
``dport``, ``ttl``, ``time``. NAT entry: ``hop`` (index), ``field``, ``before``, ``after``,
``implied``.

Nothing here raises on input text, and no trace-looking line (``TRACE:``, ``PACKET:``, ``trace id``)
is dropped silently. Tolerant path (slow, only for lines the fast paths cannot read): the line is
respaced (``_tolerant_line``: quote marks and line numbers off, runs of blanks and TABs made one
space, fields glued together split by their known names) and read again; if it still cannot be read
but is a ``TRACE:`` line with addresses (redacted: ``MAC=... SRC=a DST=b ...``; cut short; an
ebtables ``--log`` line ``TRACE: eb:broute:BROUTING ... IP SRC=a IP DST=b, ...``), ``_salvage`` makes
it a hop of a packet grouped by family, addresses and hook order, marked ``approximate: true``
(source ``ebtables`` for ebtables lines); else it is counted in ``stats['malformed']`` and recorded
as unparsed with a reason. Glued xtables ports (``ID=43007SPORT=80``) are read respaced in
``_xt_after``; the older xtables-monitor order (TRACE line before its PACKET line) fills the hop
from the PACKET line that follows it (``_xt_fill``). ``nft monitor trace`` ``conntrack:`` lines set
the packet's ``conntrack`` (the key is present only then).
The kernel may change an nft trace id on the way (IPv6 forwarding reallocates the skb): a new id
at FORWARD/INPUT/POSTROUTING joins the open packet with the same IP ID / flow label.

Fast path (1M-line logs; see bench/bench_trace_parse.py). ``run`` is one loop with the legacy
and xtables hop paths written out inline (no call per line); a line that cannot be read raises
``_Malformed`` inside it and is counted. Per line, one ``str.find("TRACE: ")``; noise lines cost a
few more C-level ``find`` calls and nothing else. Lines are not ``rstrip``-ed (a copy of every
line): the line end stays part of the cache keys and is stripped only where a cache miss parses
the text. Hop heads (``table:chain:kind:num``; xtables' head plus rule text, with its implied NAT
and verdict class) are parsed once and cached with their summary label. Field blocks (a legacy
line after its head, an xtables ``PACKET:`` body) are split around the IP ID / flow label: the part
before it (interfaces, MACs, addresses, length, TTL) repeats across the packets of a flow and is
parsed once per distinct text into a hop template (per-parser ``_Cache``, bounded); the ID and the
ports after it are read with ``str.find``; blocks the split does not fit go to the ``*_regex``
functions, so no output depends on the path. A hop is ``template.copy()`` plus the head's keys,
the ports and the time. Observed NAT, the final verdict and implied NAT entries are recorded hop
by hop, so ``_finish`` does not walk the hops again. The outputs are pinned by golden digests
(tests/unit/plugins/plugin_utils/netfilter/trace_golden.py).

Grouping. Legacy lines carry no packet id: a packet starts at a hop in raw:PREROUTING or
raw:OUTPUT; a later hop joins the most recent open packet of the same family, protocol and
IP ID (IPv6: flow label) whose last hop comes before it in netfilter hook order (hook, then
table priority, then rule position); addresses and ports may change on the way (NAT).
nft formats group by trace id; an id seen again at PREROUTING/OUTPUT after later hooks, or
in a chain the packet already went through, starts a new packet (the kernel reuses ids).
"""

from __future__ import annotations

import ipaddress
import re
from collections import OrderedDict, deque
from itertools import chain as _chain

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._ruleset import parse_save

DEFAULT_WINDOW = 2000
DEFAULT_MAX_OPEN = 4096
_SWEEP_EVERY = 256

_KINDS = frozenset(("rule", "policy", "return"))
_HOOK_OF = {
    "PREROUTING": "PREROUTING", "INPUT": "INPUT", "FORWARD": "FORWARD",
    "OUTPUT": "OUTPUT", "POSTROUTING": "POSTROUTING",
}
_NEXT_HOOKS = {
    "PREROUTING": frozenset(("INPUT", "FORWARD")),
    "INPUT": frozenset(),
    "FORWARD": frozenset(("POSTROUTING",)),
    "OUTPUT": frozenset(("POSTROUTING",)),
    "POSTROUTING": frozenset(),
}
_HOOK_RANK = {"PREROUTING": 0, "OUTPUT": 0, "INPUT": 1, "FORWARD": 1, "POSTROUTING": 2}
_TABLE_PRIO = {"raw": -300, "mangle": -150, "nat": -100, "filter": 0, "security": 50}
_FAMILIES = {"2": "ipv4", "10": "ipv6", "7": "bridge", "3": "arp", "1": "inet", "5": "netdev"}
_PROTO_NAMES = {"TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "ICMPv6": "icmpv6", "UDPLITE": "udplite",
                "SCTP": "sctp", "IGMP": "igmp", "GRE": "gre", "ESP": "esp", "AH": "ah"}
_TCP_FLAGS = ("CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN")
_TERMINAL = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject", "RETURN": "return",
             "QUEUE": "queue", "NFQUEUE": "queue", "MASQUERADE": "accept", "SNAT": "accept",
             "DNAT": "accept", "REDIRECT": "accept", "NETMAP": "accept", "TPROXY": "accept",
             "CT": "continue", "NOTRACK": "continue"}
_NAT_FIELDS = ("src", "dst", "sport", "dport")
_HEX = "0123456789abcdef"
_NAT_ENUM = tuple(enumerate(_NAT_FIELDS))
_NO_NAT = (None, None, None, None)
_EMPTY_HOP = {"table": None, "chain": None, "kind": None, "rulenum": None, "handle": None, "verdict": None,
              "rule": None, "in": None, "out": None, "physin": None, "physout": None, "src": None, "dst": None,
              "sport": None, "dport": None, "ttl": None, "time": None}

# legacy body after "TRACE: table:chain:type:num " -- only the fixed-order head of the line.
_LEGACY_RE = re.compile(
    r"IN=(\S*) OUT=(\S*) (?:PHYSIN=(\S*) )?(?:PHYSOUT=(\S*) )?(?:MAC=\S* )?SRC=(\S+) DST=(\S+) LEN=\d+ "
    r"(?:TOS=\S+ PREC=\S+ TTL=(\d+) ID=(\d+)|TC=\d+ HOPLIMIT=(\d+) FLOWLBL=(\d+))")
_SYSLOG_RE = re.compile(
    r"^\s*(?:<\d+>)?(?:(\w{3} [ \d]\d \d\d:\d\d:\d\d)|(\d{4}-\d\d-\d\dT[\d:.,]+(?:Z|[+-]\d\d:?\d\d)?))"
    r" \S+ kernel: ")
_CLOCK_RE = re.compile(r"(?:^|\s)(\d\d:\d\d:\d\d(?:[.,]\d+)?)(?=\s|$)")
_NFT_FIELD_RE = re.compile(
    r'\b(iif|oif|iifname|oifname) "([^"]*)"|\b(ip6?) (saddr|daddr|ttl|hoplimit|id|flowlabel|protocol|nexthdr) '
    r'(\S+)|\b(tcp|udp|udplite|sctp|dccp|th) (sport|dport) (\d+)|\b(icmp|icmpv6) type')


_PROTO_NUMBERS = {"1": "icmp", "6": "tcp", "17": "udp", "58": "icmpv6", "132": "sctp"}   # ebtables: IP proto=6
_PORTED = frozenset(("tcp", "udp", "udplite", "sctp", "dccp"))
MAX_UNPARSED = 1000         # unparsed lines kept with their text (all are counted in stats['malformed'])

# ---------------------------------------------------------------- tolerant reading (slow path only)
# Lines the fast paths cannot read are respaced and read again (``_tolerant_line``); what still cannot
# be read is salvaged into an approximate packet when it carries addresses (``_Parser._salvage``), or
# reported unparsed with a reason. None of this runs for a line the fast paths read.
_FIELD_NAMES = ("PHYSIN|PHYSOUT|IN|OUT|MACSRC|MACDST|MACPROTO|MAC|SRC|DST|LEN|TOS|PREC|TTL|ID|FRAG|PROTO|SPT|DPT|"
                "SPORT|DPORT|SEQ|ACK|WINDOW|RES|URGP|TC|HOPLIMIT|FLOWLBL|TYPE|CODE|MTU|UID|GID|MARK|LL|VPROTO|VID")
# a known field name glued to the value before it (``policy:2IN=eth0``, ``LEN=84TOS=``, ``ID=43007SPORT=80``)
_GLUED_NAME_RE = re.compile(r"(?:(?<=[^\sA-Z])|(?<=DF)|(?<=MF)|(?<=CE))(?=(?:%s)=)" % _FIELD_NAMES)
# a number glued to the flag after it (``ID=0DF``, ``DPORT=80SYN``)
_GLUED_FLAG_RE = re.compile(r"\b((?:ID|SPT|DPT|SPORT|DPORT|LEN|TTL|WINDOW|URGP|HOPLIMIT|FLOWLBL|SEQ|ACK|TYPE|CODE|"
                            r"MTU|UID|GID|FRAG)=\d+)(?=[A-Z])")
_GLUED_PROTO_RE = re.compile(r"\b(PROTO=(?:TCP|UDPLITE|UDP|ICMPv6|ICMP|SCTP|DCCP|GRE|ESP|AH|IGMP))(?=[A-Z])")
_GLUED_TAG_RE = re.compile(r"\b(TRACE|PACKET):(?=\S)")
_SPACES_RE = re.compile(r"[ \t\v\f\u00a0]+")
# what people put before a pasted line: quote marks, a line number (``12:``, ``12 |``, ``  12  [``)
_QUOTE_RE = re.compile(r"^\s*(?:(?:>+|\|)\s*)*(?:\d+\s*[:|]\s+|\d+\s+(?=\[|<\d|TRACE|PACKET|trace id|\w{3} [ \d]\d ))?")


def _respace(text):
    """``text`` with runs of blanks made one space and glued fields split by their known names."""
    text = _SPACES_RE.sub(" ", text)
    text = _GLUED_NAME_RE.sub(" ", text)
    text = _GLUED_FLAG_RE.sub(r"\1 ", text)
    return _GLUED_PROTO_RE.sub(r"\1 ", text)


def _tolerant_line(line):
    """A line as the fast paths expect it: no quoting or line number, one space between fields."""
    text = line.rstrip("\r\n")
    text = _QUOTE_RE.sub("", text, 1)
    text = _respace(text).strip(" ")
    return _GLUED_TAG_RE.sub(r"\1: ", text)


def _reason(text):
    """Why a trace-looking line could not be read (for the ``unparsed`` records)."""
    at = text.find("TRACE:")
    if at >= 0:
        rest = text[at + 6:].split()
        if not rest:
            return "TRACE line with nothing after TRACE:"
        if rest[0].isdigit():
            return "xtables-monitor TRACE line: trace id or 'table:chain:kind:...' head not readable"
        if rest[0].count(":") < 3:
            return "TRACE line: head %r is not table:chain:type:rulenum" % rest[0][:60]
        if "SRC=" not in text or "DST=" not in text:
            return "TRACE line without SRC=/DST= addresses (truncated?)"
        return "TRACE line: fields not readable (truncated or unknown layout)"
    if "PACKET:" in text:
        return "xtables-monitor PACKET line: family, trace id or fields not readable"
    if "trace id" in text:
        return "nft monitor trace line of an unknown form"
    return "not a text line"


def _to_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _header_time(prefix):
    """Timestamp text of a kernel log line from the part before the message."""
    p = prefix.strip()
    if not p:
        return None
    if p[0] == "[":
        end = p.find("]")
        return p[1:end].strip() if end > 0 else None
    m = _SYSLOG_RE.match(prefix)
    if m is None:
        q = _QUOTE_RE.match(prefix).end()
        if q and prefix[:q].strip():
            return _header_time(prefix[q:])     # a quoted or numbered line: ``> Nov 26 ...``, ``12: [...]``
    if m:
        rest = prefix[m.end():].lstrip()
        if rest.startswith("["):
            end = rest.find("]")
            if end > 0:
                return rest[1:end].strip()
        return m.group(1) or m.group(2)
    lb = p.rfind("[")
    rb = p.rfind("]")
    if 0 <= lb < rb:
        return p[lb + 1:rb].strip()
    m = _CLOCK_RE.search(p)
    return m.group(1) if m else None


def hook_of_chain(chain, fields=None):
    """Netfilter hook of a chain: from its name when it says (nft/builtin names), else from in/out.

    ``fields`` is a hop (or field dict) with ``in``/``out``; ``None`` when the interfaces must not be
    used to guess (legacy user chains). The report draws hops with the same function."""
    low = chain.lower()
    if "prerout" in low or low in ("pre", "prer", "dstnat"):
        return "PREROUTING"
    if "postrout" in low or low in ("post", "srcnat"):
        return "POSTROUTING"
    if "forward" in low or low in ("fwd", "fw"):
        return "FORWARD"
    if "input" in low or low == "in":
        return "INPUT"
    if "output" in low or low == "out":
        return "OUTPUT"
    if fields is None:
        return None
    if fields.get("in") and fields.get("out"):
        return "FORWARD"
    if fields.get("in"):
        return "PREROUTING"
    if fields.get("out"):
        return "OUTPUT"
    return None


# libvirt's nftables backend (firewall_backend = "nftables", libvirt >= 10.4): table ip/ip6 libvirt_network.
# Its base chains are forward (hook forward) and guest_nat (hook postrouting, srcnat): names that do not
# say their hook; its regular chains are reached from forward.
LIBVIRT_NFT_TABLE = "libvirt_network"
LIBVIRT_NFT_HOOKS = {"forward": "FORWARD", "guest_output": "FORWARD", "guest_input": "FORWARD",
                     "guest_cross": "FORWARD", "guest_nat": "POSTROUTING"}


def _hook_of_nft(chain, fields, table=None):
    """Hook of an nft chain: libvirt's known chains first, then ``hook_of_chain``."""
    if table == LIBVIRT_NFT_TABLE and chain in LIBVIRT_NFT_HOOKS:
        return LIBVIRT_NFT_HOOKS[chain]
    return hook_of_chain(chain, fields)


class _Packet(object):
    """An open packet. Class attributes are the defaults: only what is set lands on the instance."""
    id = source = family = proto = key = None
    last_hook = last_table = last_prio = None
    last_num = -1
    seen = born = 0
    chains = fields = ikey = aliases = labels = nat = nt = None
    implied = fverdict = None   # xtables hops: implied NAT entries and final verdict, kept hop by hop
    done = untracked = False    # untracked: an nft hop joined, _finish walks the hops
    approx = False              # grouped by addresses and hook order only (no IP ID / trace id)
    ct = None                   # nft monitor trace ``conntrack:`` text

    def __init__(self, serial, pid, source, family, proto, key):
        self.serial = serial
        self.id = pid
        self.source = source
        self.family = family
        self.proto = proto
        self.key = key
        self.hops = []


def _table_prio(table, hook):
    if table == "nat" and hook in ("INPUT", "POSTROUTING"):
        return 100
    return _TABLE_PRIO.get(table, 0)


def _hop_label(hop):
    kind = hop.get("kind")
    label = "%s:%s %s" % (hop.get("table"), hop.get("chain"), kind)
    if kind == "rule":
        if hop.get("rulenum") is not None:
            label += " %s" % hop["rulenum"]
        elif hop.get("handle") is not None:
            label += " #%s" % hop["handle"]
    verdict = hop.get("verdict")
    if verdict and verdict != "continue" and not (kind == "return" and verdict == "return"):
        label += " %s" % verdict
    return label


def _finish(pkt):
    """Turn an open packet into its public dict: NAT changes, final verdict, summary."""
    hops = pkt.hops
    first = hops[0] if hops else {}
    if pkt.nat is not None:
        nat = pkt.nat
    else:
        nat = []
        prev = first
        for index in range(1, len(hops)):
            hop = hops[index]
            for field in _NAT_FIELDS:
                before = prev.get(field)
                after = hop.get(field)
                if before != after and before is not None and after is not None:
                    nat.append({"hop": index, "field": field, "before": before, "after": after,
                                "implied": False})
            prev = hop
    verdict = None
    if pkt.source == "legacy":
        pass
    elif not pkt.untracked:
        if pkt.implied:
            nat.extend(pkt.implied)
        verdict = pkt.fverdict
    else:
        for index, hop in enumerate(hops):
            if hop["rule"] is not None and hop["kind"] == "rule":
                nat.extend(_implied_nat(index, hop))
            v = hop["verdict"]
            if v is not None:
                if v in ("drop", "reject", "queue"):
                    verdict = v
                elif v == "accept" and verdict not in ("drop", "reject", "queue"):
                    verdict = v
    if pkt.labels is not None:
        summary = " \u2192 ".join(pkt.labels)
    else:
        summary = " \u2192 ".join(_hop_label(h) for h in hops)
    packet = {
        "id": pkt.id,
        "source": pkt.source,
        "family": pkt.family,
        "proto": pkt.proto,
        "src": first["src"] if hops else None,
        "dst": first["dst"] if hops else None,
        "sport": first["sport"] if hops else None,
        "dport": first["dport"] if hops else None,
        "hops": hops,
        "nat": nat,
        "verdict": verdict,
        "summary": summary,
    }
    if pkt.approx:
        packet["approximate"] = True
    if pkt.ct is not None:
        packet["conntrack"] = pkt.ct
    return packet


def _final_verdict(hops):
    final = None
    for hop in hops:
        verdict = hop.get("verdict")
        if verdict in ("drop", "reject", "queue"):
            return verdict
        if verdict == "accept":
            final = verdict
    return final


_NAT_TARGET_RE = re.compile(
    r"(?:-j (MASQUERADE|SNAT|DNAT|REDIRECT|NETMAP)\b(.*))|(?:\b(masquerade|snat|dnat|redirect)\b(.*))")


_NAT_RULES = {}


def _nat_rule(rule):
    """(target, to) of a NAT rule text, or None; cached."""
    try:
        return _NAT_RULES[rule]
    except KeyError:
        pass
    m = _NAT_TARGET_RE.search(rule)
    value = None
    if m:
        target = (m.group(1) or m.group(3) or "").upper()
        words = ((m.group(2) if m.group(1) else m.group(4)) or "").split()
        to = None
        for i, word in enumerate(words):
            if word in ("--to-source", "--to-destination", "--to-ports", "--to", "to") and i + 1 < len(words):
                to = words[i + 1]
                break
        value = (target, to)
    if len(_NAT_RULES) > 4096:
        _NAT_RULES.clear()
    _NAT_RULES[rule] = value
    return value


def _implied_nat(index, hop):
    """NAT entries a matched rule implies (iptables ``-j SNAT ...`` or nft ``snat to ...``)."""
    found = _nat_rule(hop["rule"])
    if found is None:
        return []
    target, to = found
    if target in ("MASQUERADE", "SNAT"):
        field = "src"
        after = to if target == "SNAT" and to else "%s%s" % (
            "address of %s" % hop["out"] if hop.get("out") else "outgoing address",
            " ports %s" % to if to else "")
    elif target in ("DNAT", "REDIRECT"):
        field = "dst"
        if target == "REDIRECT":
            after = "local address%s" % (" port %s" % to.lstrip(":") if to else "")
        else:
            after = to or "?"
    else:
        field = "src" if hop.get("chain", "").upper().startswith("POST") else "dst"
        after = to or "?"
    return [{"hop": index, "field": field, "before": hop.get(field), "after": after,
             "implied": True, "target": target}]


def _xt_fields_slow(body):
    """Fields of an ``xtables-monitor`` PACKET line body (after ``PACKET: fam id ``)."""
    f = {"in": None, "out": None, "physin": None, "physout": None, "src": None, "dst": None,
         "sport": None, "dport": None, "ttl": None, "ipid": None, "proto": None}
    tcp = False
    for tok in body.split():
        k, sep, v = tok.partition("=")
        if not sep:
            if tok in _TCP_FLAGS:
                tcp = True
            continue
        if k == "IN":
            f["in"] = v or None
        elif k == "OUT":
            f["out"] = v or None
        elif k == "PHYSIN":
            f["physin"] = v or None
        elif k == "PHYSOUT":
            f["physout"] = v or None
        elif k == "SRC" and f["src"] is None:
            f["src"] = v
        elif k == "DST" and f["dst"] is None:
            f["dst"] = v
        elif k == "SPORT":
            f["sport"] = _to_int(v)
        elif k == "DPORT":
            f["dport"] = _to_int(v)
        elif k in ("TTL", "HOPLIMIT"):
            f["ttl"] = _to_int(v)
        elif k in ("ID", "FLOWLBL"):
            f["ipid"] = v
        elif k == "PROTO":
            f["proto"] = v.lower()
    if f["proto"] is None and f["sport"] is not None:
        f["proto"] = "tcp" if tcp else "udp"
    return f


def _hop_template(i_n, out, physin, physout, src, dst, sport, dport, ttl):
    """A hop dict with the packet fields filled in (the schema's key order)."""
    return {"table": None, "chain": None, "kind": None, "rulenum": None, "handle": None, "verdict": None,
            "rule": None, "in": i_n, "out": out, "physin": physin, "physout": physout, "src": src, "dst": dst,
            "sport": sport, "dport": dport, "ttl": ttl, "time": None}


class _Cache(dict):
    """A dict that forgets everything when it grows past 1024 entries (bounded memory)."""

    def put(self, key, value):
        if len(self) > 1024:
            self.clear()
        self[key] = value
        return value


# Field blocks (a legacy TRACE line after its head, an xtables PACKET line after its id) are split
# around the IP ID (IPv6: the flow label). The part before it -- interfaces, MACs, addresses,
# length, TTL -- repeats across the packets of a flow: it is parsed once with an anchored regex and
# cached, with a hop template whose ports are left empty. The ID and the part after it (protocol,
# ports, flags; unique per packet) are read with str.find. Hops are built as template.copy() plus
# the head's keys, the ports and the time. Blocks the split does not fit go to the *_regex
# functions (one regex over the whole block, as before the split), so the output never depends on
# which path read a block.
_XT_HEAD = r"(?:IN=(\S*) )?(?:OUT=(\S*) )?(?:PHYSIN=(\S*) )?(?:PHYSOUT=(\S*) )?(?:MAC\S* )*SRC=(\S+) DST=(\S+) LEN=\d+ "
_XT_BEFORE = (re.compile(_XT_HEAD + r"TOS=\S+ TTL=(\d+)\Z"), re.compile(_XT_HEAD + r"TC=\S+ HOPLIMIT=(\d+)\Z"))
_LEGACY_HEAD = r"IN=(\S*) OUT=(\S*) (?:PHYSIN=(\S*) )?(?:PHYSOUT=(\S*) )?(?:MAC=\S* )?SRC=(\S+) DST=(\S+) LEN=\d+ "
_LEGACY_BEFORE = (re.compile(_LEGACY_HEAD + r"TOS=\S+ PREC=\S+ TTL=(\d+)\Z"),
                  re.compile(_LEGACY_HEAD + r"TC=\d+ HOPLIMIT=(\d+)\Z"))
_XT_TCP = (" SYN", " ACK", " FIN", " RST", " PSH", " URG")


def _before(text, regexes, v6):
    """The part of a field block before the IP ID -> (src, dst, hop template without ports), or ()."""
    m = regexes[v6].match(text)
    if m is None:
        return ()
    i_n, out, physin, physout, src, dst, ttl = m.groups()
    return (src, dst, _hop_template(i_n or None, out or None, physin or None, physout or None, src, dst,
                                    None, None, int(ttl)))


def _split(block, regexes, cache4, cache6):
    """(before, start of the ID's value, ipv6) of a field block, or None when the split does not fit."""
    i = block.find(" ID=")
    if i >= 0:
        text = block[:i]
        before = cache4.get(text)
        if before is None and " FLOWLBL=" not in text:
            before = cache4.put(text, _before(text, regexes, 0))
        if before:
            return before, i + 4, False
    # IPv6 (an ICMPv6 echo has an " ID=" of its own, after the flow label: never cached as IPv4)
    i = block.find(" FLOWLBL=")
    if i < 0:
        return None
    text = block[:i]
    before = cache6.get(text)
    if before is None:
        before = cache6.put(text, _before(text, regexes, 1))
    if before:
        return before, i + 9, True
    return None


def _xt_record(f):
    """The slow parser's field dict -> the record ``_xt_fields`` returns."""
    template = _hop_template(f["in"], f["out"], f["physin"], f["physout"], f["src"], f["dst"], f["sport"], f["dport"],
                             f["ttl"])
    return (f["proto"], f["ipid"], template, (f["src"], f["dst"], f["sport"], f["dport"]), f["sport"], f["dport"])


def _xt_after(b, start=0):
    """Fields after the IP ID (``" DF SPORT=1 DPORT=2 SYN ..."``, searched from ``start``):
    (sport, dport, proto)."""
    sport = dport = proto = None
    i = b.find(" SPORT=", start)
    if i >= 0:
        j = b.find(" DPORT=", i)
        if j > 0:
            sport = _to_int(b[i + 7:j])
            k = b.find(" ", j + 7)
            dport = _to_int(b[j + 7:k] if k >= 0 else b[j + 7:])
            tail = b[j:]
            proto = "udp"
            for flag in _XT_TCP:
                if flag in tail:
                    proto = "tcp"
                    break
    else:
        i = b.find(" PROTO=", start)
        if i >= 0:
            k = b.find(" ", i + 7)
            proto = (b[i + 7:k] if k >= 0 else b[i + 7:]).lower() or None
    if sport is None and b.find("PORT=", start) >= 0:
        # glued (``ID=43007SPORT=80``, some xtables-monitor builds) or odd whitespace: read it respaced
        spaced = _respace(b)
        if spaced != b:
            return _xt_after(spaced, 0)
    return sport, dport, proto


def _xt_fields(body, caches):
    """Fields of an ``xtables-monitor`` PACKET line body (after ``PACKET: fam id ``).

    Returns ``(proto, ipid, hop template, (src, dst, sport, dport), sport, dport)``. ``caches`` is the
    parser's (before IPv4, before IPv6, after) tuple of ``_Cache``.
    """
    split = _split(body, _XT_BEFORE, caches[0], caches[1])
    if split is None:
        return _xt_fields_regex(body)
    (src, dst, template), at, _v6 = split
    j = body.find(" ", at)
    ipid = body[at:j] if j >= 0 else body[at:]
    if not ipid.isdecimal():
        return _xt_fields_regex(body)
    b = body[j:] if j >= 0 else ""
    after = caches[2].get(b)
    if after is None:
        after = caches[2].put(b, _xt_after(b))
    sport, dport, proto = after
    return (proto, ipid, template, (src, dst, sport, dport), sport, dport)


_XT_RE = re.compile(
    r"(?:IN=(\S*) )?(?:OUT=(\S*) )?(?:PHYSIN=(\S*) )?(?:PHYSOUT=(\S*) )?(?:MAC\S* )*SRC=(\S+) DST=(\S+) LEN=\d+ "
    r"(?:TOS=\S+ TTL=(\d+) ID=(\d+)|TC=\S+ HOPLIMIT=(\d+) FLOWLBL=(\d+))")


def _xt_fields_regex(body):
    """``_xt_fields`` for the bodies its split does not fit: one anchored regex for the fixed-order
    head, ``str.find`` for the ports, ``_xt_fields_slow`` when even that does not match."""
    m = _XT_RE.match(body)
    if m is None:
        spaced = _respace(body)
        if spaced != body:
            return _xt_fields_regex(spaced)
        return _xt_record(_xt_fields_slow(body))
    i_n, out, physin, physout, src, dst, ttl4, id4, ttl6, id6 = m.groups()
    if ttl4 is not None:
        ttl, ipid = int(ttl4), id4
    else:
        ttl, ipid = int(ttl6), id6
    sport, dport, proto = _xt_after(body, m.end() - 1)
    i_n = i_n or None
    out = out or None
    physin = physin or None
    physout = physout or None
    return (proto, ipid, _hop_template(i_n, out, physin, physout, src, dst, sport, dport, ttl), (src, dst, sport, dport),
            sport, dport)


def _legacy_after(rest, start):
    """Protocol and ports of a legacy field block, searched from ``start`` (after the IP ID)."""
    proto = sport = dport = None
    p = rest.find(" PROTO=", start)
    if p >= 0:
        p += 7
        e = rest.find(" ", p)
        proto = rest[p:e] if e >= 0 else rest[p:]
        proto = _PROTO_NAMES.get(proto) or proto.lower()
        if e >= 0 and rest.startswith(" SPT=", e):
            e2 = rest.find(" DPT=", e + 5)
            if e2 > 0:
                sport = _to_int(rest[e + 5:e2])
                e3 = rest.find(" ", e2 + 5)
                dport = _to_int(rest[e2 + 5:e3] if e3 >= 0 else rest[e2 + 5:])
            else:
                raise _Malformed    # "SPT=1<TAB>DPT=2": the tolerant path reads it, never a silent None
        elif proto in _PORTED and rest.find("SPT=", p) >= 0:
            raise _Malformed        # "PROTO=TCP<TAB>SPT=..." (a fragment has no SPT= and stays as it is)
    return proto, sport, dport


def _legacy_fields_regex(rest):
    """``_legacy_fields`` for the field blocks its split does not fit: one regex for the fixed-order
    head, ``str.find`` for the protocol and ports."""
    m = _LEGACY_RE.match(rest)
    if m is None:
        return None
    g = m.groups()
    if g[6] is not None:
        family, ttl, ipid = "ipv4", int(g[6]), g[7]
    else:
        family, ttl, ipid = "ipv6", int(g[8]), g[9]
    proto, sport, dport = _legacy_after(rest, m.end() - 1)
    src, dst = g[4], g[5]
    return (src, dst, sport, dport, "%s %s %s" % (family, proto, ipid),
            _hop_template(g[0] or None, g[1] or None, g[2] or None, g[3] or None, src, dst, sport, dport, ttl),
            (src, dst, sport, dport), family, proto)


def _legacy_fields(rest, caches):
    """Field block of a legacy TRACE line (the text after the head) -> record, or None.

    Record: (src, dst, sport, dport, grouping key, hop template, (src, dst, sport, dport), family, proto).
    ``caches`` is the parser's (before IPv4, before IPv6) tuple of ``_Cache``."""
    if rest[-1:] == "\n":
        rest = rest.rstrip("\r\n")
    split = _split(rest, _LEGACY_BEFORE, caches[0], caches[1])
    if split is None:
        return _legacy_fields_regex(rest)
    (src, dst, template), at, v6 = split
    j = rest.find(" ", at)
    ipid = rest[at:j] if j >= 0 else rest[at:]
    if not ipid.isdecimal():
        return _legacy_fields_regex(rest)
    proto, sport, dport = _legacy_after(rest, j) if j >= 0 else (None, None, None)
    family = "ipv6" if v6 else "ipv4"
    return (src, dst, sport, dport, "%s %s %s" % (family, proto, ipid), template, (src, dst, sport, dport),
            family, proto)


def _nft_fields(body):
    """Fields of an ``nft monitor trace`` ``packet:`` line body."""
    f = {"in": None, "out": None, "physin": None, "physout": None, "src": None, "dst": None,
         "sport": None, "dport": None, "ttl": None, "ipid": None, "proto": None, "family": None}
    for m in _NFT_FIELD_RE.finditer(body):
        if m.group(1):
            key = "in" if m.group(1).startswith("i") else "out"
            if f[key] is None:
                f[key] = m.group(2)
        elif m.group(3):
            fam, what, value = m.group(3), m.group(4), m.group(5)
            if f["family"] is None:
                f["family"] = "ipv6" if fam == "ip6" else "ipv4"
            if what == "saddr":
                f["src"] = value
            elif what == "daddr":
                f["dst"] = value
            elif what in ("ttl", "hoplimit"):
                f["ttl"] = _to_int(value)
            elif what in ("id", "flowlabel"):
                f["ipid"] = value
            elif f["proto"] is None:
                f["proto"] = value
        elif m.group(6):
            if f["proto"] is None and m.group(6) != "th":
                f["proto"] = m.group(6)
            f[m.group(7)] = _to_int(m.group(8))
        elif m.group(9) and f["proto"] is None:
            f["proto"] = m.group(9)
    if f["proto"] == "ipv6-icmp":
        f["proto"] = "icmpv6"
    return f


def _xt_rule_text(text):
    """``-4 -t raw -A PREROUTING -p tcp ...`` -> ``-A PREROUTING -p tcp ...``."""
    words = text.split()
    i = 0
    while i < len(words) and words[i] in ("-4", "-6"):
        i += 1
    if i + 1 < len(words) and words[i] == "-t":
        i += 2
    return " ".join(words[i:]) or None


class _Malformed(Exception):
    """A trace line that cannot be read: counted in ``stats['malformed']`` and skipped."""


class _Parser(object):
    """State of one parse: open packets, counters. ``feed`` yields completed packets."""

    def __init__(self, stats=None, window=DEFAULT_WINDOW, max_open=DEFAULT_MAX_OPEN, with_serial=False):
        self.with_serial = with_serial
        self.stats = stats if stats is not None else {}
        for key in ("lines", "trace_lines", "malformed", "packets", "suppressed"):
            self.stats[key] = 0
        self.window = max(1, int(window))
        self.max_open = max(1, int(max_open))
        self.queue = deque()    # open packets, oldest first (swept by last activity)
        self.n_open = 0
        self.by_key = {}        # legacy (family, proto, ipid) -> [packets]
        self.by_id = {}         # nft/xtables trace id -> packet
        self.serial = 0
        self.tick = 0           # trace lines seen
        self.done = []          # completed packets waiting to be yielded
        self.legacy_n = 0
        self.heads = {}         # legacy "table:chain:kind:num" -> parsed tuple
        self.id_by_key = {}     # nft/xtables (family, proto, ip id) -> packet, to follow id changes
        self.xt_heads = {}      # xtables TRACE text after the id -> parsed tuple
        # xtables trace id -> [family, fields of the last PACKET line, fresh], oldest first
        self.xt_pending = OrderedDict()
        # field-block parts seen before (see _split): they die with the parse
        self.xt_caches = (_Cache(), _Cache(), _Cache())
        self.legacy_caches = (_Cache(), _Cache())
        self.unparsed = []      # the first MAX_UNPARSED unparsed trace-looking lines: {line, text, reason}
        self.retry_orig = None  # the line as it came, while its respaced form is read again
        self.xt_late = None     # xtables-monitor output in the older order (TRACE, then its PACKET)

    # ---------------------------------------------------------------- packet table
    def _new(self, pid, source, family, proto, key):
        self.serial += 1
        pkt = _Packet(self.serial, pid, source, family, proto, key)
        pkt.seen = pkt.born = self.tick
        self.queue.append(pkt)
        self.n_open += 1
        if self.n_open > self.max_open:
            queue = self.queue
            while queue:
                old = queue.popleft()
                if not old.done:
                    self._close(old)
                    break
        return pkt

    def _touch(self, pkt):
        pkt.seen = self.tick

    def _close(self, pkt):
        if pkt.done:
            return
        pkt.done = True
        self.n_open -= 1
        if pkt.key is not None:
            lst = self.by_key.get(pkt.key)
            if lst is not None:
                try:
                    lst.remove(pkt)
                except ValueError:
                    pass
                if not lst:
                    del self.by_key[pkt.key]
        else:
            by_id = self.by_id
            if by_id.get(pkt.id) is pkt:
                del by_id[pkt.id]
            for pid in pkt.aliases or ():
                if by_id.get(pid) is pkt:
                    del by_id[pid]
            if pkt.ikey is not None and self.id_by_key.get(pkt.ikey) is pkt:
                del self.id_by_key[pkt.ikey]
        if pkt.hops:
            self.stats["packets"] += 1
            self.done.append(pkt)

    def _sweep(self):
        cutoff = self.tick - self.window
        queue = self.queue
        # at most one look at each packet: an old packet that is still active goes to the back,
        # and would otherwise come round again and again (an endless loop)
        for _dummy in range(len(queue)):
            pkt = queue[0]
            if pkt.born > cutoff:
                break           # this one and all behind it are younger than the window
            queue.popleft()
            if pkt.done:
                continue
            if pkt.seen > cutoff:
                queue.append(pkt)   # old but still active: look at it again later
            else:
                self._close(pkt)

    def flush(self):
        queue = self.queue
        while queue:
            pkt = queue.popleft()
            if not pkt.done:
                self._close(pkt)

    # ---------------------------------------------------------------- line kinds
    def _legacy_head(self, head):
        """``raw:PREROUTING:policy:5`` -> (table, chain, kind, rulenum, hook, prio, label) or None."""
        if "\t" in head or head[:1].isspace():
            return None         # ``TRACE: <TAB>raw:...``: the tolerant path reads it
        parts = head.split(":")
        if len(parts) != 4:
            if len(parts) < 4:
                return None
            parts = [parts[0], ":".join(parts[1:-2]), parts[-2], parts[-1]]
        table, chain, kind, num = parts
        if kind not in _KINDS or not num.isdigit() or not table or not chain:
            return None
        rulenum = int(num)
        hook = _HOOK_OF.get(chain)
        prio = _table_prio(table, hook) if hook else None
        label = "%s:%s %s" % (table, chain, kind)
        if kind == "rule":
            label += " %d" % rulenum
        info = (table, chain, kind, rulenum, hook, prio, label,
                {"table": table, "chain": chain, "kind": kind, "rulenum": rulenum})
        if len(self.heads) > 4096:
            self.heads.clear()
        self.heads[head] = info
        return info

    def _id_packet(self, pid, source, family, hook, chain_key, ipid, proto):
        """Open packet for an nft/xtables trace id, or a new one when the id was reused."""
        pkt = self.by_id.get(pid)
        if pkt is not None and hook is not None:
            last = pkt.last_hook
            reused = False
            if chain_key is not None and pkt.chains is not None and chain_key in pkt.chains:
                reused = True
            elif last is not None and _HOOK_RANK.get(hook, 0) < _HOOK_RANK.get(last, 0):
                reused = True
            elif last is not None and hook != last and hook not in _NEXT_HOOKS.get(last, ()):
                reused = True
            if reused:
                self._close(pkt)
                pkt = None
        if pkt is not None:
            return pkt
        ikey = None
        if ipid is not None:
            ikey = (family, proto, ipid)
        if ikey is not None and hook not in (None, "PREROUTING", "OUTPUT"):
            # the kernel may give a packet a new trace id on the way (e.g. IPv6 forwarding
            # reallocates the skb): join the open packet with the same IP ID / flow label
            cand = self.id_by_key.get(ikey)
            if cand is not None and not cand.done and cand.last_hook is not None and (
                    hook in _NEXT_HOOKS.get(cand.last_hook, ())):
                self.by_id[pid] = cand
                if cand.aliases is None:
                    cand.aliases = []
                cand.aliases.append(pid)
                return cand
        pkt = self._new(pid, source, family, proto, None)
        pkt.chains = set()
        self.by_id[pid] = pkt
        if ikey is not None:
            pkt.ikey = ikey
            self.id_by_key[ikey] = pkt
        return pkt

    def _xt_head(self, head, rule_text):
        """``raw:PREROUTING:rule:0x3:CONTINUE`` (+ rule text) -> cached hop parts, or None."""
        parts = head.split(":")
        if len(parts) < 4:
            return None
        table, chain, kind = parts[0], parts[1], parts[2]
        if kind not in _KINDS or not table or not chain:
            return None
        handle = None
        if kind == "rule":
            if len(parts) < 5:
                return None
            num = parts[3]
            if num.startswith("0x") and _is_hex(num[2:]):
                handle = int(num, 16)
            else:
                handle = _to_int(num)
            verdict = parts[4].lower() or None
        elif kind == "policy":
            verdict = parts[3].lower() or None
        else:
            verdict = "return"
        rule = _xt_rule_text(rule_text) if rule_text else None
        hdict = {"table": table, "chain": chain, "kind": kind, "handle": handle, "verdict": verdict, "rule": rule}
        label = _hop_label(hdict)
        implied = _nat_rule(rule) if rule is not None and kind == "rule" else None
        vclass = 2 if verdict in ("drop", "reject", "queue") else 1 if verdict == "accept" else 0
        return (table, chain, kind, verdict, _HOOK_OF.get(chain), label, hdict, _proto_from_rule(rule_text),
                (table, chain), implied, vclass)

    def _xt_info(self, rest):
        """Text after an ``xtables-monitor`` TRACE line's id -> cached hop parts, or None."""
        key_rest = rest
        if rest[-1:] == "\n":
            rest = rest.rstrip("\r\n")
        if "\t" in rest:
            rest = rest.replace("\t", " ")
        head, _sp, rule_text = rest.strip(" ").partition(" ")
        info = self._xt_head(head, rule_text.strip())
        if info is None:
            return None
        if len(self.xt_heads) > 4096:
            self.xt_heads.clear()
        self.xt_heads[key_rest] = info
        return info

    def _nft(self, line, at):
        line = line.rstrip("\r\n")
        if "\t" in line:
            line = line.replace("\t", " ")
        if line[at + 8:at + 9] != " ":
            return False
        body = line[at + 9:]
        words = body.split(" ", 5)
        if len(words) < 5:
            return False
        pid, fam, table, chain, what = words[0], words[1], words[2], words[3], words[4]
        tail = words[5] if len(words) > 5 else ""
        if not _is_hex(pid):
            return False
        pkt = self.by_id.get(pid)
        if what == "packet:":
            fields = _nft_fields(_SPACES_RE.sub(" ", tail))
            family = fields.get("family") or {"ip": "ipv4", "ip6": "ipv6"}.get(fam, fam)
            hook = _hook_of_nft(chain, fields, table)
            chain_key = (fam, table, chain)
            pkt = self._id_packet(pid, "nft", family, hook, chain_key, fields.get("ipid"), fields.get("proto"))
            if pkt.proto is None:
                pkt.proto = fields.get("proto")
            if pkt.family in ("inet", "bridge", "netdev") and fields.get("family"):
                pkt.family = fields["family"]
            pkt.chains.add(chain_key)
            pkt.fields = fields
            if hook is not None:
                pkt.last_hook = hook
            self._touch(pkt)
            return True
        if what == "rule":
            kind = "rule"
            text = tail
            verdict = None
            vi = text.rfind(" (verdict ")
            if vi >= 0 and text.endswith(")"):
                verdict = " ".join(text[vi + 10:-1].split()) or None
                text = text[:vi]
            handle = None
            hi = text.rfind("# handle ")
            if hi >= 0:
                handle = _to_int(text[hi + 9:].split()[0]) if text[hi + 9:].split() else None
                text = text[:hi].rstrip()
        elif what == "conntrack:":
            # ``conntrack: ct direction original ct state new ct id 123`` (nft >= 1.0.8): the packet's state
            if pkt is None:
                hook = _hook_of_nft(chain, None, table)
                pkt = self._id_packet(pid, "nft", {"ip": "ipv4", "ip6": "ipv6"}.get(fam, fam), hook,
                                      (fam, table, chain), None, None)
            if pkt.ct is None:
                pkt.ct = tail.strip()
            self._touch(pkt)
            return True
        elif what in ("policy", "verdict"):
            text = None
            handle = None
            verdict = " ".join(tail.split()) or None
            kind = "policy" if what == "policy" else ("return" if verdict in ("continue", "return") else "rule")
        else:
            return False
        if pkt is None:
            hook = _hook_of_nft(chain, None, table)
            pkt = self._id_packet(pid, "nft", {"ip": "ipv4", "ip6": "ipv6"}.get(fam, fam), hook,
                                  (fam, table, chain), None, None)
            pkt.chains.add((fam, table, chain))
            if hook is not None:
                pkt.last_hook = hook
        if pkt.proto is None and text:
            pkt.proto = _proto_from_rule(text)
        f = pkt.fields or {}
        hop = {"table": table, "chain": chain, "kind": kind, "rulenum": None, "handle": handle,
               "verdict": verdict, "rule": text or None, "in": f.get("in"), "out": f.get("out"),
               "physin": f.get("physin"), "physout": f.get("physout"), "src": f.get("src"),
               "dst": f.get("dst"), "sport": f.get("sport"), "dport": f.get("dport"),
               "ttl": f.get("ttl"), "time": None}
        pkt.hops.append(hop)
        pkt.nat = None      # an xtables packet joined by an nft hop: _finish compares all hops
        pkt.untracked = True
        pkt.last_table = table
        self._touch(pkt)
        if verdict in ("drop", "reject"):
            self._close(pkt)
        return True

    # ---------------------------------------------------------------- driver
    def run(self, lines):
        """Lines in, completed packets out. The legacy and xtables hop paths are written out inline
        here (no call per line): they are the hot loop of 1M-line logs (bench/bench_trace_parse.py)."""
        stats = self.stats
        n = trace = bad = suppressed = 0
        done = self.done
        by_key = self.by_key
        by_id = self.by_id
        lheads = self.heads
        xheads = self.xt_heads
        pending = self.xt_pending
        max_open = self.max_open
        next_hooks = _NEXT_HOOKS
        families = _FAMILIES
        xt_caches = self.xt_caches
        legacy_caches = self.legacy_caches
        lrest = lf = None           # the last legacy field block: text and record
        xbody = xf = None           # the last xtables PACKET body: text and record
        every = min(_SWEEP_EVERY, self.window)
        sweep_at = every
        tick = self.tick            # trace lines seen; self.tick is set before each call that reads it
        base = source = iter(lines)
        retried = None              # the respaced line being read again (see _failed)
        try:
            while True:  # one more turn after each line read again (respaced, see _failed)
                for line in source:
                    n += 1
                    try:
                        at = line.find("TRACE:")
                    except (AttributeError, TypeError):
                        if isinstance(line, (bytes, bytearray)):
                            line = bytes(line).decode("utf-8", "replace")
                            at = line.find("TRACE:")
                        else:
                            bad += 1
                            self._unparsed(n, repr(line)[:300], "not a text line")
                            continue
                    if at < 0:
                        at = line.find("PACKET:")
                        if at != 0:
                            # nft monitor trace; else a PACKET line with a prefix; else noise
                            nft = line.find("trace id")
                            if nft >= 0 and line[nft + 8:nft + 9] in (" ", "\t"):
                                trace += 1
                                tick += 1
                                self.tick = tick
                                if not self._nft_safe(line, nft):
                                    fixed = self._failed(line, n, line is retried)
                                    if fixed:
                                        n -= 1
                                        trace -= 1
                                        tick -= 1
                                        retried = fixed
                                        source = _chain((fixed,), base)
                                        break
                                    if fixed is None:
                                        bad += 1
                                at = -2
                            elif at < 0:
                                if "callbacks suppressed" in line:
                                    suppressed += 1
                                elif "trace" in line and line is not retried:
                                    # ``trace  id`` / ``trace<TAB>id``: an nft line with odd blanks
                                    fixed = _tolerant_line(line)
                                    if "trace id " in fixed:
                                        n -= 1
                                        self.retry_orig = line
                                        retried = fixed
                                        source = _chain((fixed,), base)
                                        break
                                continue
                        if at >= 0:
                            # xtables-monitor PACKET line: the fields of the TRACE lines that follow it
                            trace += 1
                            ok = False
                            try:
                                sp1 = line.find(" ", at + 8) if line[at + 7] == " " else -1
                                sp2 = line.find(" ", sp1 + 1) if sp1 > 0 else -1
                                if sp2 >= 0:
                                    fam = line[at + 8:sp1]
                                    pid = line[sp1 + 1:sp2]
                                    if fam.isdigit() and (pid in by_id or _is_hex(pid)):
                                        body = line[sp2 + 1:]
                                        if body != xbody:
                                            xf = _xt_fields(body.rstrip("\r\n"), xt_caches)
                                            xbody = body
                                        pkt = by_id.get(pid)
                                        if pkt is not None and pkt.hops and (
                                                pkt.hops[-1]["src"] is None or self.xt_late):
                                            # older xtables-monitor: the TRACE line came before its PACKET
                                            self.tick = tick
                                            pkt = self._xt_fill(pkt, xf, pid)
                                            pending[pid] = [pkt.family, xf, False]
                                        else:
                                            pending[pid] = [families.get(fam) or _xt_family(fam, xf), xf, True]
                                        if len(pending) > max_open:
                                            pending.popitem(last=False)
                                        ok = True
                            except Exception:  # never raise on input: count the line as malformed
                                xbody = None
                            if not ok:
                                self.tick = tick
                                fixed = self._failed(line, n, line is retried)
                                if fixed:
                                    n -= 1
                                    trace -= 1
                                    retried = fixed
                                    source = _chain((fixed,), base)
                                    break
                                if fixed is None:
                                    bad += 1
                            continue
                    else:
                        trace += 1
                        tick += 1
                        # a line that cannot be read raises _Malformed (rare: cheaper than a flag per line)
                        try:
                            if line[at + 6] != " ":
                                raise _Malformed    # ``TRACE:raw:...``, ``TRACE:<TAB>``: the tolerant path
                            if line[at + 7:at + 8].isdigit():
                                # ------------------------------------------------ xtables-monitor TRACE
                                sp1 = line.find(" ", at + 7)
                                sp2 = line.find(" ", sp1 + 1) if sp1 > 0 else -1
                                if sp2 < 0:
                                    raise _Malformed
                                pid = line[sp1 + 1:sp2]
                                rest = line[sp2 + 1:]
                                info = xheads.get(rest)
                                if info is None:
                                    if not _is_hex(pid):
                                        raise _Malformed
                                    info = self._xt_info(rest)
                                    if info is None:
                                        raise _Malformed
                                pend = pending.get(pid)
                                pkt = by_id.get(pid)
                                if pend is not None:
                                    family, fields, fresh = pend
                                elif pkt is None and not _is_hex(pid):
                                    raise _Malformed
                                else:
                                    fam = line[at + 7:sp1]
                                    family, fields, fresh = families.get(fam, fam), None, False
                                (table, chain, kind, verdict, hook, label, hdict, rule_proto, chain_key,
                                 implied, vclass) = info
                                if hook is None and pkt is not None:
                                    hook = pkt.last_hook
                                if fresh or pkt is None:
                                    last = pkt.last_hook if pkt is not None else None
                                    if pkt is None or hook is not None and (
                                            chain_key in pkt.chains or not (
                                                last is None or hook == last or hook in next_hooks[last])):
                                        self.tick = tick
                                        pkt = self._id_packet(pid, "xtables", family, hook, chain_key,
                                                              fields[1] if fields else None,
                                                              fields[0] if fields else None)
                                    pkt.chains.add(chain_key)
                                    if pkt.labels is None:
                                        pkt.labels = []
                                        if not pkt.hops:
                                            pkt.nat = []    # observed NAT is recorded hop by hop (below)
                                    if pend is not None:
                                        pend[2] = False     # consumed: later TRACE lines of this id are not fresh
                                if fields is not None:
                                    if pkt.proto is None:
                                        pkt.proto = fields[0] or rule_proto
                                    hop = fields[2].copy()
                                    hop["sport"] = fields[4]
                                    hop["dport"] = fields[5]
                                    nt = fields[3]
                                else:
                                    if pkt.proto is None:
                                        pkt.proto = rule_proto
                                    hop = _EMPTY_HOP.copy()
                                    nt = _NO_NAT
                                hop.update(hdict)
                                hops = pkt.hops
                                nat = pkt.nat
                                if nat is not None and hops:
                                    # same comparison as _finish's, between this hop and the previous one
                                    last = pkt.nt
                                    if nt is not last and nt != last:
                                        index = len(hops)
                                        for i, field in _NAT_ENUM:
                                            before = last[i]
                                            after = nt[i]
                                            if before != after and before is not None and after is not None:
                                                nat.append({"hop": index, "field": field, "before": before,
                                                            "after": after, "implied": False})
                                pkt.nt = nt
                                if implied is not None:
                                    if pkt.implied is None:
                                        pkt.implied = []
                                    pkt.implied.extend(_implied_nat(len(hops), hop))
                                hops.append(hop)
                                if pkt.labels is not None:
                                    pkt.labels.append(label)
                                if vclass:
                                    # the final verdict (_finish): the last drop/reject/queue, else accept
                                    if vclass == 2:
                                        pkt.fverdict = verdict
                                    elif pkt.fverdict is None:
                                        pkt.fverdict = verdict
                                if hook is not None:
                                    pkt.last_hook = hook
                                pkt.last_table = table
                                pkt.seen = tick
                                if verdict == "drop" or verdict == "reject":
                                    self._close(pkt)
                            else:
                                # ------------------------------------------------ legacy kernel log TRACE
                                sp = line.find(" ", at + 7)
                                if sp < 0:
                                    raise _Malformed
                                head = line[at + 7:sp]
                                info = lheads.get(head)
                                if info is None:
                                    info = self._legacy_head(head)
                                    if info is None:
                                        raise _Malformed
                                rest = line[sp + 1:]
                                if rest == lrest:
                                    f = lf
                                else:
                                    f = _legacy_fields(rest, legacy_caches)
                                    if f is None:
                                        raise _Malformed
                                    lrest = rest
                                    lf = f
                                if line[0] == "[":
                                    end = line.find("]")
                                    time = line[1:end].strip() if 0 < end < at else _header_time(line[:at])
                                else:
                                    time = _header_time(line[:at])
                                table, chain, kind, rulenum, hook, prio, label, hdict = info
                                key = f[4]
                                pkt = None
                                cands = by_key.get(key)
                                if cands:
                                    for c in reversed(cands):
                                        if hook is None:
                                            if c.last_table == table:
                                                pkt = c
                                                break
                                        else:
                                            last = c.last_hook
                                            if hook == last:
                                                if prio > c.last_prio or (prio == c.last_prio and rulenum > c.last_num):
                                                    pkt = c
                                                    break
                                            elif last is not None and hook in next_hooks[last]:
                                                pkt = c
                                                break
                                if pkt is None:
                                    self.legacy_n += 1
                                    self.tick = tick
                                    pkt = self._new("legacy-%d" % self.legacy_n, "legacy", f[7], f[8], key)
                                    pkt.labels = [label]
                                    pkt.nat = []
                                    if cands is None:
                                        by_key[key] = [pkt]
                                    else:
                                        cands.append(pkt)
                                else:
                                    last_f = pkt.fields
                                    if last_f is not f and last_f is not None and last_f[6] != f[6]:
                                        index = len(pkt.hops)
                                        for i, field in _NAT_ENUM:
                                            if last_f[i] != f[i] and last_f[i] is not None and f[i] is not None:
                                                pkt.nat.append({"hop": index, "field": field, "before": last_f[i],
                                                                "after": f[i], "implied": False})
                                    pkt.labels.append(label)
                                pkt.fields = f
                                hop = f[5].copy()
                                hop.update(hdict)
                                hop["sport"] = f[2]
                                hop["dport"] = f[3]
                                hop["time"] = time
                                pkt.hops.append(hop)
                                if hook is not None:
                                    pkt.last_hook = hook
                                    pkt.last_prio = prio
                                    pkt.last_num = rulenum
                                pkt.last_table = table
                                pkt.seen = tick
                        except Exception:  # never raise on input: read it respaced, salvage or report it
                            lrest = xbody = None
                            self.tick = tick
                            fixed = self._failed(line, n, line is retried)
                            if fixed:
                                n -= 1
                                trace -= 1
                                tick -= 1
                                retried = fixed
                                source = _chain((fixed,), base)
                                break
                            if fixed is None:
                                bad += 1
                    if tick >= sweep_at:
                        sweep_at = tick + every
                        self.tick = tick
                        self._sweep()
                    if done:
                        stats["lines"], stats["trace_lines"], stats["malformed"] = n, trace, bad
                        stats["suppressed"] = suppressed
                        if self.with_serial:
                            while done:
                                yield self._emit(done.pop(0))
                        else:
                            for pkt in done:
                                yield _finish(pkt)
                            del done[:]
                else:
                    break
            self.flush()
        finally:
            stats["lines"], stats["trace_lines"], stats["malformed"] = n, trace, bad
            stats["suppressed"] = suppressed
        done.sort(key=lambda p: p.serial)
        while done:
            yield self._emit(done.pop(0))

    def _emit(self, pkt):
        packet = _finish(pkt)
        return (pkt.serial, packet) if self.with_serial else packet

    def _xt_fill(self, pkt, xf, pid):
        """Fill the fields of an xtables packet's last hop from the PACKET line that followed it (older
        xtables-monitor builds print TRACE before PACKET). A packet of one hop joins the open packet
        with the same IP ID when the kernel gave it a new trace id on the way, as ``_id_packet`` does."""
        if self.xt_late is None:
            # decided once, at the first TRACE line that had no PACKET before it: when no PACKET line came
            # before at all, this output is in the older order, and each PACKET line describes the TRACE
            # line before it (a normal capture cut mid-packet is not taken for one: it had PACKET lines)
            self.xt_late = not self.xt_pending
        if self.xt_late and len(pkt.hops) > 1:
            pkt = self._xt_late_reuse(pkt, pid)
        hop = pkt.hops[-1]
        for key in ("in", "out", "physin", "physout", "src", "dst", "ttl"):
            hop[key] = xf[2][key]
        hop["sport"], hop["dport"] = xf[4], xf[5]
        if pkt.proto is None:
            pkt.proto = xf[0]
        if pkt.family not in ("ipv4", "ipv6"):
            pkt.family = _xt_family("0", xf)
        pkt.nt = xf[3]
        pkt.nat = None      # observed NAT: _finish compares the hops (this one had no fields when it came)
        if len(pkt.hops) != 1 or pkt.ikey is not None or xf[1] is None:
            return pkt
        ikey = (pkt.family, pkt.proto, xf[1])
        cand = self.id_by_key.get(ikey)
        hook = pkt.last_hook
        if cand is None or cand is pkt or cand.done or cand.last_hook is None or (
                hook not in _NEXT_HOOKS.get(cand.last_hook, ())):
            pkt.ikey = ikey
            self.id_by_key[ikey] = pkt
            return pkt
        hops, pkt.hops = pkt.hops, []
        self._close(pkt)    # no hops left: nothing is emitted for it
        self.by_id[pid] = cand
        if cand.aliases is None:
            cand.aliases = []
        cand.aliases.append(pid)
        base = len(cand.hops)
        cand.hops.extend(hops)
        if cand.labels is not None:
            cand.labels.extend(pkt.labels or [_hop_label(h) for h in hops])
        cand.chains |= pkt.chains or set()
        for entry in pkt.implied or ():
            entry["hop"] += base
            cand.implied = (cand.implied or []) + [entry]
        if pkt.fverdict in ("drop", "reject", "queue") or cand.fverdict is None:
            cand.fverdict = pkt.fverdict or cand.fverdict
        cand.last_hook, cand.last_table, cand.nt = pkt.last_hook, pkt.last_table, pkt.nt
        cand.nat = None
        self._touch(cand)
        return cand

    def _xt_late_reuse(self, pkt, pid):
        """Older order: the hop a PACKET line follows opens its hook group. When the kernel reused the
        trace id (a chain seen before, or an earlier hook), that hop starts a new packet, as a fresh
        PACKET line does in the usual order (``_id_packet``)."""
        hops = pkt.hops
        hop = hops[-1]
        key = (hop["table"], hop["chain"])
        hook, prev = _HOOK_OF.get(hop["chain"]), _HOOK_OF.get(hops[-2]["chain"])
        if not (any((h["table"], h["chain"]) == key for h in hops[:-1]) or (
                hook is not None and prev is not None and _HOOK_RANK[hook] < _HOOK_RANK[prev])):
            return pkt
        hops.pop()
        label = pkt.labels.pop() if pkt.labels else _hop_label(hop)
        if pkt.implied:
            pkt.implied = [e for e in pkt.implied if e["hop"] < len(hops)]
        pkt.fverdict = _final_verdict(hops)
        self._close(pkt)
        new = self._id_packet(pid, "xtables", pkt.family, hook, key, None, None)
        new.chains.add(key)
        new.labels = [label]
        new.nat = None
        if hop["rule"] is not None and hop["kind"] == "rule":
            new.implied = _implied_nat(0, hop) or None
        verdict = hop["verdict"]
        new.fverdict = verdict if verdict in ("drop", "reject", "queue", "accept") else None
        new.hops.append(hop)
        new.last_hook, new.last_table = hook, hop["table"]
        return new

    def _failed(self, line, n, again):
        """A trace-looking line the fast paths could not read. Returns the respaced line to read again
        (first failure, when respacing changes it); else salvages it into an approximate packet (returns
        ``""``) or records it as unparsed (returns None)."""
        if not isinstance(line, str):
            self._unparsed(n, repr(line)[:300], "not a text line")
            return None
        if not again:
            fixed = _tolerant_line(line)
            if fixed != line.rstrip("\r\n"):
                self.retry_orig = line
                return fixed
        else:
            line = self.retry_orig
        text = _tolerant_line(line)
        try:
            if self._salvage(text):
                return ""
        except Exception:  # never raise on input: report the line
            pass
        self._unparsed(n, line.rstrip("\r\n"), _reason(text))
        return None

    def _unparsed(self, n, text, reason):
        if len(self.unparsed) < MAX_UNPARSED:
            self.unparsed.append({"line": n, "text": text, "reason": reason})

    def _salvage(self, text):
        """A ``TRACE:`` line with its addresses but no IP ID / protocol (redacted, cut short) or an
        ebtables ``--log`` line (``TRACE: eb:broute:BROUTING IN=... IP SRC=..., IP DST=...``) -> a hop of an
        approximate packet: grouped by family and addresses in hook order (no id to group by)."""
        at = text.find("TRACE: ")
        if at < 0:
            return False
        words = text[at + 7:].split(" ", 1)
        if len(words) < 2:
            return False
        parts = words[0].split(":")
        source = "legacy"
        kind, rulenum = "rule", 0
        if len(parts) == 3 and parts[0] in ("eb", "ebtables"):
            source = "ebtables"
            table, chain = parts[1], parts[2]
        elif len(parts) >= 4 and parts[-2] in _KINDS and parts[-1].isdigit():
            table, chain, kind, rulenum = parts[0], ":".join(parts[1:-2]), parts[-2], int(parts[-1])
        else:
            return False
        if not table or not chain:
            return False
        f = {}
        for tok in words[1].replace(",", " ").split():
            k, sep, v = tok.partition("=")
            if sep and k and k not in f:
                f[k] = v
        src, dst = f.get("SRC"), f.get("DST")
        try:
            family = "ipv%d" % ipaddress.ip_address(src).version
            ipaddress.ip_address(dst)
        except ValueError:
            return False        # no address, or one cut short: nothing to group by
        proto = f.get("PROTO") or f.get("proto")
        if proto is not None:
            proto = _PROTO_NAMES.get(proto) or _PROTO_NUMBERS.get(proto) or proto.lower()
        sport, dport = _to_int(f.get("SPT") or f.get("SPORT")), _to_int(f.get("DPT") or f.get("DPORT"))
        hook = _HOOK_OF.get("PREROUTING" if chain == "BROUTING" else chain)
        prio = (-400 if table == "broute" else _table_prio(table, hook)) if hook else None
        hop = _hop_template(f.get("IN") or None, f.get("OUT") or None, f.get("PHYSIN") or None,
                            f.get("PHYSOUT") or None, src, dst, sport, dport,
                            _to_int(f.get("TTL") or f.get("HOPLIMIT")))
        hop.update({"table": table, "chain": chain, "kind": kind, "rulenum": rulenum if source == "legacy" else None,
                    "time": _header_time(text[:at])})
        key = ("~", family, src, dst)
        pkt = None
        for c in reversed(self.by_key.get(key) or ()):
            last = c.last_hook
            if hook is None:
                if c.last_table == table:
                    pkt = c
            elif last is None or hook in _NEXT_HOOKS[last] or hook == last and (
                    prio > c.last_prio or prio == c.last_prio and rulenum > c.last_num):
                pkt = c
            if pkt is not None:
                break
        if pkt is None:
            self.legacy_n += 1
            pkt = self._new("approx-%d" % self.legacy_n, source, family, proto, key)
            pkt.approx = True
            self.by_key.setdefault(key, []).append(pkt)
        elif pkt.proto is None:
            pkt.proto = proto
        pkt.hops.append(hop)
        if hook is not None:
            pkt.last_hook, pkt.last_prio, pkt.last_num = hook, prio, rulenum
        pkt.last_table = table
        self._touch(pkt)
        return True

    def _nft_safe(self, line, at):
        try:
            return self._nft(line, at)
        except Exception:
            return False


def _xt_family(fam, xf):
    """Family of an xtables PACKET line whose family number is unknown (older builds print 0)."""
    if fam == "0" and xf is not None and xf[2]["src"]:
        return "ipv6" if ":" in xf[2]["src"] else "ipv4"
    return fam


def _is_hex(text):
    if not text or len(text) > 16:
        return False
    if not text.strip(_HEX):
        return True         # the usual id: lower-case hex digits only, no int() needed
    if not text.isalnum():
        return False        # int() would take blanks and underscores
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


_PROTO_RULE_RE = re.compile(r"(?:-p |l4proto |ip protocol |nexthdr )(?:\{ )?(tcp|udp|icmp|ipv6-icmp|icmpv6|sctp)\b")


def _proto_from_rule(text):
    if not text:
        return None
    m = _PROTO_RULE_RE.search(text)
    if not m:
        return None
    return "icmpv6" if m.group(1) == "ipv6-icmp" else m.group(1)


def _iter_input(text_or_lines):
    if text_or_lines is None:
        return iter(())
    if isinstance(text_or_lines, bytes):
        text_or_lines = text_or_lines.decode("utf-8", "replace")
    if isinstance(text_or_lines, str):
        return iter(text_or_lines.splitlines())
    return iter(text_or_lines)


def iter_packets(lines, stats=None, window=DEFAULT_WINDOW, max_open=DEFAULT_MAX_OPEN):
    """Yield completed packets from an iterable of lines (or a text); see module docstring."""
    parser = _Parser(stats=stats, window=window, max_open=max_open)
    try:
        source = _iter_input(lines)
    except TypeError:
        source = iter(())
    return parser.run(source)


def parse(text_or_lines, window=DEFAULT_WINDOW, max_open=DEFAULT_MAX_OPEN, with_unparsed=False):
    """Parse trace text (str, bytes or iterable of lines) -> ``{'packets': [...], 'stats': {...}}``.

    Packets are in order of first appearance. Never raises on any input. ``with_unparsed``: the result
    also has ``unparsed``, the trace-looking lines that could not be read (the first ``MAX_UNPARSED``,
    each ``{line, text, reason}``; ``stats['malformed']`` counts them all).
    """
    stats = {}
    parser = _Parser(stats=stats, window=window, max_open=max_open, with_serial=True)
    try:
        source = _iter_input(text_or_lines)
    except TypeError:
        source = iter(())
    packets = sorted(parser.run(source), key=lambda item: item[0])
    result = {"packets": [p for _serial, p in packets], "stats": stats}
    if with_unparsed:
        result["unparsed"] = parser.unparsed
    return result


# ------------------------------------------------------------------------------ LOG target lines
def _log_value(value):
    if value.isdigit():
        return int(value)
    return value


def _log_fields(text, entry):
    flags = []
    words = text.split(" ")
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not word:
            continue
        if word == "OPT" and i < len(words) and words[i].startswith("("):
            opt = words[i]
            i += 1
            while not opt.endswith(")") and i < len(words):
                opt += " " + words[i]
                i += 1
            entry["opt"] = opt.strip("()")
            continue
        key, sep, value = word.partition("=")
        if sep and key:
            key = key.lower()
            if key == "spt":
                key = "sport"
            elif key == "dpt":
                key = "dport"
            if key == "proto":
                entry[key] = _PROTO_NAMES.get(value) or value.lower()
            elif key in entry and key in ("id", "len"):
                entry[key + "2"] = _log_value(value)
            else:
                entry[key] = _log_value(value)
        elif word.startswith("FRAG:"):
            entry["frag"] = _log_value(word[5:])
        else:
            flags.append(word)
    entry["flags"] = flags


_XT_PACKET_HEAD_RE = re.compile(r"(?:^|\s)PACKET:\s*\d+\s+[0-9a-f]{1,16}\s*\Z")


def parse_log_entries(lines):
    """LOG-target kernel lines -> list of dicts (see module docstring). Never raises."""
    entries = []
    try:
        source = _iter_input(lines)
    except TypeError:
        return entries
    for line in source:
        try:
            if not isinstance(line, str):
                continue
            at = line.find("IN=")
            if at < 0 or " OUT=" not in line or "TRACE: " in line:
                continue
            if at > 0 and line[at - 1] not in " ]:":
                continue
            head = line[:at]
            if _XT_PACKET_HEAD_RE.search(head):
                continue        # an xtables-monitor PACKET line (nf_trace reads it), not a LOG entry
            time = _header_time(head)
            prefix = head
            m = _SYSLOG_RE.match(prefix)
            if m:
                prefix = prefix[m.end():]
            prefix = prefix.strip()
            if prefix.startswith("kernel:"):
                prefix = prefix[7:].strip()
            if prefix.startswith("["):
                end = prefix.find("]")
                prefix = prefix[end + 1:].strip() if end >= 0 else prefix
            body = line[at:].rstrip()
            inner = None
            lb = body.find(" [SRC=")
            if lb < 0:
                lb = body.find(" [MAC=")
            if lb >= 0:
                rb = body.rfind("]")
                inner_text = body[lb + 2:rb if rb > lb else len(body)]
                body = body[:lb] + (body[rb + 1:] if rb > lb else "")
                inner = {}
                _log_fields(inner_text, inner)
            entry = {"time": time, "prefix": prefix or None}
            _log_fields(body, entry)
            for key in ("in", "out", "physin", "physout", "mac"):
                if key in entry and entry[key] == "":
                    entry[key] = None
            entry.setdefault("proto", None)
            entry.setdefault("sport", None)
            entry.setdefault("dport", None)
            if inner is not None:
                entry["inner"] = inner
            entries.append(entry)
        except Exception:
            continue
    return entries


# ------------------------------------------------------------------------------ iptables-save
def parse_iptables_save(text):
    """``iptables-save`` text -> ``{table: {'policies': {chain: policy}, 'rules': {chain: [line]}}}``.

    A view of ``_ruleset.parse_save`` (the collection's one iptables-save parser) keyed for ``annotate``."""
    tables = {}
    if not isinstance(text, str):
        return tables
    for name, table in parse_save(text).tables.items():
        rules = {chain: [] for chain in table["chains"]}
        for rule in table["rules"]:
            if rule.chain:
                rules.setdefault(rule.chain, []).append(rule.line)
        tables[name] = {"policies": dict(table["chains"]), "rules": rules}
    return tables


def _rule_verdict(rule):
    words = rule.split()
    for flag in ("-j", "-g"):
        if flag in words:
            i = words.index(flag)
            if i + 1 < len(words):
                target = words[i + 1]
                if target in _TERMINAL:
                    return _TERMINAL[target]
                if target.isupper() or target in ("LOG", "MARK", "CONNMARK", "TRACE", "CHECKSUM", "TCPMSS",
                                                  "CLASSIFY", "DSCP", "TOS", "TTL", "HL", "NFLOG", "ULOG",
                                                  "SET", "AUDIT", "CONNSECMARK", "SECMARK"):
                    return "continue"
                return ("jump " if flag == "-j" else "goto ") + target
    return "continue"


def annotate(packets, iptables_save_text, ip6tables_save_text=None):
    """Attach rule text and verdicts from ``iptables-save`` snapshots; see module docstring."""
    saves = {"ipv4": parse_iptables_save(iptables_save_text or ""),
             "ipv6": parse_iptables_save(ip6tables_save_text or "")}
    if not isinstance(packets, list):
        return packets
    for pkt in packets:
        if not isinstance(pkt, dict) or not isinstance(pkt.get("hops"), list):
            continue
        tables = saves.get(pkt.get("family")) or {}
        if pkt.get("source") not in (None, "legacy"):
            # xtables-monitor and nft give the rule text themselves; rule numbers are not theirs
            tables = {name: {"policies": t["policies"], "rules": {}} for name, t in tables.items()}
        changed = False
        for hop in pkt["hops"]:
            if not isinstance(hop, dict):
                continue
            table = tables.get(hop.get("table"))
            if table is None:
                continue
            chain = hop.get("chain")
            kind = hop.get("kind")
            if kind == "policy":
                policy = table["policies"].get(chain)
                if policy and policy != "-":
                    hop["rule"] = hop.get("rule") or "-P %s %s" % (chain, policy)
                    hop["verdict"] = hop.get("verdict") or policy.lower()
                    changed = True
            elif kind == "rule" and isinstance(hop.get("rulenum"), int):
                rules = table["rules"].get(chain) or []
                if 1 <= hop["rulenum"] <= len(rules):
                    rule = rules[hop["rulenum"] - 1]
                    if not hop.get("rule"):
                        hop["rule"] = rule
                    if not hop.get("verdict"):
                        hop["verdict"] = _rule_verdict(rule)
                    changed = True
            elif kind == "return" and not hop.get("verdict"):
                hop["verdict"] = "return"
                changed = True
        if changed:
            refreshed = _refresh(pkt)
            pkt.update(refreshed)
    return packets


def _refresh(pkt):
    hops = pkt["hops"]
    nat = [n for n in pkt.get("nat") or [] if isinstance(n, dict) and not n.get("implied")]
    for index, hop in enumerate(hops):
        if hop.get("kind") == "rule" and hop.get("rule"):
            nat.extend(_implied_nat(index, hop))
    nat.sort(key=lambda n: (n["hop"], bool(n.get("implied"))))
    return {"nat": nat, "verdict": _final_verdict(hops),
            "summary": " \u2192 ".join(_hop_label(h) for h in hops)}
