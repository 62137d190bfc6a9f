# SPDX-License-Identifier: GPL-3.0-or-later
"""The trace parser on text as people really have it (issue 15): no line lost silently, ports kept.

Every case starts from a real capture committed under tests/unit/fixtures/{trace,capture} (taken in
the lab, see their README/capture.sh) and applies one transformation people's tools and hands apply:
glued fields (xtables-monitor builds that print ``ID=43007SPORT=80``), realigned columns and TABs,
missing spaces, quoting with ``> ``, line numbers, syslog clock without a date, redaction, the older
xtables-monitor order (TRACE before its PACKET). Each transformed text must give the same packets,
hops and ports as the clean capture -- or, where the text no longer carries what grouping needs
(redaction), the same hops in packets flagged ``approximate`` -- and every line that cannot be read
is reported in ``unparsed`` with its line number.
"""
import itertools
import os
import random
import re

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_parse as tp
from ansible_collections.virtops.virtnet.plugins.filter.nf_trace import nf_log_entries, nf_trace

UNIT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FIX = os.path.join(UNIT, "fixtures")

LEGACY = ("capture/el7_dmesg.txt", "capture/el6_dmesg.txt", "capture/el7_syslog_messages.txt",
          "trace/legacy_dmesg.txt", "trace/legacy_dmesg_T.txt")
XTABLES = ("capture/debian12_xtables_monitor.txt", "trace/xtables_monitor_trace.txt")
NFT = ("capture/debian12_nft_monitor_trace.txt", "trace/nft_monitor_trace.txt")
HOP_KEYS = ("table", "chain", "kind", "rulenum", "handle", "verdict", "in", "out", "physin", "physout", "src",
            "dst", "sport", "dport", "ttl")


def read(name):
    with open(os.path.join(FIX, name), encoding="utf-8") as fh:
        return fh.read()


def is_trace(line):
    return "TRACE:" in line or "PACKET:" in line or "trace id" in line


def shape(parsed, time=True):
    """What must not change: per packet its family, protocol, ports and hops (rule text up to blanks)."""
    out = []
    for p in parsed["packets"]:
        hops = tuple(tuple(h[k] for k in HOP_KEYS) + (" ".join((h["rule"] or "").split()),)
                     + ((h["time"],) if time else ()) for h in p["hops"])
        out.append((p["family"], p["proto"], p["src"], p["dst"], p["sport"], p["dport"], p["verdict"], hops))
    return out


def transform(text, fn):
    return "\n".join(fn(i, line) if is_trace(line) else line for i, line in enumerate(text.splitlines()))


def parse(text):
    return tp.parse(text, with_unparsed=True)


def assert_same(clean_text, text, time=True):
    clean, got = parse(clean_text), parse(text)
    assert clean["unparsed"] == [] and clean["stats"]["malformed"] == 0
    assert got["unparsed"] == []
    assert got["stats"]["malformed"] == 0
    assert shape(got, time) == shape(clean, time)
    assert got["stats"]["trace_lines"] == clean["stats"]["trace_lines"]


# ------------------------------------------------------------------ item 1: glued xtables-monitor fields
@pytest.mark.parametrize("name", XTABLES)
def test_glued_xtables_fields_keep_ports(name):
    clean = read(name)
    # a build that glues the field after the IP ID: ``ID=43007SPORT=80`` (no DF), ``ID=0DF SPORT=80`` (DF)
    no_df = transform(clean, lambda i, line: re.sub(r"ID=(\d+) DF ", r"ID=\1", line))
    df = transform(clean, lambda i, line: re.sub(r"ID=(\d+) DF ", r"ID=\1DF ", line))
    assert "SPORT=" in clean and re.search(r"ID=\d+SPORT=", no_df) and re.search(r"ID=\d+DF SPORT=", df)
    assert_same(clean, no_df)
    assert_same(clean, df)
    ported = [p for p in parse(no_df)["packets"] if p["proto"] in ("tcp", "udp")]
    assert ported and all(p["sport"] and p["dport"] for p in ported)


# ------------------------------------------------------------------ item 2: PACKET lines are not LOG entries
@pytest.mark.parametrize("name", XTABLES)
def test_xtables_packet_lines_are_not_log_entries(name):
    text = read(name)
    assert nf_log_entries(text) == []
    log = read("trace/log_target_dmesg.txt")
    assert nf_log_entries(text + "\n" + log) == nf_log_entries(log) != []


# ------------------------------------------------------------------ item 3: whitespace
GLUE_LEGACY = ((r"(policy|rule|return):(\d+) IN=", r"\1:\2IN="), (r"LEN=(\d+) TOS=", r"LEN=\1TOS="),
               (r"TTL=(\d+) ID=", r"TTL=\1ID="))


@pytest.mark.parametrize("name", LEGACY)
@pytest.mark.parametrize("glue", GLUE_LEGACY, ids=("head", "len_tos", "ttl_id"))
def test_missing_space_between_legacy_fields(name, glue):
    clean = read(name)
    text = transform(clean, lambda i, line: re.sub(glue[0], glue[1], line))
    assert text != clean
    assert_same(clean, text)


def _realign(line, rnd):
    words = line.split(" ")
    out = words[0]
    for word in words[1:]:
        out += rnd.choice((" ", "  ", "   ", "\t", " \t ", "    ")) + word
    return rnd.choice(("", " ", "  ", "\t")) + out + rnd.choice(("", " ", "   ", "\t"))


@pytest.mark.parametrize("name", LEGACY + XTABLES + NFT)
def test_realigned_columns_tabs_leading_trailing_blanks(name):
    clean = read(name)
    rnd = random.Random(name)
    text = transform(clean, lambda i, line: _realign(line, rnd))
    assert_same(clean, text)


WORDS = st.lists(st.sampled_from((" ", "  ", "\t", " \t", "     ")), min_size=1, max_size=400)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blanks=WORDS, name=st.sampled_from(LEGACY[:1] + XTABLES[:1] + NFT[:1]))
def test_whitespace_mutation_property(blanks, name):
    """Hypothesis: any blank between any fields of any line made a run of blanks / TABs."""
    clean = read(name)
    it = itertools.cycle(blanks)

    def mutate(i, line):
        words = line.split(" ")
        return words[0] + "".join(next(it) + w for w in words[1:])
    assert_same(clean, transform(clean, mutate))


# ------------------------------------------------------------------ quoting, line numbers, syslog clock
@pytest.mark.parametrize("name", LEGACY + XTABLES + NFT)
@pytest.mark.parametrize("prefix", ("> ", ">> ", "%d: ", "%5d | ", "  %d  "))
def test_quoted_and_numbered_lines(name, prefix):
    clean = read(name)
    text = transform(clean, lambda i, line: (prefix % i if "%" in prefix else prefix) + line)
    assert_same(clean, text)


def test_syslog_wrapper_with_time_but_no_date():
    clean = read("trace/legacy_dmesg.txt")
    text = transform(clean, lambda i, line: "20:56:%02d myhost kernel: %s" % (i % 60, line.split("] ", 1)[1]))
    assert_same(clean, text, time=False)
    times = [h["time"] for p in parse(text)["packets"] for h in p["hops"]]
    assert times and all(re.match(r"20:56:\d\d\Z", t) for t in times)


# ------------------------------------------------------------------ item 4: redaction
@pytest.mark.parametrize("name", LEGACY)
def test_redacted_lines_group_approximately(name):
    clean = read(name)

    def redact(i, line):
        line = re.sub(r"MAC=\S+", "MAC=...", line)
        return re.sub(r"(DST=\S+ ).*", r"\1...", line)
    text = transform(clean, redact)
    assert " ID=" not in text and " PROTO=" not in text
    got, ref = parse(text), parse(clean)
    assert got["unparsed"] == [] and got["stats"]["malformed"] == 0
    assert got["packets"] and all(p.get("approximate") is True for p in got["packets"])
    assert not any("approximate" in p for p in ref["packets"])

    def hops(parsed):
        return sorted((h["table"], h["chain"], h["kind"], h["rulenum"], h["src"], h["dst"], h["in"], h["out"])
                      for p in parsed["packets"] for h in p["hops"])
    assert hops(got) == hops(ref)       # every line is a hop: nothing lost
    assert len(got["packets"]) >= len(ref["packets"]) / 2


# ------------------------------------------------------------------ item 5: older xtables-monitor order
@pytest.mark.parametrize("name", XTABLES)
def test_older_xtables_monitor_order_trace_before_packet(name):
    clean = read(name)
    lines = clean.splitlines()
    out, held = [], None
    for line in lines:     # each PACKET line moved after the first TRACE line that followed it
        if line.startswith("PACKET:"):
            if held is not None:
                out.append(held)
            held = line
        else:
            out.append(line)
            if held is not None and "TRACE:" in line:
                out.append(held)
                held = None
    if held is not None:
        out.append(held)
    text = "\n".join(out)
    assert text != clean
    assert_same(clean, text)


def test_older_xtables_monitor_family_0_and_ll_field():
    text = ("PACKET: 0 1a2b3c4d IN=tun0 LL=0x304 SRC=10.8.0.2 DST=10.44.32.217 LEN=60 TOS=0x0 TTL=64 ID=4711 "
            "DF SPORT=40000 DPORT=3128 SYN\n"
            " TRACE: 2 1a2b3c4d raw:PREROUTING:policy:ACCEPT \n")
    got = parse(text)
    assert got["unparsed"] == []
    [pkt] = got["packets"]
    assert (pkt["family"], pkt["proto"], pkt["src"], pkt["sport"], pkt["dport"]) == (
        "ipv4", "tcp", "10.8.0.2", 40000, 3128)
    assert pkt["hops"][0]["in"] == "tun0"


# ------------------------------------------------------------------ item 5: other forms seen in the wild
def test_ebtables_log_lines_become_hops_of_eb_tables():
    text = ("[ 100.000001] TRACE: eb:broute:BROUTING IN=vnet0 OUT= MAC source = 52:54:00:aa:bb:cc MAC dest = "
            "52:54:00:11:22:33 proto = 0x0800 IP SRC=192.168.122.10 IP DST=192.168.122.1, IP tos=0x00, IP proto=6 "
            "SPT=40000 DPT=53\n"
            "[ 100.000002] TRACE: eb:filter:INPUT IN=vnet0 OUT= MAC source = 52:54:00:aa:bb:cc MAC dest = "
            "52:54:00:11:22:33 proto = 0x0800 IP SRC=192.168.122.10 IP DST=192.168.122.1, IP tos=0x00, IP proto=6 "
            "SPT=40000 DPT=53\n")
    got = parse(text)
    assert got["unparsed"] == []
    [pkt] = got["packets"]
    assert pkt["source"] == "ebtables" and pkt["approximate"] is True and pkt["proto"] == "tcp"
    assert [(h["table"], h["chain"], h["sport"], h["dport"]) for h in pkt["hops"]] == [
        ("broute", "BROUTING", 40000, 53), ("filter", "INPUT", 40000, 53)]
    assert pkt["hops"][0]["time"] == "100.000001"


def test_nft_conntrack_lines_attach_to_their_trace_id():
    clean = read("capture/debian12_nft_monitor_trace.txt")
    lines = clean.splitlines()
    out = []
    for line in lines:
        out.append(line)
        if " packet: " in line:
            tid, fam, table, chain = line.split()[2:6]
            out.append("trace id %s %s %s %s conntrack: ct direction original ct state new ct id 42" % (
                tid, fam, table, chain))
    got, ref = parse("\n".join(out)), parse(clean)
    assert got["unparsed"] == []
    assert shape(got) == shape(ref)
    assert all(p["conntrack"] == "ct direction original ct state new ct id 42" for p in got["packets"])


def test_nft_bridge_family_arp_and_verdict_continue():
    text = ('trace id 0b0c0d0e bridge filter forward packet: iif "vnet0" oif "vnet1" ether saddr 52:54:00:aa:bb:cc '
            'ether daddr ff:ff:ff:ff:ff:ff arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp operation request\n'
            'trace id 0b0c0d0e bridge filter forward rule ether type arp counter packets 1 bytes 42 (verdict continue)\n'
            'trace id 0b0c0d0e bridge filter forward verdict continue\n'
            'trace id 0b0c0d0e bridge filter forward policy accept\n')
    got = parse(text)
    assert got["unparsed"] == []
    [pkt] = got["packets"]
    assert pkt["family"] == "bridge" and pkt["verdict"] == "accept"
    assert [(h["kind"], h["verdict"], h["in"], h["out"]) for h in pkt["hops"]] == [
        ("rule", "continue", "vnet0", "vnet1"), ("return", "continue", "vnet0", "vnet1"),
        ("policy", "accept", "vnet0", "vnet1")]


def test_long_calico_path_with_dotted_chain_names_is_one_packet():
    """49 hops through Kubernetes/Calico chains (names with dots and dashes) stay one packet."""
    fields = ("IN=cali1a2b3c4d5e6 OUT= MAC=ee:ee:ee:ee:ee:ee:52:54:00:aa:bb:cc:08:00 SRC=10.244.1.5 DST=10.96.0.10 "
              "LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=31337 DF PROTO=UDP SPT=41000 DPT=53 LEN=40 ")
    heads = []
    for table, builtin, chains in (("raw", "PREROUTING", 8), ("mangle", "PREROUTING", 8), ("nat", "PREROUTING", 16),
                                   ("filter", "FORWARD", 14)):
        heads.append("%s:%s:rule:1" % (table, builtin))
        heads += ["%s:cali-%s.%02d-KUBE-SVC-TCOU7JCQXEZGVUNU:rule:%d" % (table, builtin.lower(), k, k + 1)
                  for k in range(chains - 1)]
        heads.append("%s:%s:policy:%d" % (table, builtin, chains + 1) if table != "filter" else
                     "%s:%s:rule:%d" % (table, builtin, chains + 1))
    heads = heads[:49]
    text = "\n".join("[ %d.%06d] TRACE: %s %s" % (5, i, head, fields) for i, head in enumerate(heads))
    got = parse(text)
    assert got["unparsed"] == []
    [pkt] = got["packets"]
    assert len(pkt["hops"]) == 49 and (pkt["sport"], pkt["dport"]) == (41000, 53)
    assert pkt["hops"][5]["chain"] == "cali-prerouting.04-KUBE-SVC-TCOU7JCQXEZGVUNU"


# ------------------------------------------------------------------ never vanish: the exact lines reported
def test_unreadable_lines_are_reported_with_line_numbers():
    clean = read("capture/el7_dmesg.txt").splitlines()
    bad = {3: "[  525.7] TRACE: filter:F",
           6: "PACKET: x zz IN=eth0",
           9: "trace id zz ip filter input something odd",
           12: "[  525.8] TRACE: raw:PREROUTING:policy:3 IN=virbr0 OUT= SRC=192.168.122.200 DST=10.44."}
    lines = clean[:]
    for at in sorted(bad):
        lines.insert(at - 1, bad[at])
    got = parse("\n".join(lines))
    assert [(u["line"], u["text"]) for u in got["unparsed"]] == sorted(bad.items())
    assert got["stats"]["malformed"] == 4
    assert all(u["reason"] for u in got["unparsed"])
    assert "not table:chain:type:rulenum" in got["unparsed"][0]["reason"]
    assert shape(got) == shape(parse("\n".join(clean)))


def test_nf_trace_with_unparsed_option():
    text = read("capture/el7_dmesg.txt") + "\n[  999.1] TRACE: filter:F\n"
    plain = nf_trace(text)
    full = nf_trace(text, with_unparsed=True)
    assert isinstance(plain, list) and full["packets"] == plain
    assert full["unparsed"] == [{"line": len(text.splitlines()), "text": "[  999.1] TRACE: filter:F",
                                 "reason": "TRACE line: head 'filter:F' is not table:chain:type:rulenum"}]


# ------------------------------------------------------------------ reports show what was not read
def test_reports_list_unparsed_lines_and_unknown_verdicts():
    from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_report as rep
    from ansible_collections.virtops.virtnet.plugins.filter.nf_trace_report import nf_trace_report
    text = read("capture/el7_dmesg.txt") + "\n[  999.1] TRACE: filter:F <b>\n"
    got = nf_trace(text, with_unparsed=True)
    line = len(text.splitlines())
    report = nf_trace_report(got)
    assert "Unparsed lines (1)" in report
    assert "line %d: TRACE line: head 'filter:F' is not table:chain:type:rulenum" % line in report
    assert "    [  999.1] TRACE: filter:F <b>" in report
    # a legacy trace with no rules: where the path ends, and that the verdict needs the rules
    last = got["packets"][0]["hops"][-1]
    assert "note: verdict unknown: the path ends at %s:%s %s %s; a kernel-log trace does not say" % (
        last["table"], last["chain"], last["kind"], last["rulenum"]) in report
    html = nf_trace_report(got, format="html")
    assert "Unparsed lines (1)" in html and "filter:F &lt;b&gt;" in html and "<b>" not in html.split("<body>")[1]
    assert "verdict unknown: the path ends at" in html
    # with the rules the verdict is known and the note goes
    annotated = nf_trace(text, iptables_save=read("capture/el7_iptables_save.txt"))
    assert "a kernel-log trace does not say" not in rep.render_text(annotated)
    approx = parse(transform(read("capture/el7_dmesg.txt"), lambda i, l: re.sub(r"(DST=\S+ ).*", r"\1...", l)))
    assert "note: grouped approximately" in rep.render_text(approx["packets"])
