# -*- coding: utf-8 -*-
"""The one parser of the netfilter half's wire format (``@@section`` blocks)."""
from __future__ import annotations

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _wire as wire

OUTPUT = """noise before any header
@@state
id=abc123
 tool = dmesg
@@save iptables-legacy-save
*raw
COMMIT
@@remover iptables-legacy-save 4242
@@lines
@@state
pid=17
@@@ not a header
@@end
"""


def test_sections_in_order_with_arguments_and_bodies():
    got = wire.parse(OUTPUT)
    assert [(s.name, s.arg) for s in got] == [
        ('state', None), ('save', 'iptables-legacy-save'), ('remover', 'iptables-legacy-save 4242'),
        ('lines', None), ('state', None), ('end', None)]
    assert got.by_arg('save')['iptables-legacy-save'].text == '*raw\nCOMMIT\n'
    assert got.get('lines') == [] and got.get('absent') is None and got.get('absent', []) == []
    assert got.ended and 'remover' in got and 'absent' not in got


def test_a_repeated_section_appends_and_a_non_header_stays_in_the_body():
    got = wire.parse(OUTPUT)
    assert got.get('state') == ['id=abc123', ' tool = dmesg', 'pid=17', '@@@ not a header']
    assert got.as_dict()['state'] == got.get('state')
    assert wire.parse_kv(got.get('state')) == {'id': 'abc123', 'tool': 'dmesg', 'pid': '17'}


def test_output_cut_before_its_end_is_not_ended():
    got = wire.parse('@@state\nid=1\n')
    assert not got.ended and wire.parse('').as_dict() == {} and wire.parse(None) == []
    assert wire.parse_kv(['a: b', 'c'], sep=':') == {'a': 'b'}


def test_lines_end_at_newline_only_so_bodies_read_back_exact():
    """CRLF, a lone CR, a form feed: part of the line, as the shell printed it (str.splitlines would cut there)."""
    got = wire.parse('@@exists\na = 1\r\nb\x0cc\rd\n\n@@end')
    assert [(s.name, s.lines) for s in got] == [('exists', ['a = 1\r', 'b\x0cc\rd', '']), ('end', [])]
    assert got[0].text == 'a = 1\r\nb\x0cc\rd\n\n'
    assert wire.parse('@@exists\n\n').get('exists') == [''] and wire.parse('\n') == []
