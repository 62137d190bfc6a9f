# -*- coding: utf-8 -*-
# Copyright (c) 2026, virtops.virtnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters ``nf_trace`` and ``nf_log_entries``; documentation in ``nf_trace.yml`` and ``nf_log_entries.yml``."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._trace_parse import (
    annotate,
    parse,
    parse_log_entries,
)


def _lines(value, name):
    """Accept a text or a list of texts; anything else is the caller's mistake."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise AnsibleFilterError(
                    "%s: item %d of the input list is %s, expected a string" % (name, index, type(item).__name__))
        return list(value)
    raise AnsibleFilterError("%s: input must be a string or a list of strings, got %s" % (name, type(value).__name__))


def _opt_text(value, option, name):
    if value is None or isinstance(value, str):
        return value
    raise AnsibleFilterError("%s: option %s must be a string, got %s" % (name, option, type(value).__name__))


def nf_trace(data, stats=False, iptables_save=None, ip6tables_save=None, with_unparsed=False):
    """Trace text (kernel log, xtables-monitor, nft monitor trace) -> list of packets."""
    if not isinstance(stats, bool):
        raise AnsibleFilterError("nf_trace: option stats must be a boolean, got %s" % type(stats).__name__)
    if not isinstance(with_unparsed, bool):
        raise AnsibleFilterError("nf_trace: option with_unparsed must be a boolean, got %s"
                                 % type(with_unparsed).__name__)
    if isinstance(data, Mapping) and "stdout_lines" in data:
        data = data["stdout_lines"]
    text = _lines(data, "nf_trace")
    iptables_save = _opt_text(iptables_save, "iptables_save", "nf_trace")
    ip6tables_save = _opt_text(ip6tables_save, "ip6tables_save", "nf_trace")
    result = parse(text, with_unparsed=with_unparsed)
    if iptables_save is not None or ip6tables_save is not None:
        annotate(result["packets"], iptables_save or "", ip6tables_save)
    if with_unparsed:
        out = {"packets": result["packets"], "unparsed": result["unparsed"]}
        if stats:
            out["stats"] = result["stats"]
        return out
    if stats:
        return result
    return result["packets"]


def nf_log_entries(data):
    """LOG-target kernel log lines -> list of dicts."""
    if isinstance(data, Mapping) and "stdout_lines" in data:
        data = data["stdout_lines"]
    return parse_log_entries(_lines(data, "nf_log_entries"))


class FilterModule(object):
    """Netfilter trace parsing filters."""

    def filters(self):
        return {
            "nf_trace": nf_trace,
            "nf_log_entries": nf_log_entries,
        }
