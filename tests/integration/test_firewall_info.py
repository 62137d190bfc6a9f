# SPDX-License-Identifier: GPL-3.0-or-later
"""firewall_info on lab hosts: each case is reproduced on the real kernel, diagnosed, and (where a fix is
advised) fixed, with the guest's real connection to the uplink 10.44.32.217:3128 as the proof.

Docker is not installed here: its rules are written as Docker 27 writes them (chains, jumps, FORWARD
policy DROP, nat rules) with iptables-nft-restore, plus an empty docker0 bridge; no dockerd runs.
firewalld is not installed either: only the detection of its process in the host's namespace is
exercised, with a copy of sleep named firewalld (an emulation, said so in that test); zone reading is
unit-tested on firewall-cmd's documented output format only.

Run: VIRTLAB_NAME=hf .venv/bin/python -m pytest -q -m integration tests/integration/test_firewall_info.py -p no:xdist
"""
import json
import os
import re
import shlex
import time

import pytest

MODULE = "virtops.virtnet.firewall_info"
UPLINK = "10.44.32.217"
PORT = "3128"
SUBNET = "192.168.122.0/24"

# Docker 27's filter and nat rules for its default bridge (docker0, 172.17.0.0/16) on a daemon that
# enabled ip_forward itself (it then sets the FORWARD policy to DROP). Restored with --noflush.
DOCKER27 = """*nat
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
COMMIT
*filter
:FORWARD DROP [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-I FORWARD 1 -j DOCKER-USER
-I FORWARD 2 -j DOCKER-ISOLATION-STAGE-1
-I FORWARD 3 -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-I FORWARD 4 -o docker0 -j DOCKER
-I FORWARD 5 -i docker0 ! -o docker0 -j ACCEPT
-I FORWARD 6 -i docker0 -o docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
"""
DOCKER27_UNDO = """*nat
-D PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-D OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-D POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-F DOCKER
-X DOCKER
COMMIT
*filter
:FORWARD ACCEPT [0:0]
-D FORWARD -j DOCKER-USER
-D FORWARD -j DOCKER-ISOLATION-STAGE-1
-D FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-D FORWARD -o docker0 -j DOCKER
-D FORWARD -i docker0 ! -o docker0 -j ACCEPT
-D FORWARD -i docker0 -o docker0 -j ACCEPT
-F DOCKER
-F DOCKER-ISOLATION-STAGE-1
-F DOCKER-ISOLATION-STAGE-2
-F DOCKER-USER
-X DOCKER
-X DOCKER-ISOLATION-STAGE-1
-X DOCKER-ISOLATION-STAGE-2
-X DOCKER-USER
COMMIT
"""

DUMP = ("for c in iptables-save ip6tables-save iptables-legacy-save ip6tables-legacy-save iptables-nft-save "
        "ip6tables-nft-save; do command -v $c >/dev/null 2>&1 && { echo \"== $c\"; $c; }; done; "
        "command -v nft >/dev/null 2>&1 && { echo '== nft'; nft list ruleset; }; echo '== sysctl'; "
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/bridge/bridge-nf-call-iptables; true")


def capture(lab, host, name):
    """With VIRTNET_CAPTURE_FIXTURES=DIR, save the host's raw probe + firewall script output as DIR/name.txt
    (how tests/unit/fixtures/firewall/*.txt were taken). Read-only, like the module."""
    where = os.environ.get("VIRTNET_CAPTURE_FIXTURES")
    if not where:
        return
    from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._firewall import FIREWALL_SCRIPT
    from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._probe import PROBE_SCRIPT
    out = lab.exec(host, ["env", "LC_ALL=C", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                          "sh", "-c", PROBE_SCRIPT + FIREWALL_SCRIPT, "virtnet"]).stdout
    with open(os.path.join(where, name + ".txt"), "w") as f:
        f.write(out)


def ok(res):
    assert not res["failed"], res
    return res


def dump(lab, host):
    """Every ruleset the host has, without timestamps and counters (traffic moves those)."""
    text = lab.exec(host, ["sh", "-c", DUMP]).stdout
    text = re.sub(r"^# (Generated|Completed) .*$", "", text, flags=re.M)
    text = re.sub(r"\[\d+:\d+\]", "", text)
    return re.sub(r"counter packets \d+ bytes \d+", "counter", text)


def by_id(res, fid):
    return [f for f in res["findings"] if f["id"] == fid]


def connect(lab, guest):
    return lab.guest_exec(guest, ["nc", "-z", "-w", "3", UPLINK, PORT], check=False).returncode


def passes(lab, guest, host):
    """The guest reaches the uplink through the host's NAT: rc 0 and the listener logged it."""
    t = time.time()
    rc = connect(lab, guest)
    seen = lab.uplink_connections(since=t, at_least=1) if rc == 0 else []
    return rc == 0 and any(c["src"] == lab.state()["hosts"][host]["bond0_ip"] for c in seen)


def restore(lab, host, tool, text):
    lab.exec(host, ["sh", "-c", '"$0" --noflush', tool], input=text)


@pytest.fixture(scope="module")
def guests(lab):
    out = {"debian12-1": lab.guest_add("fwg12", "debian12-1"), "el7-1": lab.guest_add("fwg7", "el7-1")}
    yield out
    lab.guest_del("fwg12")
    lab.guest_del("fwg7")


# ------------------------------------------------------------------------------------------ plain hosts
@pytest.mark.parametrize("host, backend", [("debian12-1", "iptables-nft"), ("el7-1", "iptables-legacy"),
                                           ("el6-1", "iptables-legacy")])
def test_plain_host_read_only(lab, run_module, host, backend):
    before = dump(lab, host)
    res = ok(run_module(host, MODULE))
    after = dump(lab, host)
    capture(lab, host, "plain_" + host.split("-")[0])
    assert before == after, "firewall_info changed the host's rulesets"
    assert res["changed"] is False
    assert res["libvirt"]["firewall_backend"] == "iptables" and res["libvirt"]["rules_in"] == [backend]
    assert res["summary"].startswith(host + ": libvirt uses iptables (rules in %s)" % backend)
    assert res["networks"][0]["name"] == "default" and res["networks"][0]["subnets"][0] == SUBNET
    assert [h["policy"] for h in res["hooks"]["forward"]] == ["accept"] * len(res["hooks"]["forward"])
    assert res["counts"]["error"] == 0
    if host == "debian12-1":
        assert res["backends"]["nftables"]["available"] and not res["backends"]["nftables"]["holds_rules"]
        assert not by_id(res, "nft-unreadable")
    else:                                   # el7/el6 personas: no nft command, said so
        assert by_id(res, "nft-unreadable") and res["backends"]["nftables"]["available"] is False


BAD = [
    # (arguments, words the message must hold)
    (dict(networks=["nope"]), "networks: 'nope' is not an active libvirt network on {host} (active: default)"),
    (dict(networks=["default", "nope"]), "networks: 'nope' is not an active libvirt network"),
    (dict(networks=["a;rm -rf /"]), "networks: 'a;rm -rf /' is not a libvirt network name"),
    (dict(networks=["$(id)"]), "is not a libvirt network name"),
    (dict(networks=["`id`"]), "is not a libvirt network name"),
    (dict(networks=["default\nid"]), "is not a libvirt network name"),
    (dict(networks=["n\u00e9t"]), "is not a libvirt network name"),
    (dict(networks=["x" * 65]), "is not a libvirt network name"),
    (dict(networks=[""]), "is not a libvirt network name"),
    (dict(network="default"), "Unsupported parameters"),
    (dict(networks={"a": 1}), "networks"),
]


@pytest.mark.parametrize("host", ["debian12-1", "el6-1"])
def test_bad_input_clear_message_nothing_changed(lab, run_module, host, bad_input):
    before = dump(lab, host)
    for kw, words in BAD:
        res = run_module(host, MODULE, **kw)
        assert res["failed"] and not res["changed"], (kw, res)
        assert words.format(host=host) in res["msg"], (kw, res["msg"])
        assert "Traceback (most recent call last)" not in json.dumps(res), kw
        assert dump(lab, host) == before, kw
        bad_input("firewall_info (%s)" % host, json.dumps(kw, ensure_ascii=False), words.format(host=host),
                  res["msg"], "iptables-save, ip6tables-save, iptables-legacy-save, iptables-nft-save (v4, v6), "
                              "nft list ruleset, ip_forward, bridge-nf-call-iptables")
    res = run_module(host, MODULE, networks="default")       # a string becomes a one-item list
    assert not res["failed"] and [n["name"] for n in res["networks"]] == ["default"]


def test_host_without_firewall_tools(lab, run_module):
    """iptables*, ip6tables* and nft really absent (moved out of /usr/sbin in the host's overlay)."""
    host = "debian12-1"
    hide = ("mkdir -p /root/fwhide && for f in /usr/sbin/iptables* /usr/sbin/ip6tables* /usr/sbin/nft; do "
            "[ -e \"$f\" ] || [ -L \"$f\" ] && mv \"$f\" /root/fwhide/; done")
    unhide = "mv /root/fwhide/* /usr/sbin/ && rmdir /root/fwhide"
    lab.exec(host, ["sh", "-c", hide])
    try:
        res = run_module(host, MODULE)
        capture(lab, host, "no_tools_debian12")
    finally:
        lab.exec(host, ["sh", "-c", unhide])
    assert res["failed"]
    assert res["msg"].startswith("no iptables, iptables-legacy, iptables-nft or nft command on debian12-1: "
                                 "there is no firewall tool to read"), res["msg"]
    assert "Traceback (most recent call last)" not in json.dumps(res)
    assert ok(run_module(host, MODULE))["libvirt"]["rules_in"] == ["iptables-nft"]


# ------------------------------------------------------------------------------------------ Docker
def test_docker_same_table_as_libvirt_is_a_warning(lab, run_module, guests):
    """debian12 as shipped: Docker 27 and libvirt both in iptables-nft's filter table. libvirt's
    LIBVIRT_FWO/FWI accept NAT'd guests before the DROP policy: the flow passes, the finding warns."""
    host = "debian12-1"
    restore(lab, host, "iptables-nft-restore", DOCKER27)
    try:
        res = ok(run_module(host, MODULE))
        capture(lab, host, "docker_same_table_debian12")
        (f,) = by_id(res, "docker-forward-drop")
        assert f["severity"] == "warning" and f["where"]["backend"] == "iptables-nft"
        assert "iptables-nft-save filter: :FORWARD DROP" in f["evidence"]
        assert res["docker"]["present"] and "DOCKER-USER" in res["docker"]["chains"]
        assert passes(lab, "fwg12", host)
    finally:
        restore(lab, host, "iptables-nft-restore", DOCKER27_UNDO)


@pytest.fixture
def libvirt_on_legacy(lab):
    """debian12-1 switched to iptables-legacy the Debian way (update-alternatives) and libvirtd restarted, so
    libvirt re-creates its rules in the legacy tables; the nf_tables tables it left are deleted (a host
    booted that way has none). Undone afterwards."""
    host = "debian12-1"
    pidfile = "%s/hosts/%s/pids/libvirtd.pid" % (lab.dir, host)

    def switch(to, cleanup):
        lab.exec(host, ["sh", "-c", "for t in iptables ip6tables; do update-alternatives --set $t /usr/sbin/$t-%s; "
                                    "done >/dev/null" % to])
        pid = open(pidfile).read().strip()
        lab.exec(host, ["kill", pid])
        deadline = time.time() + 20
        while lab.exec(host, ["kill", "-0", pid], check=False).returncode == 0:
            assert time.time() < deadline, "libvirtd did not stop"
            time.sleep(0.1)
        lab.exec(host, ["sh", "-c", cleanup])
        lab.up(personas=["debian12", "el7", "el6"])
        save = "iptables-%s-save" % to
        deadline = time.time() + 30
        while "LIBVIRT_FWO" not in lab.exec(host, [save, "-t", "filter"]).stdout:
            assert time.time() < deadline, "libvirt did not re-create its rules with %s" % save
            time.sleep(0.2)

    # libvirt's tables only: the raw table may hold other tests' TRACE rules (their module fixtures outlive a test)
    nft_left = "for f in ip ip6; do for t in filter nat mangle; do nft delete table $f $t 2>/dev/null; done; done; true"
    legacy_left = ("for c in iptables-legacy ip6tables-legacy; do for t in filter nat mangle; do "
                   "$c -t $t -F; $c -t $t -X; done; done 2>/dev/null; true")
    switch("legacy", nft_left)
    yield host
    switch("nft", nft_left + "; " + legacy_left)


def test_docker_forward_drop_end_to_end(lab, run_module, run_playbook, guests, libvirt_on_legacy):
    """libvirt's rules in iptables-legacy, Docker 27's in iptables-nft: the nf_tables FORWARD policy DROP
    drops the guest's packet although libvirt's legacy rules accept it. Dropped (traced), diagnosed,
    fixed with the advised DOCKER-USER rules, passing."""
    host = libvirt_on_legacy
    guest = "fwg12"
    restore(lab, host, "iptables-nft-restore", DOCKER27)
    lab.exec(host, ["sh", "-c", "ip link add docker0 type bridge && ip addr add 172.17.0.1/16 dev docker0"])
    rule = {"name": "fwdocker", "backend": "nft", "protocol": "tcp", "destination_port": [PORT], "expires": 600}
    trace = json.dumps([{"hosts": host, "gather_facts": False, "tasks": [
        {"name": "trace", "virtops.virtnet.trace_rule": rule}]}])
    untrace = trace.replace('"destination_port": ["3128"], "expires": 600', '"state": "absent"')
    try:
        assert not passes(lab, guest, host), "the guest passed although Docker's FORWARD policy is DROP"
        res = ok(run_module(host, MODULE))
        capture(lab, host, "docker_libvirt_legacy_debian12")
        (f,) = by_id(res, "docker-forward-drop")
        assert f["severity"] == "error", f
        assert f["where"] == {"backend": "iptables-nft", "family": "ip", "table": "filter", "chain": "FORWARD",
                              "hook": "forward"}
        assert f["ref"] == "docker-forward-drop@iptables-nft:ip:filter:FORWARD"
        assert "iptables-nft-save filter: :FORWARD DROP" in f["evidence"]
        assert "iptables-nft-save filter: -A FORWARD -j DOCKER-USER" in f["evidence"]
        assert "libvirt's rules are in: iptables-legacy" in f["evidence"]
        assert f["fix"][:2] == ["iptables-nft -I DOCKER-USER -s %s -j ACCEPT" % SUBNET,
                                "iptables-nft -I DOCKER-USER -d %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
                                % SUBNET]
        assert res["libvirt"]["rules_in"] == ["iptables-legacy"] and res["iptables_default"] == "legacy"
        assert by_id(res, "mixed-backends")
        assert "error: docker-forward-drop" in res["summary"]

        # the real trace: the guest's SYN ends in nf_tables' filter FORWARD, by its policy drop
        assert run_playbook(trace + "\n")["rc"] == 0
        start = ok(run_module(host, "virtops.virtnet.trace_capture", action="start", source="nfnetlink",
                              monitor="nft"))
        assert connect(lab, guest) != 0
        seen = ["grep", "-q", "-F", guests[host]["ip"], start["state"]["log"]]   # the monitor wrote the SYN
        deadline = time.time() + 15
        while lab.exec(host, seen, check=False).returncode != 0:
            assert time.time() < deadline, "waited 15 s for the guest's SYN in the nft monitor's log"
            time.sleep(0.1)
        report = {}
        if os.environ.get("VIRTNET_CAPTURE_FIXTURES"):       # the report shown in docs/firewall.md
            report = dict(report_path=os.path.join(os.environ["VIRTNET_CAPTURE_FIXTURES"], "docker_drop_report.html"))
        cap = ok(run_module(host, "virtops.virtnet.trace_capture", action="stop", capture_id=start["capture_id"],
                            match={"protocol": "tcp", "destination": UPLINK, "destination_port": [PORT]}, **report))
        if report:
            with open(os.path.join(os.environ["VIRTNET_CAPTURE_FIXTURES"], "docker_drop_trace.json"), "w") as fh:
                json.dump(dict(packets=cap["packets"], explanation=cap.get("explanation"),
                               summary=[p.get("summary") for p in cap["packets"]]), fh, indent=1)
        syns = [p for p in cap["packets"] if p["hops"][0]["src"] == guests[host]["ip"]]
        assert syns, cap["packets"]
        last = syns[0]["hops"][-1]
        assert (last["table"], last["chain"], last["kind"], last["verdict"]) == ("filter", "FORWARD", "policy", "drop"), \
            syns[0]["hops"]
        assert any(h["chain"] == "DOCKER-USER" for h in syns[0]["hops"])

        # the advised fix, as printed, then the flow passes
        for cmd in f["fix"][:2]:
            lab.exec(host, shlex.split(cmd))
        assert passes(lab, guest, host)
        res = ok(run_module(host, MODULE))
        capture(lab, host, "docker_fixed_debian12")
        (f2,) = by_id(res, "docker-forward-drop")
        assert f2["severity"] == "info" and "DOCKER-USER accepts" in f2["title"]
    finally:
        run_playbook(untrace + "\n")
        lab.exec(host, ["sh", "-c", "ip link del docker0; for t in filter nat; do nft delete table ip $t; done; true"],
                 check=False)


# ------------------------------------------------------------------------------------------ other cases
def test_mixed_legacy_and_nft(lab, run_module):
    host = "debian12-1"
    rule = ["-I", "INPUT", "-p", "tcp", "--dport", "9", "-j", "DROP"]
    lab.exec(host, ["iptables-legacy"] + rule)
    try:
        res = ok(run_module(host, MODULE))
        capture(lab, host, "mixed_debian12")
        (f,) = by_id(res, "mixed-backends")
        assert f["severity"] == "warning"
        assert "iptables-legacy-save: -A INPUT -p tcp -m tcp --dport 9 -j DROP" in f["evidence"]
        assert any(e.startswith("iptables-nft-save: ") for e in f["evidence"])
        assert res["backends"]["iptables-legacy"]["holds_rules"] and res["backends"]["iptables-nft"]["holds_rules"]
    finally:
        lab.exec(host, ["iptables-legacy", "-D"] + rule[1:])
    assert not by_id(ok(run_module(host, MODULE)), "mixed-backends")


def test_ip_forward_disabled(lab, run_module, guests):
    host = "el7-1"
    assert passes(lab, "fwg7", host)
    lab.exec(host, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"])
    try:
        assert not passes(lab, "fwg7", host)
        res = ok(run_module(host, MODULE))
        capture(lab, host, "ip_forward_off_el7")
        (f,) = by_id(res, "ip-forward-disabled")
        assert f["severity"] == "error" and f["evidence"] == ["/proc/sys/net/ipv4/ip_forward = 0"]
        assert f["fix"][0] == "sysctl -w net.ipv4.ip_forward=1"
        lab.exec(host, shlex.split(f["fix"][0]))
        assert passes(lab, "fwg7", host)
    finally:
        lab.exec(host, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])


def test_br_netfilter_bridged_traffic_traverses_iptables(lab, run_module, guests):
    """br_netfilter is built into this kernel (bridge-nf-call-iptables=1 in every namespace): two guests on
    virbr0 talk through the bridge, yet an iptables FORWARD rule drops it; with the sysctl at 0 it passes."""
    host = "el7-1"
    other = lab.guest_add("fwg7b", host)
    drop = ["FORWARD", "-i", "virbr0", "-o", "virbr0", "-p", "icmp", "-j", "DROP"]
    ping = ["ping", "-c", "1", "-W", "2", other["ip"]]
    lab.exec(host, ["iptables", "-I"] + drop)
    try:
        res = ok(run_module(host, MODULE))
        (f,) = by_id(res, "br-netfilter-bridged")
        assert "/proc/sys/net/bridge/bridge-nf-call-iptables = 1" in f["evidence"]
        assert "virbr0" in f["title"]
        assert lab.guest_exec("fwg7", ping, check=False).returncode != 0
        lab.exec(host, ["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0"])
        assert lab.guest_exec("fwg7", ping, check=False).returncode == 0
        assert not by_id(ok(run_module(host, MODULE)), "br-netfilter-bridged")
    finally:
        lab.exec(host, ["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"])
        lab.exec(host, ["iptables", "-D"] + drop)
        lab.guest_del("fwg7b")


def test_nft_base_chain_drop_policy(lab, run_module, guests):
    """An nftables table of someone else with a forward base chain, policy drop: libvirt's accept (in
    iptables-nft's filter table) does not override it."""
    host = "debian12-1"
    lab.exec(host, ["nft", "add table inet hfguard; add chain inet hfguard forward_guard "
                           "{ type filter hook forward priority 10; policy drop; }"])
    try:
        assert not passes(lab, "fwg12", host)
        res = ok(run_module(host, MODULE))
        capture(lab, host, "nft_drop_chain_debian12")
        (f,) = by_id(res, "forward-drop-policy")
        assert f["severity"] == "error"
        assert f["where"] == {"backend": "nftables", "family": "inet", "table": "hfguard", "chain": "forward_guard",
                              "hook": "forward"}
        assert "nft: type filter hook forward priority filter + 10; policy drop;" in f["evidence"]
        for cmd in f["fix"][:2]:
            lab.exec(host, shlex.split(cmd))
        assert passes(lab, "fwg12", host)
        assert by_id(ok(run_module(host, MODULE)), "forward-drop-policy")[0]["severity"] == "warning"
    finally:
        lab.exec(host, ["nft", "delete", "table", "inet", "hfguard"], check=False)


def test_firewalld_process_in_the_host_namespace_only(lab, run_module):
    """EMULATED firewalld: a copy of sleep named firewalld (no firewalld package here). Proves the
    detection by process in the host's own network namespace; the same name in another namespace
    (the lab's uplink) is ignored."""
    host = "el7-1"
    start = 'mkdir -p "${0%/*}" && cp /bin/sleep "$0" && { "$0" 120 </dev/null >/dev/null 2>&1 & echo $!; }'
    elsewhere = "/tmp/virtnet-fwd-%s" % lab.name         # the uplink namespace shares the machine's /tmp
    pids = [("uplink", lab.uplink_exec(["sh", "-c", start, elsewhere + "/firewalld"]).stdout.strip())]
    try:
        assert not by_id(ok(run_module(host, MODULE)), "firewalld-running")
        pids.append(("host", lab.exec(host, ["sh", "-c", start, "/tmp/firewalld"]).stdout.strip()))
        res = ok(run_module(host, MODULE))
        (f,) = by_id(res, "firewalld-running")
        assert f["severity"] == "warning" and "zones could not be read (no firewall-cmd)" in f["title"]
        assert res["firewalld"]["running"] and res["firewalld"]["pids"] == [int(pids[1][1])]
    finally:
        for where, pid in pids:
            run = lab.uplink_exec if where == "uplink" else (lambda argv, **kw: lab.exec(host, argv, **kw))
            run(["kill", pid], check=False)
        lab.exec(host, ["rm", "-f", "/tmp/firewalld"], check=False)
        lab.uplink_exec(["rm", "-rf", elsewhere], check=False)
