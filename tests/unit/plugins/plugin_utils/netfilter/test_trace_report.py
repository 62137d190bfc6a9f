# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the trace report renderer (text, self-contained HTML with an SVG hook diagram)."""
import glob
import os
import re
import shutil
import subprocess

import pytest

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_parse as tp
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_report as rep

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
                        "fixtures", "trace")
CHROMIUM = "/usr/bin/chromium"


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
        return fh.read()


@pytest.fixture(scope="module")
def seed_packets(shared_dir):
    text = "\n".join(open(p, encoding="utf-8").read() for p in sorted(glob.glob(os.path.join(shared_dir, "seed", "*.txt"))))
    packets = tp.parse(text)["packets"]
    if not packets:
        pytest.skip("no seed TRACE lines in ../shared/seed")
    save = "\n".join([
        "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
        "-A FORWARD -d 192.168.122.0/24 -o virbr0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A FORWARD -s 192.168.122.0/24 -i virbr0 -j ACCEPT", "COMMIT",
        "*nat", ":PREROUTING ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]",
        "-A POSTROUTING -s 192.168.122.0/24 -d 224.0.0.0/24 -j RETURN",
        "-A POSTROUTING -s 192.168.122.0/24 -d 255.255.255.255/32 -j RETURN",
        "-A POSTROUTING -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE", "COMMIT", ""])
    return tp.annotate(packets, save)


def test_text_report(seed_packets):
    text = rep.render_text(seed_packets)
    lines = text.splitlines()
    assert lines[0].startswith("Packet 1 (id legacy-1): ipv4 tcp 192.168.122.17:42954 \u2192 10.44.32.217:3128")
    header = lines[1].split()
    assert header[:3] == ["#", "table:chain", "kind"]
    rows = [line for line in lines if re.match(r"\s+\d\s", line)]
    assert [r.split()[1] for r in rows] == ["raw:PREROUTING", "mangle:PREROUTING", "nat:PREROUTING", "mangle:FORWARD",
                                            "filter:FORWARD", "mangle:POSTROUTING", "nat:POSTROUTING"]
    assert "-A FORWARD -s 192.168.122.0/24 -i virbr0 -j ACCEPT [accept]" in rows[4]
    assert "virbr0/bond0" in rows[4]
    assert "MASQUERADE: src 192.168.122.17 \u2192 address of bond0" in rows[6]
    assert lines[-1].startswith("  path: raw:PREROUTING policy \u2192 mangle:PREROUTING policy \u2192 nat:PREROUTING policy accept")
    assert rep.render_text([]) == "No traced packets.\n"


def test_html_is_self_contained_and_escaped(seed_packets):
    evil = tp.parse(["[ 1.0] TRACE: raw:<script>alert(1)</script>:policy:1 IN=a&b OUT= SRC=1.2.3.4 DST=5.6.7.8 "
                     "LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=TCP SPT=1 DPT=2"])["packets"]
    evil[0]["hops"][0]["rule"] = '-A X -m comment --comment "</text></svg><img src=x onerror=alert(2)>"'
    page = rep.render_html(seed_packets + evil, title="<b>title</b>")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "<img" not in page and "onerror=alert" not in page.replace("onerror=alert(2)&gt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;title&lt;/b&gt;" in page
    assert "a&amp;b" in page
    # no external resources: no links, imports, remote urls (the SVG namespace is not a fetch)
    assert not re.search(r"<link|@import|<[^>]*\s(src|href)=|url\((?!#)", page)
    assert page.count("<svg") == 2 and page.count("<section") == 2
    # seed section: the path visits the boxes in order, the matched rules and the MASQUERADE are marked
    section = page.split("<section")[1]
    assert "rule 2" in section and "rule 3" in section and "MASQUERADE" in section
    path = re.search(r'<polyline points="([^"]+)" fill="none" stroke="#d9480f"', section)
    assert path and len(path.group(1).split()) == 7


def test_render_dispatch(seed_packets):
    assert rep.render(seed_packets, fmt="text") == rep.render_text(seed_packets)
    assert rep.render(seed_packets, fmt="html", title="t").startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError):
        rep.render(seed_packets, fmt="pdf")
    assert "No traced packets" in rep.render_html("not a list")


def test_all_fixtures_render():
    for name in ("legacy_dmesg.txt", "xtables_monitor_trace.txt", "nft_monitor_trace.txt"):
        packets = tp.parse(fixture(name))["packets"]
        assert rep.render_text(packets).count("Packet ") == len(packets)
        assert rep.render_html(packets).count("<svg") == len(packets)


@pytest.mark.skipif(not os.path.exists(CHROMIUM),
                    reason="headless Chromium check needs /usr/bin/chromium (Debian package chromium, `make apt`)")
def test_html_in_headless_chromium(seed_packets, tmp_path):
    nat_flow = tp.parse(fixture("legacy_dmesg.txt"))["packets"][:2]
    tp.annotate(nat_flow, fixture("legacy_iptables_save.txt"))
    html = tmp_path / "trace.html"
    html.write_text(rep.render_html(seed_packets + nat_flow, title="seed: guest to 10.44.32.217:3128"),
                    encoding="utf-8")
    png = tmp_path / "trace.png"
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--screenshot=%s" % png, "--window-size=1400,1000", "file://%s" % html],
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                          env=dict(os.environ, HOME=str(tmp_path)), check=False)
    assert png.exists(), proc.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 30000            # a blank 1400x1000 page is a few kB
    keep = os.environ.get("NF_TRACE_SCREENSHOT")
    if keep:
        shutil.copy(str(png), keep)


# ---------------------------------------------------------------------------- explanation (el10, libvirt nft)
def _el10(name):
    here = os.path.join(os.path.dirname(__file__), "..", "..", "..", "fixtures", "trace", name)
    with open(here, encoding="utf-8") as fh:
        return tp.parse(fh.read())["packets"]


@pytest.mark.parametrize("name", ["el10_nft_monitor_trace.txt", "el10_nft_monitor_trace_with_iptables_nft.txt"])
def test_explain_names_libvirt_nft_chains(name):
    """Real `nft monitor trace` captures on an el10 lab host (libvirt 11.3, firewall_backend nftables)."""
    packets = _el10(name)
    syn = packets[0]
    hooks = rep.hook_path(syn)
    chains = [h["chain"] for h in syn["hops"]]
    # guest_output is reached from forward: FORWARD, not OUTPUT; guest_nat is the srcnat base chain
    assert hooks[chains.index("guest_output")] == "FORWARD" and hooks[chains.index("guest_nat")] == "POSTROUTING"
    told = rep.explain(packets)
    text = "\n".join(told["lines"])
    assert "FORWARD accepted by nftables libvirt_network:guest_output (out bond0)" in text
    assert "NAT     nftables libvirt_network:guest_nat (hook POSTROUTING)" in text and "masquerade to :1024-65535" in text
    assert "conntrack de-NATs the destination" in text and "libvirt_network:guest_input" in text
    assert told["culprits"] == [] and "DROP" not in text


def test_culprit_links_the_firewall_info_finding():
    """The el10 SYN with a Docker-style FORWARD policy DROP of iptables-nft's filter table appended
    (derived from the real capture; the real drop is traced in tests/integration/test_trace_capture_nft.py)."""
    syn = dict(_el10("el10_nft_monitor_trace.txt")[0])
    drop = dict(syn["hops"][-3], table="filter", chain="FORWARD", kind="policy", verdict="drop", rule=None)
    syn.update(hops=syn["hops"][:2] + [drop], verdict="drop", nat=[])
    finding = dict(id="docker-forward-drop", ref="docker-forward-drop@iptables-nft:ip:filter:FORWARD", title="Docker",
                   where=dict(backend="iptables-nft", family="ip", table="filter", chain="FORWARD", hook="forward"),
                   fix=["iptables -I DOCKER-USER -s 192.168.122.0/24 -j ACCEPT"])
    other = dict(finding, ref="x", where=dict(finding["where"], backend="iptables-legacy"))
    c = rep.culprit(syn, [other, finding])
    assert (c["backend"], c["table"], c["chain"], c["kind"], c["hook"]) == (
        "iptables-nft", "filter", "FORWARD", "policy", "FORWARD")
    assert c["finding"] == finding["ref"] and c["fix"] == finding["fix"][0]
    assert c["text"].startswith("dropped by the FORWARD policy DROP of iptables-nft's filter table (ipv4, hook FORWARD)")
    assert rep.culprit(syn, [])["finding"] is None
    lines = rep.explain([syn], [finding])["lines"]
    assert any(x.startswith("DROP") and "DOCKER-USER" in x for x in lines)
    assert "NAT     not reached: the packet was dropped on the FORWARD hook" in lines
    html = rep.render_html([syn], explanation=lines)
    assert 'class="summary drop"' in html and "DOCKER-USER" in html


def test_routing_culprit_for_a_packet_that_never_left_prerouting():
    """The el10 SYN cut after raw:PREROUTING (what ip_forward=0 leaves of it; the real one is traced in
    tests/integration/test_trace_capture_nft.py): no firewall dropped it, the ip-forward-disabled finding
    names the cause; without that finding no culprit is claimed."""
    syn = dict(_el10("el10_nft_monitor_trace.txt")[0])
    syn.update(hops=syn["hops"][:2], nat=[], verdict="accept")
    assert rep.vanished(syn) and rep.needs_diagnosis([syn])
    ipf = dict(id="ip-forward-disabled", ref="ip-forward-disabled", title="net.ipv4.ip_forward=0",
               where=dict(hook="forward"), fix=["sysctl -w net.ipv4.ip_forward=1"])
    c = rep.culprit(syn, [ipf])
    assert (c["kind"], c["hook"], c["finding"], c["fix"]) == (
        "routing", "PREROUTING", "ip-forward-disabled", "sysctl -w net.ipv4.ip_forward=1")
    assert rep.culprit(syn, []) is None
    lines = rep.explain([syn], [ipf])["lines"]
    assert any(x.startswith("DROP") and "routing did" in x and "ip_forward=1" in x for x in lines), lines
    assert not rep.vanished(_el10("el10_nft_monitor_trace.txt")[0])


def test_bridged_drop_links_br_netfilter_and_legacy_drop_links_mixed_backends():
    syn = dict(_el10("el10_nft_monitor_trace.txt")[0])
    drop = dict(syn["hops"][-3], table="filter", chain="FORWARD", kind="rule", verdict="drop",
                rule="-A FORWARD -i virbr0 -o virbr0 -p tcp -j DROP", physin="vnet0", physout="vnet1")
    syn.update(hops=syn["hops"][:2] + [drop], verdict="drop", nat=[], source="legacy")
    brnf = dict(id="br-netfilter-bridged", ref="br-netfilter-bridged", title="br", where=dict(hook="forward"),
                fix=["sysctl -w net.bridge.bridge-nf-call-iptables=0"])
    mixed = dict(id="mixed-backends", ref="mixed-backends@iptables-legacy:-:-:-", title="mixed",
                 where=dict(backend="iptables-legacy"), fix=["read both halves"])
    assert rep.culprit(syn, [mixed, brnf])["finding"] == "br-netfilter-bridged"
    drop.pop("physin"), drop.pop("physout")
    c = rep.culprit(syn, [mixed, brnf])
    assert (c["backend"], c["kind"], c["finding"]) == ("iptables-legacy", "rule", mixed["ref"])


def test_unseen_legacy_drop_is_named_from_mixed_backends_evidence():
    """An nf_tables trace that ends on prerouting, on a host with iptables-legacy rules too (evidence as
    firewall_info printed it on a debian12 lab host with a legacy FORWARD DROP)."""
    syn = dict(_el10("el10_nft_monitor_trace.txt")[0])
    syn.update(hops=syn["hops"][:2], nat=[], verdict="accept")
    mixed = dict(id="mixed-backends", ref="mixed-backends@iptables-legacy:-:-:-", title="rules in both",
                 where=dict(backend="iptables-legacy"),
                 evidence=["iptables-legacy-save: 1 rules in tables filter",
                           "iptables-legacy-save: -A FORWARD -s 192.168.122.0/24 -p tcp -m tcp --dport 3128 -j DROP",
                           "iptables-nft-save: -A POSTROUTING -j LIBVIRT_PRT"],
                 fix=["read both halves: iptables-legacy-save; iptables-nft-save; nft list ruleset"])
    c = rep.culprit(syn, [mixed])
    assert (c["backend"], c["kind"], c["finding"]) == ("iptables-legacy", "unseen", mixed["ref"])
    assert c["rule"] == "-A FORWARD -s 192.168.122.0/24 -p tcp -m tcp --dport 3128 -j DROP"
    assert "which an nf_tables trace cannot see" in c["text"]
    # a legacy (kernel log) trace sees legacy tables: no such claim
    assert rep.culprit(dict(syn, source="legacy"), [mixed]) is None
    ipf = dict(id="ip-forward-disabled", ref="ip-forward-disabled@-:-:-:-", title="t", where=dict(hook="forward"),
               fix=["sysctl -w net.ipv4.ip_forward=1"])
    assert rep.culprit(syn, [mixed, ipf])["kind"] == "routing"     # ip_forward=0 explains it first
