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

``render(packets, fmt='text'|'html', **kwargs) -> str``
    Dispatch on ``fmt``; raises ``ValueError`` on an unknown format.

Packets are the dicts produced by ``_trace_parse`` (``parse``/``iter_packets``/``annotate``).
"""

from __future__ import annotations

from html import escape

from ansible_collections.virtops.virtnet.plugins.plugin_utils._trace_parse import hook_of_chain

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


def _hook_of(hop, previous):
    """Netfilter hook of a hop (builtin chain name, nft chain name or in/out), else the previous one."""
    chain = _s(hop.get("chain"))
    upper = chain.upper()
    if upper in _HOOK_TABLES:
        return upper
    guess_from = hop if hop.get("source") != "legacy" and previous is None else None
    return hook_of_chain(chain, guess_from) or previous


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
def render_text(packets, unparsed=None, unparsed_total=None):
    """Plain-text report: a table per packet, then the unparsed lines."""
    if not isinstance(packets, list):
        packets = []
    out = []
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
    hook = None
    for hop in _hops(packet):
        hook = _hook_of(dict(hop, source=packet.get("source")), hook)
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


def render_html(packets, title="Netfilter trace", unparsed=None, unparsed_total=None):
    """Self-contained HTML page: one section per packet with an SVG hook diagram, then the unparsed lines."""
    if not isinstance(packets, list):
        packets = []
    packets = [p for p in packets if isinstance(p, dict)]
    body = []
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


def render(packets, fmt="text", **kwargs):
    """Render ``packets`` as ``text`` or ``html``."""
    if fmt == "text":
        return render_text(packets, **kwargs)
    if fmt == "html":
        return render_html(packets, **kwargs)
    raise ValueError("unknown report format %r (expected 'text' or 'html')" % (fmt,))
