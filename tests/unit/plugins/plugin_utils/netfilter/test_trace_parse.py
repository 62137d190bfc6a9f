# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the trace parser on real captured text.

Fixtures: the seed's dmesg lines (../shared/seed) and tests/unit/fixtures/trace/*.txt, captured on
this kind of machine by tests/unit/fixtures/trace/capture.sh (namespaces vn-parse-*, legacy
iptables TRACE read with dmesg / dmesg -T, iptables-nft TRACE read with xtables-monitor --trace,
native nft nftrace read with nft monitor trace). The syslog and journalctl forms are made from the
real dmesg lines by putting the header those tools print in front of the kernel message.
"""
import glob
import itertools
import os
import random
import re
import tracemalloc

import pytest

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_parse as tp

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
                        "fixtures", "trace")


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
        return fh.read()


@pytest.fixture(scope="module")
def seed_text(shared_dir):
    texts = [open(p, encoding="utf-8").read() for p in sorted(glob.glob(os.path.join(shared_dir, "seed", "*.txt")))]
    text = "\n".join(t for t in texts if "TRACE: raw:PREROUTING" in t)
    if not text:
        pytest.skip("no seed file with TRACE lines in ../shared/seed")
    return text


def seed_trace_lines(text):
    return [line for line in text.splitlines() if "TRACE: " in line]


def hop_names(packet):
    return ["%s:%s" % (h["table"], h["chain"]) for h in packet["hops"]]


# ----------------------------------------------------------------------------------------- seed
SEED_PATH = ["raw:PREROUTING", "mangle:PREROUTING", "nat:PREROUTING", "mangle:FORWARD", "filter:FORWARD",
             "mangle:POSTROUTING", "nat:POSTROUTING"]
SEED_SUMMARY = ("raw:PREROUTING policy \u2192 mangle:PREROUTING policy \u2192 nat:PREROUTING policy \u2192 "
                "mangle:FORWARD policy \u2192 filter:FORWARD rule 2 \u2192 mangle:POSTROUTING policy \u2192 "
                "nat:POSTROUTING rule 3")


def test_seed_packet(seed_text):
    result = tp.parse(seed_text)
    assert result["stats"]["trace_lines"] == 7
    assert result["stats"]["malformed"] == 0
    assert result["stats"]["lines"] == len(seed_text.splitlines())
    [packet] = result["packets"]
    assert hop_names(packet) == SEED_PATH
    assert [h["kind"] for h in packet["hops"]] == ["policy"] * 4 + ["rule", "policy", "rule"]
    assert packet["hops"][4]["rulenum"] == 2 and packet["hops"][6]["rulenum"] == 3
    assert packet["hops"][0]["in"] == "virbr0" and packet["hops"][0]["out"] is None
    assert (packet["hops"][4]["in"], packet["hops"][4]["out"]) == ("virbr0", "bond0")
    assert packet["hops"][6]["out"] == "bond0"
    assert packet["hops"][0]["time"] == "5121056.357116"
    assert [h["ttl"] for h in packet["hops"]] == [64, 64, 64, 63, 63, 63, 63]
    assert (packet["family"], packet["proto"], packet["src"], packet["dst"], packet["sport"], packet["dport"]) == (
        "ipv4", "tcp", "192.168.122.17", "10.44.32.217", 42954, 3128)
    assert packet["summary"] == SEED_SUMMARY
    assert packet["nat"] == []          # the kernel logs before MASQUERADE rewrites the source
    assert packet["verdict"] is None    # legacy TRACE lines carry no verdict without a rules snapshot


def test_seed_log_line(seed_text):
    [entry] = tp.parse_log_entries(seed_text)
    assert entry["prefix"] is None
    assert (entry["in"], entry["out"], entry["src"], entry["dst"]) == (None, "bond0", "192.168.122.17", "10.44.32.217")
    assert (entry["proto"], entry["sport"], entry["dport"], entry["ttl"], entry["id"]) == ("tcp", 42964, 3128, 63, 62347)
    assert entry["flags"] == ["DF", "SYN"]


# ------------------------------------------------------------------------------ header forms
def _as_syslog(line):
    m = re.match(r"\[\s*([\d.]+)\] (.*)$", line)
    return "Nov 26 20:59:56 hv1 kernel: [%12s] %s" % (m.group(1), m.group(2))


def _as_journal_short(line):
    return "Nov 26 20:59:56 hv1 kernel: " + re.sub(r"^\[[^\]]*\] ", "", line)


def _as_journal_iso(line):
    return "2026-11-26T20:59:56+0000 hv1 kernel: " + re.sub(r"^\[[^\]]*\] ", "", line)


@pytest.mark.parametrize("form", [None, "dmesg_T", _as_syslog, _as_journal_short, _as_journal_iso])
def test_header_forms_give_the_same_packets(form):
    base = tp.parse(fixture("legacy_dmesg.txt"))
    if form is None:
        other = base
    elif form == "dmesg_T":
        other = tp.parse(fixture("legacy_dmesg_T.txt"))
    else:
        other = tp.parse([form(line) for line in fixture("legacy_dmesg.txt").splitlines()])
    assert other["stats"]["malformed"] == 0
    assert [p["summary"] for p in other["packets"]] == [p["summary"] for p in base["packets"]]
    assert [p["src"] for p in other["packets"]] == [p["src"] for p in base["packets"]]
    times = [h["time"] for p in other["packets"] for h in p["hops"]]
    assert all(times)
    if form == "dmesg_T":
        assert times[0].startswith("Thu Nov 26 ")
    elif form is _as_journal_iso:
        assert times[0] == "2026-11-26T20:59:56+0000"


# ------------------------------------------------------------------------------ legacy capture
@pytest.fixture(scope="module")
def legacy():
    return tp.parse(fixture("legacy_dmesg.txt"))


def test_legacy_nat_flow_and_reply_denat(legacy):
    packets = legacy["packets"]
    assert legacy["stats"]["malformed"] == 0
    syn = packets[0]
    assert hop_names(syn) == ["raw:PREROUTING", "mangle:PREROUTING", "mangle:PREROUTING", "nat:PREROUTING",
                              "mangle:FORWARD", "filter:FORWARD", "mangle:POSTROUTING", "nat:POSTROUTING"]
    assert syn["hops"][0]["physin"] == "vnet0"      # bridge netfilter: the guest's port on virbr0
    assert (syn["src"], syn["dst"], syn["dport"]) == ("192.168.150.17", "10.150.32.217", 3128)
    reply = packets[1]
    assert (reply["src"], reply["dst"], reply["sport"]) == ("10.150.32.217", "10.150.32.1", 3128)
    assert reply["sport"] == 3128 and reply["dport"] == syn["sport"]
    [change] = reply["nat"]
    assert change == {"hop": 2, "field": "dst", "before": "10.150.32.1", "after": "192.168.150.17",
                      "implied": False}
    assert reply["hops"][2]["chain"] == "FORWARD"


def test_legacy_ipv6_icmp_output_fragments(legacy):
    packets = legacy["packets"]
    v6 = [p for p in packets if p["family"] == "ipv6"]
    assert v6 and all(p["src"].startswith("fd00:") for p in v6)
    assert {p["proto"] for p in v6} == {"icmpv6", "tcp"}
    assert all(hop_names(p) == ["raw:PREROUTING", "filter:FORWARD"] for p in v6)
    # ICMP error: outer addresses, not the quoted packet in [SRC=... ]
    errors = [line for line in fixture("legacy_dmesg.txt").splitlines() if "TYPE=3 CODE=3 [SRC=" in line]
    assert errors
    err = tp.parse(errors)["packets"][0]
    assert (err["proto"], err["src"], err["dst"], err["sport"]) == ("icmp", "10.150.32.217", "10.150.32.1", None)
    # the router's own ping: raw:OUTPUT ... nat:POSTROUTING, one packet
    out = [p for p in packets if p["hops"][0]["chain"] == "OUTPUT"]
    assert out and hop_names(out[0]) == ["raw:OUTPUT", "mangle:OUTPUT", "nat:OUTPUT", "filter:OUTPUT",
                                         "mangle:POSTROUTING", "nat:POSTROUTING"]
    frag = [line for line in fixture("legacy_dmesg.txt").splitlines() if " FRAG:" in line]
    assert frag
    pkt = tp.parse(frag)["packets"][0]
    assert pkt["proto"] == "icmp" and pkt["sport"] is None


def test_interleaved_packets_are_grouped(seed_text, legacy):
    seed = seed_trace_lines(seed_text)
    nat_flow = fixture("legacy_dmesg.txt").splitlines()[:13]   # SYN (8 hops) + SYN-ACK (5)
    mixed = [x for pair in itertools.zip_longest(seed, nat_flow) for x in pair if x is not None]
    packets = tp.parse(mixed)["packets"]
    assert len(packets) == 3
    by_src = {p["src"]: p for p in packets}
    assert by_src["192.168.122.17"]["summary"] == SEED_SUMMARY
    assert by_src["192.168.150.17"]["summary"] == legacy["packets"][0]["summary"]
    assert by_src["10.150.32.217"]["summary"] == legacy["packets"][1]["summary"]


def test_same_ip_id_back_at_raw_is_a_new_packet(seed_text):
    lines = seed_trace_lines(seed_text)
    packets = tp.parse(lines + lines)["packets"]
    assert [p["summary"] for p in packets] == [SEED_SUMMARY, SEED_SUMMARY]
    assert packets[0]["id"] != packets[1]["id"]


def test_orphan_hop_opens_a_packet(seed_text):
    lines = seed_trace_lines(seed_text)[3:]   # the log begins in the middle of the packet
    [packet] = tp.parse(lines)["packets"]
    assert hop_names(packet) == SEED_PATH[3:]


# ------------------------------------------------------------------------------ xtables-monitor
def test_xtables_monitor():
    result = tp.parse(fixture("xtables_monitor_trace.txt"))
    packets = result["packets"]
    assert result["stats"]["malformed"] == 0
    syn = packets[0]
    assert syn["source"] == "xtables" and syn["id"] == "e6f601ea" and syn["proto"] == "tcp"
    assert hop_names(syn) == ["raw:PREROUTING", "raw:PREROUTING", "mangle:PREROUTING", "mangle:PREROUTING",
                              "filter:FORWARD", "nat:POSTROUTING"]
    post = syn["hops"][-1]
    assert post["handle"] == 4 and post["verdict"] == "accept"
    assert post["rule"] == ("-A POSTROUTING -s 192.168.150.0/24 ! -d 192.168.150.0/24 -p tcp "
                            "-j MASQUERADE --to-ports 1024-65535")
    assert syn["hops"][1]["kind"] == "policy" and syn["hops"][1]["verdict"] == "accept"
    assert syn["verdict"] == "accept"
    [masq] = [n for n in syn["nat"] if n["implied"]]
    assert (masq["hop"], masq["field"], masq["before"], masq["target"]) == (5, "src", "192.168.150.17", "MASQUERADE")
    assert "bond0" in masq["after"]
    # the kernel reused trace ids: same id, new packet once it is back at raw:PREROUTING
    ids = [p["id"] for p in packets]
    assert ids.count("ca5b426d") == 2
    reply = packets[1]
    assert reply["nat"] == [{"hop": 3, "field": "dst", "before": "10.150.32.1", "after": "192.168.150.17",
                             "implied": False}]
    icmp = [p for p in packets if p["proto"] == "icmp"]
    assert icmp and icmp[0]["sport"] is None


# ------------------------------------------------------------------------------ nft monitor trace
def test_nft_monitor_trace():
    result = tp.parse(fixture("nft_monitor_trace.txt"))
    packets = result["packets"]
    assert result["stats"]["malformed"] == 0
    syn = [p for p in packets if p["proto"] == "tcp" and p["family"] == "ipv4"][0]
    assert syn["source"] == "nft"
    assert [(h["table"], h["chain"], h["kind"]) for h in syn["hops"]] == [
        ("trace", "pre", "rule"), ("trace", "pre", "policy"), ("filter", "forward", "rule"),
        ("nat", "postrouting", "rule")]
    assert syn["hops"][-1]["rule"] == 'ip saddr 192.168.150.0/24 ip daddr != 192.168.150.0/24 oifname "bond0" masquerade'
    assert syn["hops"][2]["verdict"] == "accept" and syn["hops"][0]["verdict"] == "continue"
    assert (syn["hops"][2]["in"], syn["hops"][2]["out"]) == ("virbr0", "bond0")
    assert any(n["implied"] and n["target"] == "MASQUERADE" for n in syn["nat"])
    # id reuse: the same trace id, three packets of the flow
    assert [p["id"] for p in packets].count(syn["id"]) >= 2
    # policy drop ends the packet with that verdict
    dropped = [p for p in packets if p["verdict"] == "drop"]
    assert dropped and dropped[0]["hops"][-1]["kind"] == "policy"
    # IPv6 forwarding gave the packet a new trace id between prerouting and forward: followed by flow label
    v6 = [p for p in packets if p["family"] == "ipv6" and p["proto"] == "icmpv6" and p["src"] == "fd00:150::17"]
    assert v6 and [h["chain"] for h in v6[0]["hops"]] == ["pre", "pre", "forward"]


def test_nft_id_reuse_after_later_hook():
    lines = [
        'trace id 0000abcd ip raw PREROUTING packet: iif "virbr0" ip saddr 192.168.122.17 ip daddr 10.44.32.217 '
        'ip ttl 64 ip id 1 ip protocol tcp tcp sport 1000 tcp dport 3128',
        "trace id 0000abcd ip raw PREROUTING policy accept",
        'trace id 0000abcd ip filter FORWARD packet: iif "virbr0" oif "bond0" ip saddr 192.168.122.17 '
        "ip daddr 10.44.32.217 ip ttl 63 ip id 1 tcp sport 1000 tcp dport 3128",
        "trace id 0000abcd ip filter FORWARD verdict accept",
    ]
    packets = tp.parse(lines + lines)["packets"]
    assert len(packets) == 2
    assert [h["chain"] for h in packets[1]["hops"]] == ["PREROUTING", "FORWARD"]
    assert packets[0]["hops"][1]["kind"] == "rule" and packets[0]["verdict"] == "accept"


# ------------------------------------------------------------------------------ malformed input
def test_malformed_lines_are_counted_and_skipped(seed_text):
    lines = seed_trace_lines(seed_text)
    bad = [
        "[ 1.0] TRACE: raw:PREROUTING:policy:x IN=virbr0 OUT= SRC=1.2.3.4",
        "[ 1.0] TRACE: nonsense",
        "[ 1.0] TRACE: raw:PREROUTING:policy:3 garbage after the head",
        "trace id zz ip raw PREROUTING policy accept",
        "PACKET: x",
        " TRACE: 2 1a2b3c4d raw",
    ]
    result = tp.parse(lines[:3] + bad + lines[3:])
    assert result["stats"]["malformed"] == len(bad)
    assert result["stats"]["trace_lines"] == len(bad) + 7
    [packet] = result["packets"]
    assert packet["summary"] == SEED_SUMMARY


@pytest.mark.parametrize("value", [None, 42, b"\xff\xfe TRACE: \x00", ["a", None, 3, b"x"], "", [], "\n\n"])
def test_any_input_type(value):
    result = tp.parse(value)
    assert result["packets"] == []
    assert set(result["stats"]) >= {"lines", "trace_lines", "malformed", "packets"}
    assert tp.parse_log_entries(value) == []


def test_suppressed_callbacks_are_counted():
    result = tp.parse(["[  5.1] net_ratelimit: 12 callbacks suppressed", "[  5.2] nf_log: 3 callbacks suppressed"])
    assert result["stats"]["suppressed"] == 2


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402


ALL_REAL = (fixture("legacy_dmesg.txt") + fixture("xtables_monitor_trace.txt") + fixture("nft_monitor_trace.txt")
            + fixture("log_target_dmesg.txt")).splitlines()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=300), max_size=30))
def test_fuzz_random_text_never_raises(lines):
    result = tp.parse(lines)
    assert result["stats"]["lines"] == len(lines)
    assert result["stats"]["packets"] == len(result["packets"])
    tp.parse("\n".join(lines))
    tp.parse_log_entries(lines)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ALL_REAL), st.integers(0, 400), st.integers(0, 400),
                          st.sampled_from(["", " ", ":", "=", "[", "]", "(", "\x00", "TRACE: ", "9", "0x",
                                           "trace id ", "PACKET: ", "\u2192"])), min_size=1, max_size=40))
def test_fuzz_mutated_real_lines_never_raise(mutations):
    lines = []
    for line, cut_from, cut_len, insert in mutations:
        i = min(cut_from, len(line))
        lines.append(line[:i] + insert + line[i + cut_len % 7:])
    result = tp.parse(lines)
    assert result["stats"]["trace_lines"] >= result["stats"]["malformed"]
    for packet in result["packets"]:
        assert packet["hops"] and isinstance(packet["summary"], str)
    tp.annotate(result["packets"], fixture("legacy_iptables_save.txt"), "")
    tp.parse_log_entries(lines)


# ------------------------------------------------------------------------------ annotate
def test_annotate_with_real_iptables_save(legacy):
    packets = tp.parse(fixture("legacy_dmesg.txt"))["packets"]
    tp.annotate(packets, fixture("legacy_iptables_save.txt"))
    syn = packets[0]
    post = syn["hops"][-1]
    assert post["rule"] == ("-A POSTROUTING -s 192.168.150.0/24 ! -d 192.168.150.0/24 -p tcp -j MASQUERADE "
                            "--to-ports 1024-65535")
    assert post["verdict"] == "accept"
    assert syn["hops"][0]["rule"] == "-P PREROUTING ACCEPT" and syn["hops"][0]["verdict"] == "accept"
    assert syn["hops"][1]["rule"].endswith("-j MARK --set-xmark 0x7/0xffffffff")
    assert syn["hops"][1]["verdict"] == "continue"
    assert syn["hops"][5]["rule"] == "-A FORWARD -s 192.168.150.0/24 -i virbr0 -j ACCEPT"
    [masq] = syn["nat"]
    assert masq["implied"] and masq["target"] == "MASQUERADE" and masq["field"] == "src" and masq["hop"] == 7
    assert masq["before"] == "192.168.150.17" and "1024-65535" in masq["after"]
    assert syn["verdict"] == "accept"
    assert "filter:FORWARD rule 2 accept" in syn["summary"]
    reply = packets[1]
    assert reply["hops"][3]["rule"] == ("-A FORWARD -d 192.168.150.0/24 -o virbr0 -m conntrack --ctstate "
                                        "RELATED,ESTABLISHED -j ACCEPT")
    assert [n["implied"] for n in reply["nat"]] == [False]


def test_annotate_seed_libvirt_rules(seed_text):
    save = "\n".join([
        "*nat", ":PREROUTING ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]",
        "-A POSTROUTING -s 192.168.122.0/24 -d 224.0.0.0/24 -j RETURN",
        "-A POSTROUTING -s 192.168.122.0/24 -d 255.255.255.255/32 -j RETURN",
        "-A POSTROUTING -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE", "COMMIT", ""])
    [packet] = tp.annotate(tp.parse(seed_text)["packets"], save)
    assert packet["hops"][6]["rule"] == "-A POSTROUTING -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE"
    assert packet["hops"][4]["rule"] is None            # no filter table in this snapshot
    assert packet["nat"][0]["after"] == "address of bond0"


def test_parse_iptables_save_policies():
    tables = tp.parse_iptables_save(fixture("legacy_iptables_save.txt"))
    assert tables["nat"]["policies"]["POSTROUTING"] == "ACCEPT"
    assert len(tables["nat"]["rules"]["POSTROUTING"]) == 5


# ------------------------------------------------------------------------------ streaming
def test_streaming_yields_before_the_end(seed_text):
    lines = seed_trace_lines(seed_text)
    consumed = []

    def source():
        for n in range(1000):
            for line in lines:
                consumed.append(1)
                yield line.replace("ID=14247", "ID=%d" % n)

    stream = tp.iter_packets(source(), window=50)
    first = next(stream)
    assert first["summary"] == SEED_SUMMARY
    assert len(consumed) < 200          # out long before the 7000 lines are read
    rest = list(stream)
    assert len(rest) == 999 and len(consumed) == 7000


def test_streaming_memory_is_flat():
    base = fixture("legacy_dmesg.txt").splitlines()
    noise = "[  1.000000] audit: type=1400 apparmor=\"STATUS\" operation=\"profile_load\""

    def source(repeat):
        for n in range(repeat):
            for line in base:
                yield re.sub(r" ID=(\d+)", lambda m: " ID=%d" % ((int(m.group(1)) + n * 7919) % 65536), line, count=1)
                yield noise

    def peak(repeat):
        tracemalloc.start()
        stats = {}
        count = sum(1 for dummy in tp.iter_packets(source(repeat), stats=stats))
        peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak_bytes, count, stats

    small, n_small, dummy = peak(20)
    large, n_large, stats = peak(200)
    assert n_large == 10 * n_small and stats["lines"] == 200 * 2 * len(base)
    assert large < small * 2 + 2_000_000, (small, large)


def test_max_open_bounds_the_table(seed_text):
    lines = seed_trace_lines(seed_text)[:3]     # packets that never finish
    stream = [line.replace("ID=14247", "ID=%d" % n) for n in range(100) for line in lines]
    stats = {}
    packets = list(tp.iter_packets(stream, stats=stats, max_open=10, window=10 ** 6))
    assert len(packets) == 100 and stats["packets"] == 100


# ------------------------------------------------------------------------------ LOG entries
def test_log_entries_captured():
    entries = tp.parse_log_entries(fixture("log_target_dmesg.txt") + "\n" + fixture("legacy_dmesg.txt"))
    assert entries and all("TRACE" not in (e.get("prefix") or "") for e in entries)
    prefixed = [e for e in entries if e["prefix"] == "vnp-log:"]
    assert prefixed and prefixed[0]["out"] == "bond0" and prefixed[0]["dport"] == 3128
    assert prefixed[0]["time"] and float(prefixed[0]["time"]) > 0
    v6 = [e for e in entries if e["prefix"] == "v6:"]
    assert v6 and v6[0]["src"].startswith("fd00:") and "flowlbl" in v6[0] and "seq" in v6[0]
    replies = [e for e in entries if e["prefix"] is None and e.get("sport") == 3128]
    assert replies and "ACK" in replies[0]["flags"] and replies[0]["opt"]


def test_log_entry_with_inner_packet():
    line = ("[  231.05] IN=bond0 OUT= MAC=d6:fc:62:2c:44:b9:0e:24:bf:4d:b0:f0:08:00 SRC=10.150.32.217 "
            "DST=10.150.32.1 LEN=57 TOS=0x00 PREC=0xC0 TTL=64 ID=35651 PROTO=ICMP TYPE=3 CODE=3 "
            "[SRC=10.150.32.1 DST=10.150.32.217 LEN=29 TOS=0x00 PREC=0x00 TTL=63 ID=60087 DF PROTO=UDP "
            "SPT=58189 DPT=3999 LEN=9 ] MARK=0x7")
    [entry] = tp.parse_log_entries([line])
    assert (entry["src"], entry["type"], entry["code"], entry["mark"]) == ("10.150.32.217", 3, 3, "0x7")
    assert entry["inner"]["dport"] == 3999 and entry["inner"]["proto"] == "udp"


def test_random_real_lines_order_does_not_raise():
    lines = list(ALL_REAL)
    random.Random(4).shuffle(lines)
    result = tp.parse(lines)
    assert result["stats"]["trace_lines"] > 0


def test_bridged_packet_physin_physout(legacy):
    """br_netfilter: a guest-to-guest packet on virbr0 goes through FORWARD with both bridge ports."""
    [ping] = [p for p in legacy["packets"] if p["dst"] == "192.168.150.18"]
    assert ping["proto"] == "icmp"
    forward = [h for h in ping["hops"] if h["chain"] == "FORWARD"]
    assert forward and all((h["in"], h["out"], h["physin"], h["physout"]) == ("virbr0", "virbr0", "vnet0", "vnet1")
                           for h in forward)
    assert ping["hops"][0]["physout"] is None


@pytest.mark.parametrize("name", ["legacy_dmesg.txt", "xtables_monitor_trace.txt", "nft_monitor_trace.txt"])
def test_file_lines_with_newlines(name, tmp_path):
    """Iterating an open file gives lines ending in newline (and maybe CRLF): same packets."""
    path = tmp_path / name
    path.write_bytes(fixture(name).replace("\n", "\r\n").encode())
    with open(path, encoding="utf-8", newline="") as fh:
        from_file = tp.parse(fh)
    expected = tp.parse(fixture(name))
    assert from_file["packets"] == expected["packets"]
    assert from_file["stats"] == expected["stats"]


def test_small_window_long_lived_packet_terminates():
    """A packet older than the window but still active is looked at once per sweep, not forever.

    (The sweep used to put such a packet back at the end of the queue and meet it again: an
    endless loop when every open packet was old and active.)
    """
    lines = [line for line in fixture("legacy_dmesg.txt").splitlines() if "TRACE: " in line][:8]
    xt = [line for line in fixture("xtables_monitor_trace.txt").splitlines()
          if line.startswith(("PACKET: ", " TRACE: "))][:12]
    for text, window in (("\n".join(lines), 2), ("\n".join(xt), 3)):
        whole = tp.parse(text)
        for w in (1, window):
            result = tp.parse(text, window=w)
            assert result["stats"]["trace_lines"] == whole["stats"]["trace_lines"]
            assert sum(len(p["hops"]) for p in result["packets"]) == sum(len(p["hops"]) for p in whole["packets"])
