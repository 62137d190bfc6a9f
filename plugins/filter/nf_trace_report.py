# -*- coding: utf-8 -*-
# Copyright (c) 2026, virtops.virtnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filter ``nf_trace_report``; documentation in ``nf_trace_report.yml``."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._trace_report import render


def nf_trace_report(packets, format="text", title="Netfilter trace"):  # pylint: disable=redefined-builtin
    """Packets from ``nf_trace`` -> a text report or a self-contained HTML page."""
    unparsed = None
    if isinstance(packets, Mapping) and "packets" in packets:
        unparsed = packets.get("unparsed")     # nf_trace(with_unparsed=true): list the lines not read
        packets = packets["packets"]
    if unparsed is not None and not isinstance(unparsed, (list, tuple)):
        raise AnsibleFilterError("nf_trace_report: unparsed must be the list from nf_trace(with_unparsed=true), "
                                 "got %s" % type(unparsed).__name__)
    if not isinstance(packets, (list, tuple)):
        raise AnsibleFilterError("nf_trace_report: input must be the list of packets from nf_trace, got %s"
                                 % type(packets).__name__)
    for index, packet in enumerate(packets):
        if not isinstance(packet, Mapping):
            raise AnsibleFilterError("nf_trace_report: item %d is %s, expected a packet (dict) from nf_trace"
                                     % (index, type(packet).__name__))
    if format not in ("text", "html"):
        raise AnsibleFilterError("nf_trace_report: format must be 'text' or 'html', got %r" % (format,))
    if not isinstance(title, str):
        raise AnsibleFilterError("nf_trace_report: title must be a string, got %s" % type(title).__name__)
    plain = [dict(p) for p in packets]
    unparsed = [dict(u) for u in unparsed or () if isinstance(u, Mapping)]
    if format == "html":
        return render(plain, fmt="html", title=title, unparsed=unparsed)
    return render(plain, fmt="text", unparsed=unparsed)


class FilterModule(object):
    """Netfilter trace report filter."""

    def filters(self):
        return {"nf_trace_report": nf_trace_report}
