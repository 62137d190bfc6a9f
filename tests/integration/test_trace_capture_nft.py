# SPDX-License-Identifier: GPL-3.0-or-later
"""trace_capture on libvirt's nftables firewall backend (el10: libvirt 11.3, firewall_backend = "nftables",
rules in ``table ip libvirt_network``), with the seed's flow: a guest on the NAT network opens TCP to the
uplink 10.44.32.217:3128.

1. The path goes through libvirt's nft chains: the ``guest_output`` accept, the ``guest_nat`` masquerade to
   :1024-65535, and the reply's de-NAT; the explanation names them.
2. Docker end to end: Docker 27's chains and FORWARD policy DROP written in iptables-nft (as
   test_firewall_info does; Docker is not installed here, no dockerd runs), a real traced guest packet is
   dropped there, the explanation names iptables-nft's filter table and links firewall_info's
   ``docker-forward-drop`` finding; its advised DOCKER-USER rules are added and the flow passes.

These tests run on a lab of their own (the session's lab name + ``-n``: el10, debian12, el7), so that the
suites iterating over the session lab's hosts do not meet el10's nft-only firewall; el10's Debian 13 root
filesystem comes from ``make rootfs``. VIRTLAB_KEEP=1 keeps it up.
Run: VIRTLAB_NAME=nft .venv/bin/python -m pytest -q -m integration -p no:xdist tests/integration/test_trace_capture_nft.py
"""
import json
import shlex
import time

import pytest

from labtest import connect, lab_fixture, ok, play, runner_fixtures
from test_firewall_info import DOCKER27, DOCKER27_UNDO
from waits import wait_for

HOST = "el10-1"
GUEST = "tnft10"
UPLINK = "10.44.32.217"
PORT = "3128"
FLOW = dict(protocol="tcp", destination=UPLINK, destination_port=[PORT])
MODULE = "virtops.virtnet.trace_capture"
RULESET = "capture-nft"

# this module's own lab (see the module docstring), up for the module, down after unless kept
lab = lab_fixture(["el10", "debian12", "el7"], suffix="-n", scope="module")
run_module, run_playbook = runner_fixtures("module")


@pytest.fixture(scope="module")
def el10(lab, run_playbook):
    """A guest on el10-1's default network, TRACE rules for both directions of the flow."""
    conf = lab.exec(HOST, ["cat", "/etc/libvirt/network.conf"]).stdout
    assert 'firewall_backend = "nftables"' in conf, conf
    guest = lab.guest_add(GUEST, HOST)
    play(run_playbook, HOST, [
        ("virtops.virtnet.nf_log", dict(families=["ipv4"])),
        ("virtops.virtnet.trace_rule", dict(name=RULESET, protocol="tcp", destination_port=[PORT], expires=900)),
        ("virtops.virtnet.trace_rule", dict(name=RULESET + "-reply", protocol="tcp", source_port=PORT, expires=900)),
    ])
    yield guest
    play(run_playbook, HOST, [
        ("virtops.virtnet.trace_rule", dict(name=RULESET, state="absent")),
        ("virtops.virtnet.trace_rule", dict(name=RULESET + "-reply", state="absent")),
    ])
    lab.guest_del(GUEST)


def monitored_connect(lab, run_module, host, guest, tool, needles=()):
    """Start a capture, connect from the guest, stop: (the guest's nc rc, the stop result).

    The monitor subscribes to the kernel's trace events some time after its start, unseen from here: the
    guest connects again until the monitor's log holds its address. Then the log must hold ``needles``
    (the lines the test is about: the NAT, the reply, the drop), which the monitor writes after the
    kernel sent them."""
    start = ok(run_module(host, MODULE, action="start"))
    assert (start["source_used"], start["tool"]) == ("nfnetlink", tool), start
    ip = lab.state()["guests"][guest]["ip"]
    log = start["state"]["log"]

    def has(text):
        return lab.exec(host, ["grep", "-q", "-F", "--", text, log], check=False).returncode == 0
    rcs = []

    def connected_and_seen():
        rcs.append(connect(lab, guest, wait=2).returncode)
        return has(ip)
    wait_for("the monitor on %s to see %s's connection" % (host, guest), connected_and_seen, timeout=30)
    for text in needles:
        wait_for("%r in the capture on %s" % (text, host), lambda t=text: has(t))
    res = ok(run_module(host, MODULE, action="stop", capture_id=start["capture_id"], match=FLOW))
    return rcs[-1], res


def traced_connect(lab, run_module, needles=()):
    return monitored_connect(lab, run_module, HOST, GUEST, "nft", needles)


def syn_of(res, guest_ip):
    syns = [p for p in res["packets"] if p["src"] == guest_ip and str(p["dport"]) == PORT]
    assert syns, res["packets"]
    return next((p for p in syns if p["nat"]), syns[0])


def passed(guest_ip):
    """The lines of a connection that went through: libvirt's masquerade, the reply de-NATed to the guest."""
    return ["masquerade to :1024-65535", "ip saddr %s ip daddr %s" % (UPLINK, guest_ip)]


def test_guest_nat_traced_through_libvirt_nft_tables(lab, run_module, el10):
    rc, res = traced_connect(lab, run_module, passed(el10["ip"]))
    assert rc == 0
    syn = syn_of(res, el10["ip"])
    by_chain = {}
    for h in syn["hops"]:
        by_chain.setdefault((h["table"], h["chain"]), []).append(h)
    assert not [c for t, c in by_chain if c.startswith("LIBVIRT_")]
    assert ("libvirt_network", "guest_output") in by_chain, (syn, res["packets"], res.get("lines"))
    out = by_chain[("libvirt_network", "guest_output")][-1]
    assert out["verdict"] == "accept" and 'ip saddr 192.168.122.0/24 iif "virbr0"' in out["rule"], out
    nat = by_chain[("libvirt_network", "guest_nat")][-1]
    assert "masquerade to :1024-65535" in nat["rule"], nat
    masq = [e for e in syn["nat"] if e["field"] == "src" and e["implied"]]
    assert masq and masq[0]["before"] == el10["ip"] and ":1024-65535" in masq[0]["after"], syn["nat"]
    # the reply: to the host's bond0 address, de-NATed to the guest, accepted by guest_input
    bond0 = lab.state()["hosts"][HOST]["bond0_ip"]
    reply = next(p for p in res["packets"] if p["src"] == UPLINK and p["hops"][0]["dst"] == bond0)
    assert {"field": "dst", "before": bond0, "after": el10["ip"]}.items() <= \
        next(e for e in reply["nat"] if e["field"] == "dst").items()
    assert any(h["chain"] == "guest_input" and h["verdict"] == "accept" for h in reply["hops"])
    text = "\n".join(res["explanation"])
    assert "FORWARD accepted by nftables libvirt_network:guest_output" in text, text
    assert "NAT     nftables libvirt_network:guest_nat (hook POSTROUTING)" in text and "masquerade to :1024-65535" in text
    assert "de-NATs the destination %s → %s" % (bond0, el10["ip"]) in text, text
    assert res["culprits"] == []


@pytest.fixture
def docker27(lab, el10):
    """Docker 27's rules in iptables-nft on el10 (libvirt's rules are in nftables): guests cut off."""
    lab.exec(HOST, ["sh", "-c", '"$0" --noflush', "iptables-nft-restore"], input=DOCKER27)
    lab.exec(HOST, ["sh", "-c", "ip link add docker0 type bridge && ip link set docker0 up"])
    yield
    lab.exec(HOST, ["sh", "-c", '"$0" --noflush', "iptables-nft-restore"], input=DOCKER27_UNDO)
    lab.exec(HOST, ["ip", "link", "del", "docker0"])


def test_docker_drop_named_diagnosed_fixed(lab, run_module, el10, docker27, tmp_path):
    # dropped: a real traced packet, and the explanation names the backend, table, policy and the finding
    rc, res = traced_connect(lab, run_module, ["policy drop"])
    assert rc != 0
    dropped = [p for p in res["packets"] if p["verdict"] == "drop"]
    assert dropped and dropped[0]["src"] == el10["ip"], res["packets"]
    culprit = res["culprits"][0]
    assert (culprit["backend"], culprit["table"], culprit["chain"], culprit["kind"], culprit["hook"]) == \
        ("iptables-nft", "filter", "FORWARD", "policy", "FORWARD"), culprit
    assert culprit["finding"] == "docker-forward-drop@iptables-nft:ip:filter:FORWARD", culprit
    drop_line = next(x for x in res["explanation"] if x.startswith("DROP"))
    assert "dropped by the FORWARD policy DROP of iptables-nft's filter table" in drop_line, drop_line
    assert "-I DOCKER-USER -s 192.168.122.0/24 -j ACCEPT" in drop_line, drop_line
    # firewall_info says the same, with the fix
    info = ok(run_module(HOST, "virtops.virtnet.firewall_info"))
    finding = next(f for f in info["findings"] if f["ref"] == culprit["finding"])
    assert finding["severity"] == "error" and finding["fix"][0] == culprit["fix"]
    # fixed: the advised DOCKER-USER rules (argv, no shell), then the same flow passes
    commands = [shlex.split(line) for line in finding["fix"] if line.startswith("iptables")]
    assert len(commands) == 2, finding["fix"]
    for argv in commands:
        lab.exec(HOST, argv)
    t = time.time()
    rc, res = traced_connect(lab, run_module, passed(el10["ip"]))
    assert rc == 0
    assert any(c["src"] == lab.state()["hosts"][HOST]["bond0_ip"]
               for c in lab.uplink_connections(since=t, at_least=1))
    assert res["culprits"] == [] and not [p for p in res["packets"] if p["verdict"] == "drop"]
    syn = syn_of(res, el10["ip"])
    user = [h for h in syn["hops"] if h["chain"] == "DOCKER-USER" and h["verdict"] == "accept"]
    assert user and "192.168.122.0/24" in user[0]["rule"], syn["hops"]
    assert any(h["chain"] == "guest_output" and h["verdict"] == "accept" for h in syn["hops"])
    info = ok(run_module(HOST, "virtops.virtnet.firewall_info"))
    assert next(f for f in info["findings"] if f["id"] == "docker-forward-drop")["severity"] == "info"


@pytest.fixture
def no_forwarding(lab, el10):
    lab.exec(HOST, ["sysctl", "-qw", "net.ipv4.ip_forward=0"])
    yield
    lab.exec(HOST, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])


def test_ip_forward_off_named_as_the_culprit_then_fixed(lab, run_module, el10, no_forwarding):
    """net.ipv4.ip_forward=0 on the host: no firewall drops the guest's SYN, routing does. The trace ends on
    the prerouting hook; the explanation says so and links firewall_info's ip-forward-disabled and its fix,
    which, run as printed, makes the flow pass."""
    rc, res = traced_connect(lab, run_module)
    assert rc != 0
    syns = [p for p in res["packets"] if p["src"] == el10["ip"] and str(p["dport"]) == PORT]
    assert syns and all(h["chain"] == "PREROUTING" for p in syns for h in p["hops"]), syns
    culprit = res["culprits"][0]
    assert (culprit["kind"], culprit["hook"]) == ("routing", "PREROUTING"), culprit
    assert culprit["finding"].split("@")[0] == "ip-forward-disabled", culprit
    assert culprit["fix"] == "sysctl -w net.ipv4.ip_forward=1"
    drop_line = next(x for x in res["explanation"] if x.startswith("DROP"))
    assert "the trace ends on the prerouting hook, no firewall dropped it, routing did" in drop_line, drop_line
    lab.exec(HOST, shlex.split(culprit["fix"]))
    rc, res = traced_connect(lab, run_module, passed(el10["ip"]))
    assert rc == 0 and res["culprits"] == []
    assert any(h["chain"] == "guest_nat" for p in res["packets"] for h in p["hops"])


MIXED_HOST = "debian12-1"
MIXED_GUEST = "tmix12"
LEGACY_DROP = ["-s", "192.168.122.0/24", "-p", "tcp", "--dport", PORT, "-j", "DROP"]


@pytest.fixture
def legacy_drop(lab, run_playbook):
    """debian12-1: libvirt's rules in iptables-nft, and one DROP rule in iptables-legacy's FORWARD (a host
    half-switched between backends); TRACE rules in iptables-nft as trace_rule writes them."""
    guest = lab.guest_add(MIXED_GUEST, MIXED_HOST)
    text = json.dumps([{"hosts": MIXED_HOST, "gather_facts": False, "tasks": [
        {"name": "logger", "virtops.virtnet.nf_log": {"families": ["ipv4"]}},
        {"name": "trace", "virtops.virtnet.trace_rule": dict(name=RULESET, protocol="tcp", destination_port=[PORT],
                                                             expires=900)}]}])
    out = run_playbook(text + "\n")
    assert out["rc"] == 0, out["stdout"][-2000:]
    lab.exec(MIXED_HOST, ["iptables-legacy", "-I", "FORWARD"] + LEGACY_DROP)
    yield guest
    lab.exec(MIXED_HOST, ["sh", "-c", "iptables-legacy -D FORWARD \"$@\" 2>/dev/null; iptables-legacy -F; "
                          "iptables-legacy -X; true", "x"] + LEGACY_DROP)
    run_playbook(json.dumps([{"hosts": MIXED_HOST, "gather_facts": False, "tasks": [
        {"name": "untrace", "virtops.virtnet.trace_rule": {"name": RULESET, "state": "absent"}}]}]) + "\n")
    lab.guest_del(MIXED_GUEST)


def test_legacy_drop_unseen_by_the_nft_trace_is_named(lab, run_module, legacy_drop):
    """A DROP in iptables-legacy is invisible to an nf_tables trace (xtables-monitor): the guest's SYN is seen
    on the prerouting hook only. The explanation says a legacy table dropped it, quoting the rule from
    firewall_info's mixed-backends evidence; with the rule removed the flow passes and nothing is blamed."""
    def capture(needles=()):
        return monitored_connect(lab, run_module, MIXED_HOST, MIXED_GUEST, "xtables-monitor", needles)
    rc, res = capture()
    assert rc != 0
    culprit = res["culprits"][0]
    assert (culprit["backend"], culprit["kind"]) == ("iptables-legacy", "unseen"), culprit
    assert culprit["finding"].split("@")[0] == "mixed-backends"
    assert culprit["rule"] == "-A FORWARD -s 192.168.122.0/24 -p tcp -m tcp --dport 3128 -j DROP", culprit
    drop_line = next(x for x in res["explanation"] if x.startswith("DROP"))
    assert "a table of iptables-legacy, which an nf_tables trace cannot see, dropped it" in drop_line, drop_line
    lab.exec(MIXED_HOST, ["iptables-legacy", "-D", "FORWARD"] + LEGACY_DROP)
    rc, res = capture(["MASQUERADE"])
    assert rc == 0 and res["culprits"] == [], res["explanation"]


BR_HOST = "el7-1"


@pytest.fixture
def bridged_drop(lab, run_playbook):
    """el7-1 (legacy iptables): br_netfilter's bridge-nf-call-iptables=1 (built into this kernel, on in every
    namespace) makes guest-to-guest traffic inside virbr0 traverse iptables' FORWARD, where an ICMP DROP rule
    waits; a TRACE rule for ICMP from the first guest."""
    a, b = lab.guest_add("tbra7", BR_HOST), lab.guest_add("tbrb7", BR_HOST)
    before = lab.exec(BR_HOST, ["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"]).stdout.strip()
    lab.exec(BR_HOST, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"])
    text = json.dumps([{"hosts": BR_HOST, "gather_facts": False, "tasks": [
        {"name": "logger", "virtops.virtnet.nf_log": {"families": ["ipv4"]}},
        {"name": "trace", "virtops.virtnet.trace_rule": dict(name="capture-br", protocol="icmp", source=a["ip"],
                                                             expires=900)}]}])
    out = run_playbook(text + "\n")
    assert out["rc"] == 0, out["stdout"][-2000:]
    rule = ["FORWARD", "-i", "virbr0", "-o", "virbr0", "-p", "icmp", "-j", "DROP"]
    lab.exec(BR_HOST, ["iptables", "-I"] + rule)
    yield a, b
    lab.exec(BR_HOST, ["iptables", "-D"] + rule, check=False)
    lab.exec(BR_HOST, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=%s" % before])
    run_playbook(json.dumps([{"hosts": BR_HOST, "gather_facts": False, "tasks": [
        {"name": "untrace", "virtops.virtnet.trace_rule": {"name": "capture-br", "state": "absent"}}]}]) + "\n")
    lab.guest_del("tbra7")
    lab.guest_del("tbrb7")


def test_bridged_drop_names_br_netfilter(lab, run_module, bridged_drop):
    a, b = bridged_drop
    match = dict(protocol="icmp", source=a["ip"])

    def capture(attempts=3):
        for attempt in range(attempts):     # the kernel ring buffer is shared with parallel labs (see test_trace_capture)
            start = ok(run_module(BR_HOST, MODULE, action="start"))
            rc = lab.guest_exec("tbra7", ["ping", "-c", "1", "-W", "1", b["ip"]], check=False).returncode
            # host_filter off: the kernel-log host filter attributes lines by the host's addresses and MACs, which
            # guest-to-guest lines do not carry; this guest's lines are told by its bridge port (vg-tbra7) below
            res = ok(run_module(BR_HOST, MODULE, action="stop", capture_id=start["capture_id"], match=match,
                                host_filter=False))
            if res.get("marker_found") is not False or attempt == attempts - 1:
                return rc, res
    rc, res = capture()
    assert rc != 0
    ours = [p for p in res["packets"] if any(h.get("physin") == "vg-tbra7" for h in p["hops"])]
    assert ours and ours[0]["verdict"] == "drop", (res["packets"], res.get("warnings"))   # bridged, seen by iptables
    culprit = next(c for c in res["culprits"] if c["packet"].startswith(a["ip"]))
    assert (culprit["backend"], culprit["table"], culprit["chain"], culprit["kind"]) == \
        ("iptables-legacy", "filter", "FORWARD", "rule"), culprit
    assert "-i virbr0 -o virbr0 -p icmp -j DROP" in culprit["rule"]
    assert culprit["finding"].split("@")[0] == "br-netfilter-bridged", culprit
    drop_line = next(x for x in res["explanation"] if x.startswith("DROP"))
    assert "bridge-nf-call-iptables" in drop_line, drop_line
    # the finding's other fix: bridged traffic no longer goes through iptables
    lab.exec(BR_HOST, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"])
    rc, res = capture()
    assert rc == 0
    assert not [p for p in res["packets"] if any(h.get("physin") == "vg-tbra7" for h in p["hops"])]
