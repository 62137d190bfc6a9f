# -*- coding: utf-8 -*-
# Copyright (c) 2026, virtops.virtnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Human-readable reports of parsed netfilter traces (controller side).

PRIVATE MODULE: this is not a public API of the collection. It may change at any time
without notice. It serves the ``virtops.virtnet.nf_trace_report`` filter and the
``trace_capture`` action plugin (``report_path``).

API:

``render_text(packets, unparsed=None) -> str``
    One table per packet (``#``, ``table:chain``, ``kind``, rule/verdict, in/out,
    ``src -> dst``, NAT marks), then the packet's one-line summary. A packet with no known verdict
    says where its path ends and that a legacy trace needs the ruleset to tell the verdict; a packet
    grouped approximately says so. ``unparsed`` (the parser's ``{line, text, reason}`` records)
    is listed at the end: no line is dropped from a report silently.

``render_html(packets, title='Netfilter trace', unparsed=None) -> str``
    One self-contained HTML page (inline CSS, inline SVG, no scripts, no external resources).
    Each packet gets a section with an SVG diagram of the netfilter hooks (PREROUTING ->
    routing decision -> INPUT / FORWARD -> OUTPUT -> POSTROUTING, the tables of each hook as
    boxes), the packet's path drawn through it in hop order, matched rules and NAT changes
    marked, and the hop table. All trace text is escaped (it is untrusted input).

``explain(packets, findings=None) -> {'lines': [...], 'culprits': [...]}``
    A connection's path in a few sentences (IN, FORWARD accepts on every base chain, NAT, REPLY with its
    de-NAT, DROP with the backend/table/policy or rule that dropped it and the firewall_info finding).

``culprit(packet, findings=None) -> dict or None``, ``hook_path(packet) -> [hook]``,
``vanished(packet)``, ``needs_diagnosis(packets)`` (a drop, or a packet routing dropped after prerouting),
``backend_of(packet, hop) -> 'iptables-legacy'|'iptables-nft'|'nftables'``

``render(packets, fmt='text'|'html', **kwargs) -> str``
    Dispatch on ``fmt``; raises ``ValueError`` on an unknown format.

Packets are the dicts produced by ``_trace_parse`` (``parse``/``iter_packets``/``annotate``).
"""

from __future__ import annotations

from html import escape

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._ruleset import XTABLES_TABLES
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._trace_parse import (
    LIBVIRT_NFT_HOOKS as _LIBVIRT_NFT_HOOKS, LIBVIRT_NFT_TABLE, hook_of_chain)

_ARROW = "\u2192"

# ----------------------------------------------------------------------------- shared helpers
_HOOK_TABLES = {
    "PREROUTING": ["raw", "mangle", "nat"],
    "INPUT": ["mangle", "filter", "security", "nat"],
    "FORWARD": ["mangle", "filter", "security"],
    "OUTPUT": ["raw", "mangle", "nat", "filter", "security"],
    "POSTROUTING": ["mangle", "nat"],
}
_HOOK_NAMES = tuple(_HOOK_TABLES)


def _s(value):
    return "" if value is None else str(value)


def _endpoint(addr, port):
    if addr is None:
        return "?"
    addr = str(addr)
    if port is None:
        return addr
    if ":" in addr:
        return "[%s]:%s" % (addr, port)
    return "%s:%s" % (addr, port)


_NAT_HOOK_WORDS = (("masquerade", "POSTROUTING"), ("snat", "POSTROUTING"), ("dnat", "PREROUTING"),
                   ("redirect", "PREROUTING"))


def hook_path(packet):
    """The netfilter hook of every hop of ``packet``, in hop order (None where it cannot be told).

    A chain entered by a ``jump``/``goto`` is on its caller's hook whatever its name says (libvirt's
    ``guest_output`` is reached from ``forward``, not from the output hook); libvirt's nft chains have
    their known hooks; then the chain's name, the NAT verb of its rule, the first hop's interfaces."""
    out = []
    hook = None
    entered = set()          # (table, chain) reached by jump/goto from an earlier hop
    for n, hop in enumerate(_hops(packet)):
        table, chain = _s(hop.get("table")), _s(hop.get("chain"))
        upper = chain.upper()
        if upper in _HOOK_TABLES:
            hook = upper
        elif (table, chain) in entered and hook is not None:
            pass
        elif table == LIBVIRT_NFT_TABLE and chain in _LIBVIRT_NFT_HOOKS:
            hook = _LIBVIRT_NFT_HOOKS[chain]
        else:
            guess = hook_of_chain(chain, None)
            rule = _s(hop.get("rule")).lower()
            if guess is None:
                guess = next((h for word, h in _NAT_HOOK_WORDS if word in rule.split()), None)
            if guess is None and n == 0 and packet.get("source") != "legacy":
                guess = hook_of_chain(chain, hop)
            hook = guess or hook
        verdict = _s(hop.get("verdict"))
        if verdict.startswith(("jump ", "goto ")):
            entered.add((table, verdict.split(" ", 1)[1]))
        out.append(hook)
    return out


def backend_of(packet, hop):
    """Which firewall holds the hop's table: ``iptables-legacy`` (kernel-log TRACE), ``iptables-nft`` (an
    iptables table seen through nfnetlink) or ``nftables`` (a native nft table), as firewall_info names them."""
    if packet.get("source") == "legacy":
        return "iptables-legacy"
    if _s(hop.get("table")) in XTABLES_TABLES:
        return "iptables-nft"
    return "nftables"


def _hops(packet):
    hops = packet.get("hops") if isinstance(packet, dict) else None
    return [h for h in hops if isinstance(h, dict)] if isinstance(hops, list) else []


def _nat_by_hop(packet):
    marks = {}
    nat = packet.get("nat") if isinstance(packet, dict) else None
    for entry in nat if isinstance(nat, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("hop"), int):
            marks.setdefault(entry["hop"], []).append(entry)
    return marks


def _nat_tag(entry):
    if entry.get("target"):
        return _s(entry["target"])
    return "%s NAT" % _s(entry.get("field"))


def _nat_text(entry):
    field = _s(entry.get("field"))
    text = "%s %s %s %s" % (field, _s(entry.get("before")), _ARROW, _s(entry.get("after")))
    if entry.get("implied"):
        return "%s: %s (implied by the rule)" % (_s(entry.get("target")) or "NAT", text)
    return "%s changed: %s" % (field, text.split(" ", 1)[1])


def _rule_cell(hop):
    kind = hop.get("kind")
    parts = []
    if hop.get("rule"):
        parts.append(_s(hop["rule"]))
    elif kind == "rule" and hop.get("rulenum") is None and hop.get("handle") is not None:
        parts.append("handle %s" % hop["handle"])
    if hop.get("verdict"):
        parts.append("[%s]" % hop["verdict"])
    return " ".join(parts) or "-"


def _kind_cell(hop):
    kind = _s(hop.get("kind")) or "?"
    if kind == "rule" and hop.get("rulenum") is not None:
        return "rule %s" % hop["rulenum"]
    if kind == "rule" and hop.get("handle") is not None:
        return "rule #%s" % hop["handle"]
    return kind


def _packet_title(packet, index):
    return "Packet %d%s: %s %s %s %s %s" % (
        index + 1,
        " (id %s)" % packet["id"] if packet.get("id") is not None else "",
        _s(packet.get("family")) or "?", _s(packet.get("proto")) or "?",
        _endpoint(packet.get("src"), packet.get("sport")), _ARROW,
        _endpoint(packet.get("dst"), packet.get("dport")))


def _notes(packet):
    """Sentences a reader needs beside the table: approximate grouping, an unknown verdict."""
    notes = []
    if packet.get("approximate"):
        notes.append("grouped approximately: these lines carry no IP ID or protocol (redacted, cut short or "
                     "ebtables), so hops were grouped by addresses and hook order only")
    hops = _hops(packet)
    if not packet.get("verdict") and hops:
        last = hops[-1]
        where = "%s:%s %s%s" % (_s(last.get("table")), _s(last.get("chain")), _s(last.get("kind")),
                                " %s" % last["rulenum"] if last.get("rulenum") is not None else "")
        if packet.get("source") in (None, "legacy") and not any(h.get("rule") for h in hops):
            notes.append("verdict unknown: the path ends at %s; a kernel-log trace does not say what a rule "
                         "did - give the rules (nf_trace iptables_save=..., or trace_capture's snapshot) to "
                         "know whether it was dropped there" % where)
        else:
            notes.append("verdict unknown: the path ends at %s" % where)
    return notes


def _unparsed_records(unparsed):
    return [u for u in unparsed or () if isinstance(u, dict)]


def _unparsed_text(unparsed, total=None):
    records = _unparsed_records(unparsed)
    if not records:
        return []
    count = total if isinstance(total, int) and total > len(records) else len(records)
    out = ["Unparsed lines (%d): trace-looking lines that could not be read" % count]
    for u in records:
        out.append("  line %s: %s" % (_s(u.get("line")), _s(u.get("reason"))))
        out.append("    %s" % _s(u.get("text")))
    if count > len(records):
        out.append("  ... and %d more" % (count - len(records)))
    out.append("")
    return out


# ----------------------------------------------------------------------------- text
def render_text(packets, unparsed=None, unparsed_total=None, explanation=None):
    """Plain-text report: the explanation (``explain``'s lines), a table per packet, then the unparsed lines."""
    if not isinstance(packets, list):
        packets = []
    out = [_s(x) for x in explanation or []] + ([""] if explanation else [])
    if not packets:
        return "\n".join(["No traced packets.", ""] + _unparsed_text(unparsed, unparsed_total))
    headers = ("#", "table:chain", "kind", "rule/verdict", "in/out", "src %s dst" % _ARROW, "NAT")
    for index, packet in enumerate(packets):
        if not isinstance(packet, dict):
            continue
        out.append(_packet_title(packet, index) + (
            "  verdict: %s" % packet["verdict"] if packet.get("verdict") else ""))
        marks = _nat_by_hop(packet)
        rows = []
        for n, hop in enumerate(_hops(packet)):
            rows.append((
                str(n), "%s:%s" % (_s(hop.get("table")), _s(hop.get("chain"))), _kind_cell(hop),
                _rule_cell(hop),
                "%s/%s" % (_s(hop.get("in")) or "-", _s(hop.get("out")) or "-") + (
                    " (%s/%s)" % (_s(hop.get("physin")) or "-", _s(hop.get("physout")) or "-")
                    if hop.get("physin") or hop.get("physout") else ""),
                "%s %s %s" % (_endpoint(hop.get("src"), hop.get("sport")), _ARROW,
                              _endpoint(hop.get("dst"), hop.get("dport"))),
                "; ".join(_nat_text(e) for e in marks.get(n, [])),
            ))
        widths = [max(len(headers[i]), *(len(r[i]) for r in rows)) if rows else len(headers[i])
                  for i in range(len(headers))]
        widths[-1] = 0
        fmt = "  ".join("%%-%ds" % w for w in widths)
        out.append("  " + (fmt % headers).rstrip())
        for row in rows:
            out.append("  " + (fmt % row).rstrip())
        if packet.get("summary"):
            out.append("  path: %s" % packet["summary"])
        for note in _notes(packet):
            out.append("  note: %s" % note)
        out.append("")
    out.extend(_unparsed_text(unparsed, unparsed_total))
    return "\n".join(out)


# ----------------------------------------------------------------------------- html / svg
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1f2933;background:#f7f8fa}
h1{font-size:22px;margin:0 0 4px}
.meta{color:#52606d;margin-bottom:18px}
section.packet{background:#fff;border:1px solid #d9dee4;border-radius:8px;padding:16px 20px;margin:0 0 22px;box-shadow:0 1px 2px rgba(0,0,0,.04)}
section.packet h2{font-size:17px;margin:0 0 6px}
.summary{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;color:#334e68;background:#f0f4f8;
  padding:6px 8px;border-radius:4px;overflow-wrap:anywhere}
.summary.drop{background:#ffe3e3;color:#c92a2a;font-weight:600}
.verdict{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;margin-left:6px;vertical-align:2px}
.v-accept{background:#d3f9d8;color:#2b8a3e}.v-drop,.v-reject{background:#ffe3e3;color:#c92a2a}.v-unknown{background:#e9ecef;color:#495057}
svg{display:block;margin:10px 0 6px;max-width:100%;height:auto}
table{border-collapse:collapse;width:100%;font-size:12.5px;margin-top:8px}
th,td{border-bottom:1px solid #e4e7eb;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f0f4f8;font-weight:600}
td.mono{font-family:ui-monospace,Menlo,Consolas,monospace}
tr.matched td{background:#fff9db}
tr.nat td{background:#fff4e6}
.nat-list{margin:6px 0 0;padding-left:20px}
.nat-list li{color:#d9480f}
.legend{font-size:12px;color:#52606d}
p.note{font-size:12.5px;color:#8a4b00;background:#fff4e6;padding:4px 8px;border-radius:4px;margin:6px 0}
section.unparsed{background:#fff;border:1px solid #f0c36d;border-radius:8px;padding:16px 20px}
.legend span{display:inline-block;width:12px;height:12px;border-radius:2px;margin:0 4px -2px 12px;border:1px solid #829ab1}
"""

_BOX_W = 168
_BOX_H = 26
_BOX_GAP = 6
_GROUP_PAD_TOP = 26
_GROUP_PAD = 8
_POS = {  # hook -> (x, y) of its group's top-left corner
    "PREROUTING": (20, 30),
    "FORWARD": (390, 30),
    "POSTROUTING": (760, 30),
    "INPUT": (390, 250),
    "OUTPUT": (760, 250),
}


def _group_height(n):
    return _GROUP_PAD_TOP + n * (_BOX_H + _BOX_GAP) - _BOX_GAP + _GROUP_PAD


def _layout(packet):
    """Tables per hook (defaults plus any other table the packet went through), hop -> box."""
    tables = {hook: list(names) for hook, names in _HOOK_TABLES.items()}
    placed = []
    for hop, hook in zip(_hops(packet), hook_path(packet)):
        table = _s(hop.get("table"))
        if hook is not None and table and table not in tables[hook]:
            tables[hook].append(table)
        placed.append((hook, table))
    boxes = {}
    for hook, names in tables.items():
        gx, gy = _POS[hook]
        for i, name in enumerate(names):
            boxes[(hook, name)] = (gx + _GROUP_PAD, gy + _GROUP_PAD_TOP + i * (_BOX_H + _BOX_GAP))
    return tables, boxes, placed


def _svg(packet, index):
    tables, boxes, placed = _layout(packet)
    hops = _hops(packet)
    marks = _nat_by_hop(packet)
    heights = {hook: _group_height(len(names)) for hook, names in tables.items()}
    height = max(_POS[h][1] + heights[h] for h in tables) + 40
    width = 1000
    visited = {}
    for n, (hook, table) in enumerate(placed):
        if hook is None or (hook, table) not in boxes:
            continue
        info = visited.setdefault((hook, table), {"hops": [], "rule": [], "nat": [], "verdict": None})
        info["hops"].append(n)
        hop = hops[n]
        if hop.get("kind") == "rule":
            info["rule"].append(_kind_cell(hop))
        if hop.get("verdict") in ("drop", "reject"):
            info["verdict"] = hop["verdict"]
        for entry in marks.get(n, []):
            info["nat"].append(entry)
    mid = "m%d" % index
    out = ['<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" '
           'aria-label="%s">' % (width, height, width, height, escape("netfilter path of packet %d" % (index + 1)))]
    out.append('<defs><marker id="%s" viewBox="0 0 10 10" refX="14" refY="5" markerWidth="5" markerHeight="5" '
               'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#d9480f"/></marker>'
               '<marker id="%sg" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
               'orient="auto"><path d="M0,0L10,5L0,10z" fill="#9aa5b1"/></marker></defs>' % (mid, mid))

    def gcenter(hook, side):
        gx, gy = _POS[hook]
        h = heights[hook]
        w = _BOX_W + 2 * _GROUP_PAD
        return {"l": (gx, gy + h / 2), "r": (gx + w, gy + h / 2), "t": (gx + w / 2, gy),
                "b": (gx + w / 2, gy + h)}[side]

    # static flow arrows between hooks and the routing decision
    rx, ry = 290, _POS["PREROUTING"][1] + heights["PREROUTING"] / 2
    local = (645, _POS["INPUT"][1] + heights["INPUT"] / 2)
    flows = [
        (gcenter("PREROUTING", "r"), (rx - 42, ry)),
        ((rx + 42, ry), gcenter("FORWARD", "l")),
        (gcenter("FORWARD", "r"), gcenter("POSTROUTING", "l")),
        ((rx, ry + 26), (rx, local[1]), gcenter("INPUT", "l")),
        (gcenter("INPUT", "r"), (local[0] - 55, local[1])),
        ((local[0] + 55, local[1]), gcenter("OUTPUT", "l")),
        (gcenter("OUTPUT", "t"), gcenter("POSTROUTING", "b")),
        (gcenter("POSTROUTING", "r"), (width - 8, gcenter("POSTROUTING", "r")[1])),
    ]
    for points in flows:
        out.append('<polyline points="%s" fill="none" stroke="#9aa5b1" stroke-width="1.6" marker-end="url(#%sg)"/>'
                   % (" ".join("%.0f,%.0f" % p for p in points), mid))
    out.append('<text x="%d" y="%.0f" font-size="11" fill="#52606d">out</text>'
               % (width - 30, gcenter("POSTROUTING", "r")[1] - 6))
    # routing decision diamond and local process
    out.append('<polygon points="%d,%.0f %d,%.0f %d,%.0f %d,%.0f" fill="#fff" stroke="#829ab1"/>'
               % (rx - 42, ry, rx, ry - 26, rx + 42, ry, rx, ry + 26))
    out.append('<text x="%d" y="%.0f" font-size="10.5" text-anchor="middle" fill="#334e68">routing</text>'
               '<text x="%d" y="%.0f" font-size="10.5" text-anchor="middle" fill="#334e68">decision</text>'
               % (rx, ry - 2, rx, ry + 11))
    out.append('<ellipse cx="%.0f" cy="%.0f" rx="55" ry="22" fill="#fff" stroke="#829ab1"/>'
               '<text x="%.0f" y="%.0f" font-size="11" text-anchor="middle" fill="#334e68">local process</text>'
               % (local[0], local[1], local[0], local[1] + 4))
    # hook groups and table boxes
    for hook, names in tables.items():
        gx, gy = _POS[hook]
        active = any(k[0] == hook for k in visited)
        out.append('<rect x="%d" y="%d" width="%d" height="%d" rx="8" fill="%s" stroke="%s" stroke-width="%s"/>'
                   % (gx, gy, _BOX_W + 2 * _GROUP_PAD, heights[hook], "#eef4ff" if active else "#f5f7fa",
                      "#4263eb" if active else "#bcccdc", "1.6" if active else "1"))
        out.append('<text x="%d" y="%d" font-size="12" font-weight="700" fill="%s">%s</text>'
                   % (gx + _GROUP_PAD, gy + 17, "#364fc7" if active else "#627d98", escape(hook)))
        for name in names:
            x, y = boxes[(hook, name)]
            info = visited.get((hook, name))
            fill, stroke, width_ = "#ffffff", "#bcccdc", "1"
            if info:
                fill, stroke, width_ = "#dbe4ff", "#4263eb", "1.6"
                if info["rule"]:
                    fill, stroke = "#fff3bf", "#f08c00"
                if info["nat"]:
                    stroke, width_ = "#d9480f", "2.4"
                if info["verdict"]:
                    fill, stroke = "#ffe3e3", "#c92a2a"
            out.append('<rect x="%d" y="%d" width="%d" height="%d" rx="4" fill="%s" stroke="%s" stroke-width="%s">'
                       '<title>%s</title></rect>'
                       % (x, y, _BOX_W, _BOX_H, fill, stroke, width_,
                          escape("%s:%s%s" % (name, hook, "" if not info else " - hops " + ", ".join(
                              str(h) for h in info["hops"])))))
            out.append('<text x="%d" y="%d" font-size="12" fill="#1f2933" font-weight="%s">%s</text>'
                       % (x + 28, y + 17, "700" if info else "400", escape(name)))
            if info:
                badge = ", ".join(r for r in info["rule"][:2] if r != "rule")
                if not badge and info["rule"] and not info["nat"]:
                    badge = "rule"
                if info["nat"]:
                    badge = "/".join(sorted(set(_nat_tag(e) for e in info["nat"])))
                if info["verdict"]:
                    badge = (badge + " " if badge else "") + info["verdict"].upper()
                if badge:
                    out.append('<text x="%d" y="%d" font-size="10.5" text-anchor="end" fill="%s">%s</text>'
                               % (x + _BOX_W - 6, y + 17, "#d9480f" if info["nat"] else "#8f5a00",
                                  escape(badge)))
    # the packet's path, in hop order
    points = []
    labels = []
    for n, (hook, table) in enumerate(placed):
        if hook is None or (hook, table) not in boxes:
            continue
        x, y = boxes[(hook, table)]
        point = (x + 14, y + _BOX_H / 2)
        if not points or points[-1] != point:
            points.append(point)
            labels.append(n)
    if len(points) > 1:
        out.append('<polyline points="%s" fill="none" stroke="#d9480f" stroke-width="3" stroke-opacity="0.75" '
                   'stroke-linejoin="round" marker-end="url(#%s)"/>'
                   % (" ".join("%.0f,%.0f" % p for p in points), mid))
    for n, (x, y) in zip(labels, points):
        out.append('<circle cx="%.0f" cy="%.0f" r="8.5" fill="#d9480f"/>'
                   '<text x="%.0f" y="%.0f" font-size="10" font-weight="700" text-anchor="middle" fill="#fff">%d</text>'
                   % (x, y, x, y + 3.5, n))
    out.append("</svg>")
    return "".join(out)


def _hop_table(packet):
    marks = _nat_by_hop(packet)
    rows = ['<table><thead><tr><th>#</th><th>table:chain</th><th>kind</th><th>rule / verdict</th>'
            '<th>in / out</th><th>src %s dst</th><th>TTL</th><th>time</th><th>NAT</th></tr></thead><tbody>' % _ARROW]
    for n, hop in enumerate(_hops(packet)):
        nat = marks.get(n, [])
        cls = "nat" if nat else ("matched" if hop.get("kind") == "rule" else "")
        inout = "%s / %s" % (_s(hop.get("in")) or "-", _s(hop.get("out")) or "-")
        if hop.get("physin") or hop.get("physout"):
            inout += " (port %s / %s)" % (_s(hop.get("physin")) or "-", _s(hop.get("physout")) or "-")
        rows.append('<tr class="%s"><td>%d</td><td class="mono">%s</td><td>%s</td><td class="mono">%s</td>'
                    '<td class="mono">%s</td><td class="mono">%s</td><td>%s</td><td class="mono">%s</td>'
                    '<td>%s</td></tr>' % (
                        cls, n, escape("%s:%s" % (_s(hop.get("table")), _s(hop.get("chain")))),
                        escape(_kind_cell(hop)), escape(_rule_cell(hop)), escape(inout),
                        escape("%s %s %s" % (_endpoint(hop.get("src"), hop.get("sport")), _ARROW,
                                             _endpoint(hop.get("dst"), hop.get("dport")))),
                        escape(_s(hop.get("ttl"))), escape(_s(hop.get("time"))),
                        escape("; ".join(_nat_text(e) for e in nat))))
    rows.append("</tbody></table>")
    return "".join(rows)


def render_html(packets, title="Netfilter trace", unparsed=None, unparsed_total=None, explanation=None):
    """Self-contained HTML page: the explanation (``explain``'s lines, DROP lines marked), one section per
    packet with an SVG hook diagram, then the unparsed lines."""
    if not isinstance(packets, list):
        packets = []
    packets = [p for p in packets if isinstance(p, dict)]
    body = []
    if explanation:
        body.append('<section class="packet explain"><h2>What happened</h2>%s</section>' % "".join(
            '<div class="summary%s">%s</div>' % (" drop" if _s(x).startswith("DROP") else "", escape(_s(x)))
            for x in explanation))
    for index, packet in enumerate(packets):
        verdict = _s(packet.get("verdict")) or "unknown"
        vclass = verdict if verdict in ("accept", "drop", "reject") else "unknown"
        body.append('<section class="packet" id="packet-%d"><h2>%s<span class="verdict v-%s">%s</span></h2>'
                    % (index + 1, escape(_packet_title(packet, index)), vclass, escape(verdict)))
        if packet.get("summary"):
            body.append('<div class="summary">%s</div>' % escape(_s(packet["summary"])))
        for note in _notes(packet):
            body.append('<p class="note">%s</p>' % escape(note))
        body.append(_svg(packet, index))
        body.append('<div class="legend">boxes: <span style="background:#dbe4ff"></span>traversed'
                    '<span style="background:#fff3bf"></span>rule matched'
                    '<span style="background:#fff;border:2px solid #d9480f"></span>address/port translated'
                    '<span style="background:#ffe3e3"></span>dropped; numbered dots: the path, by hop #</div>')
        nat = packet.get("nat") if isinstance(packet.get("nat"), list) else []
        if nat:
            body.append('<ul class="nat-list">%s</ul>' % "".join(
                "<li>hop %s: %s</li>" % (escape(_s(e.get("hop"))), escape(_nat_text(e)))
                for e in nat if isinstance(e, dict)))
        body.append(_hop_table(packet))
        body.append("</section>")
    if not packets:
        body.append("<p>No traced packets.</p>")
    records = _unparsed_records(unparsed)
    if records:
        count = unparsed_total if isinstance(unparsed_total, int) and unparsed_total > len(records) else len(records)
        body.append('<section class="unparsed"><h2>Unparsed lines (%d)</h2><p>Trace-looking lines that could '
                    'not be read.</p><table><thead><tr><th>line</th><th>reason</th><th>text</th></tr></thead>'
                    '<tbody>%s</tbody></table>%s</section>' % (
                        count, "".join('<tr><td>%s</td><td>%s</td><td class="mono">%s</td></tr>' % (
                            escape(_s(u.get("line"))), escape(_s(u.get("reason"))), escape(_s(u.get("text"))))
                            for u in records),
                        "<p>... and %d more</p>" % (count - len(records)) if count > len(records) else ""))
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<title>%s</title><style>%s</style></head><body><h1>%s</h1>"
            '<div class="meta">%d packet%s</div>%s</body></html>\n'
            % (escape(_s(title)), _CSS, escape(_s(title)), len(packets), "" if len(packets) == 1 else "s",
               "".join(body)))


# ----------------------------------------------------------------------------- explanation
_FAMILY_NFT = {"ipv4": ("ip", "inet"), "ipv6": ("ip6", "inet")}


def _where(hop, rulenum=True):
    text = "%s:%s" % (_s(hop.get("table")), _s(hop.get("chain")))
    if rulenum and hop.get("kind") == "rule":
        if hop.get("rulenum") is not None:
            text += " rule %s" % hop["rulenum"]
        elif hop.get("handle") is not None:
            text += " rule #%s" % hop["handle"]
    return text


def _flow(packet):
    return "%s %s %s" % (_endpoint(packet.get("src"), packet.get("sport")), _ARROW,
                         _endpoint(packet.get("dst"), packet.get("dport")))


def _finding_for(culprit, findings, hop):
    """The firewall_info finding about what dropped the packet: the one naming its backend, table and chain
    (or hook); else br_netfilter's when the dropped packet was bridged; else one about its backend as a
    whole (mixed-backends for a drop in iptables-legacy beside nf_tables rules)."""
    exact = bridged = backend = None
    for f in findings or []:
        where = f.get("where") if isinstance(f, dict) else None
        if not where:
            continue
        if where.get("table"):
            if exact is not None or where.get("backend") != culprit["backend"] or where["table"] != culprit["table"]:
                continue
            if where.get("family") and where["family"] not in _FAMILY_NFT.get(culprit["family"], ()):
                continue
            if where.get("chain") == culprit["chain"] or _s(where.get("hook")).upper() == culprit["hook"]:
                exact = f
        elif where.get("backend"):
            if backend is None and where["backend"] == culprit["backend"]:
                backend = f
        elif f.get("id") == "br-netfilter-bridged" and (hop.get("physin") or hop.get("physout")):
            bridged = bridged or f
    return exact or bridged or backend


# Findings that explain a packet whose trace ends on the prerouting hook (routing dropped it).
_ROUTING_FINDINGS = ("ip-forward-disabled", "rp-filter-strict")


def vanished(packet):
    """True when the packet was neither dropped nor went past the prerouting hook: routing dropped it
    (ip_forward=0, reverse-path filter, no route). Only meaningful when something is traced after
    prerouting on this host (a forward or input base chain exists)."""
    if not isinstance(packet, dict) or packet.get("verdict") in ("drop", "reject"):
        return False
    hooks = hook_path(packet)
    return bool(hooks) and all(h == "PREROUTING" for h in hooks)


def needs_diagnosis(packets):
    """Whether a capture has a packet whose culprit the firewall diagnosis can name (dropped, or vanished)."""
    return any(isinstance(p, dict) and (p.get("verdict") in ("drop", "reject") or vanished(p)) for p in packets or [])


def _routing_culprit(packet, findings):
    """Culprit of a packet that never left prerouting: ip_forward=0 or strict rp_filter (routing dropped it),
    else, when the trace is an nf_tables one and the host also has iptables-legacy rules, a legacy table the
    trace cannot see (its DROP rules quoted from the finding's evidence)."""
    found = {f.get("id"): f for f in findings or [] if isinstance(f, dict)}
    fid = next((i for i in _ROUTING_FINDINGS if i in found), None)
    if fid is None and packet.get("source") != "legacy" and "mixed-backends" in found:
        fid = "mixed-backends"
    if fid is None:
        return None
    f = found[fid]
    fixes = [x for x in f.get("fix") or [] if x]
    out = dict(backend=None, family=_s(packet.get("family")) or "ipv4", table=None, chain=None, hook="PREROUTING",
               kind="routing", rule=None, verdict="drop", finding=f.get("ref") or fid, fix=fixes[0] if fixes else None)
    if fid == "mixed-backends":
        drops = [e.split(": ", 1)[-1] for e in f.get("evidence") or []
                 if e.startswith("iptables-legacy-save") and e.endswith((" -j DROP", " DROP"))]
        out.update(backend="iptables-legacy", kind="unseen", rule=drops[0] if drops else None)
        out["text"] = ("not seen after the prerouting hook and dropped by no traced chain: a table of iptables-legacy, "
                       "which an nf_tables trace cannot see, dropped it%s; firewall_info %s: %s; fix: %s" % (
                           " (its DROP rules: %s)" % "; ".join(drops) if drops else "", out["finding"],
                           _s(f.get("title")), "; ".join(fixes[:2]) or "-"))
        return out
    out["text"] = ("not forwarded: the trace ends on the prerouting hook, no firewall dropped it, routing did; "
                   "firewall_info %s: %s%s" % (out["finding"], _s(f.get("title")),
                                               "; fix: %s" % fixes[0] if fixes else ""))
    return out


def culprit(packet, findings=None):
    """Who dropped ``packet`` (verdict drop/reject): ``{backend, family, table, chain, hook, kind, rule,
    verdict, finding, fix, text}``, else None. ``findings`` are firewall_info's; the one about that table
    and chain (or hook) is linked by its ``ref`` and its first ``fix``."""
    if vanished(packet):
        return _routing_culprit(packet, findings)
    if not isinstance(packet, dict) or packet.get("verdict") not in ("drop", "reject"):
        return None
    hops = _hops(packet)
    hooks = hook_path(packet)
    index = next((n for n in range(len(hops) - 1, -1, -1) if hops[n].get("verdict") in ("drop", "reject")),
                 len(hops) - 1)
    if index < 0:
        return None
    hop, hook = hops[index], hooks[index]
    out = dict(backend=backend_of(packet, hop), family=_s(packet.get("family")) or "ipv4",
               table=_s(hop.get("table")), chain=_s(hop.get("chain")), hook=hook, kind=_s(hop.get("kind")),
               rule=hop.get("rule"), verdict=packet["verdict"], finding=None, fix=None)
    if out["kind"] == "policy":
        what = "the %s policy %s of %s's %s table" % (
            out["chain"], out["verdict"].upper(), out["backend"], out["table"])
    else:
        what = "%s's %s (%s) in the %s table" % (
            out["backend"], _where(hop), _s(hop.get("rule")) or "rule text unknown", out["table"])
    text = "dropped by %s (%s, hook %s)" % (what, out["family"], hook or "?")
    found = _finding_for(out, findings, hop)
    if found is not None:
        out["finding"] = found.get("ref") or found.get("id")
        fixes = [x for x in found.get("fix") or [] if x]
        out["fix"] = fixes[0] if fixes else None
        text += "; firewall_info %s: %s" % (out["finding"], _s(found.get("title")))
        if fixes:
            text += "; fix: %s" % "; ".join(fixes[:2])
    out["text"] = text
    return out


def explain(packets, findings=None):
    """A connection's path in a few sentences: ``{'lines': [...], 'culprits': [...]}``.

    The connection is the packet the NAT was decided on (its first packet), else the first one; its
    reply is the packet coming back from its destination. Lines: ``IN`` (where it entered), ``FORWARD``
    (every base chain that accepted it on the forward hook: iptables' filter, libvirt's nft
    ``forward``/``guest_output``...), ``NAT`` (the translation the trace parser decided, with the rule),
    ``REPLY`` (its de-NAT and acceptance), ``DROP`` (per dropped packet: backend, table, policy or rule,
    and the firewall_info finding with its fix, see ``culprit``)."""
    packets = [p for p in packets or [] if isinstance(p, dict) and _hops(p)]
    lines, culprits = [], []
    if not packets:
        return dict(lines=["no packet captured"], culprits=[])
    natted = [p for p in packets if any(isinstance(e, dict) and e.get("implied") and e.get("field") == "src"
                                        for e in p.get("nat") or [])]
    conn = (natted or packets)[0]
    hops, hooks = _hops(conn), hook_path(conn)
    first = hops[0]
    lines.append("IN      %s %s enters the host on %s at %s" % (
        _s(conn.get("proto")) or "?", _flow(conn), _s(first.get("in")) or "?", _where(first, False)))
    fwd = [(h, hook) for h, hook in zip(hops, hooks) if hook == "FORWARD" and h.get("verdict") == "accept"]
    if any(h.get("kind") == "rule" for h, hook in fwd):
        fwd = [(h, hook) for h, hook in fwd if h.get("kind") == "rule"]     # empty chains' policy accepts: noise
    for h, hook in fwd:
        what = ("rule %s" % _s(h.get("rule"))) if h.get("kind") == "rule" else "policy accept"
        lines.append("FORWARD accepted by %s %s (out %s): %s" % (
            backend_of(conn, h), _where(h), _s(h.get("out")) or "?", what))
    if not fwd and "FORWARD" not in hooks:
        lines.append("FORWARD no hop on the forward hook in the trace")
    for entry in conn.get("nat") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("hop"), int) or entry["hop"] >= len(hops):
            continue
        h = hops[entry["hop"]]
        lines.append("NAT     %s %s (hook %s): %s; %s" % (
            backend_of(conn, h), _where(h), hooks[entry["hop"]] or "?", _s(h.get("rule")) or "-", _nat_text(entry)))
    if not conn.get("nat") and vanished(conn):
        lines.append("NAT     not reached: the packet went no further than the prerouting hook")
    elif not conn.get("nat") and conn.get("verdict") in ("drop", "reject"):
        lines.append("NAT     not reached: the packet was dropped on the %s hook" % (
            next((hk for h, hk in zip(reversed(hops), reversed(hooks)) if h.get("verdict") in ("drop", "reject")),
                 None) or hooks[-1] or "?"))
    elif not conn.get("nat"):
        lines.append("NAT     none in this packet (only a connection's first packet passes the nat chains)")
    replies = [p for p in packets if p.get("src") == conn.get("dst") and p.get("sport") == conn.get("dport")
               and p.get("dst") != conn.get("dst")]
    replies.sort(key=lambda p: 0 if any(isinstance(e, dict) and e.get("field") == "dst" for e in p.get("nat") or [])
                 else 1)
    if replies:
        rep = replies[0]
        rhops, rhooks = _hops(rep), hook_path(rep)
        text = "REPLY   %s arrives on %s" % (_flow(rep), _s(rhops[0].get("in")) or "?")
        dnat = [e for e in rep.get("nat") or [] if isinstance(e, dict) and e.get("field") == "dst"]
        if dnat:
            text += "; conntrack de-NATs the destination %s %s %s" % (_s(dnat[0].get("before")), _ARROW,
                                                                      _s(dnat[0].get("after")))
        racc = [h for h, hook in zip(rhops, rhooks) if hook == "FORWARD" and h.get("verdict") == "accept"]
        if racc:
            text += "; accepted by %s %s: %s" % (backend_of(rep, racc[-1]), _where(racc[-1]),
                                                 _s(racc[-1].get("rule")) or "policy accept")
        lines.append(text)
    else:
        lines.append("REPLY   none captured")
    seen = set()
    for p in packets:
        c = culprit(p, findings)
        if c is None:
            continue
        culprits.append(dict(c, packet=_flow(p)))
        key = (c["backend"], c["table"], c["chain"], c["kind"], c["rule"])
        if key not in seen:
            seen.add(key)
            lines.append("DROP    %s %s" % (_flow(p), c["text"]))
    return dict(lines=lines, culprits=culprits)


def render(packets, fmt="text", **kwargs):
    """Render ``packets`` as ``text`` or ``html``."""
    if fmt == "text":
        return render_text(packets, **kwargs)
    if fmt == "html":
        return render_html(packets, **kwargs)
    raise ValueError("unknown report format %r (expected 'text' or 'html')" % (fmt,))
