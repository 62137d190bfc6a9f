# SPDX-License-Identifier: GPL-3.0-or-later
"""trace_capture on the host of $VIRTLAB_TARGET (make integration-userlands: debian11, debian13, el10;
make integration-targets: el7, el8), with the seed's flow: a guest on libvirt's NAT network opens TCP to
the uplink 10.44.32.217:3128 while a oneshot capture runs. The path is read from that userland's own
monitor (xtables-monitor or nft monitor trace, whichever the plugin picks there) and shows the SYN's
masquerade and the reply's de-NAT back to the guest. Without VIRTLAB_TARGET it runs on debian12-1.
test_trace_capture.py covers debian12, el7, el6 in depth; test_trace_capture_nft.py el10's nft tables.

Run: VIRTLAB_NAME=tu VIRTLAB_TARGET=debian13 .venv/bin/python -m pytest -q -m integration -p no:xdist \\
     tests/integration/test_trace_capture_userlands.py
"""
import json
import threading

import pytest

from labansible import TARGET_HOST  # tests/lab, put on sys.path by conftest

UPLINK = "10.44.32.217"
PORT = "3128"
FLOW = dict(protocol="tcp", destination=UPLINK, destination_port=[PORT])
RULESET = "capture-ul"


def ok(res):
    assert not res["failed"], res
    return res


@pytest.mark.parametrize("host", [TARGET_HOST])
def test_oneshot_traces_the_nat_path(lab, run_module, run_playbook, host):
    if host in ("el7-1", "el6-1"):
        pytest.skip("%s (iptables-legacy, TRACE to the kernel log): traced in depth by test_trace_capture.py in the "
                    "main run; this oneshot is for the nf_tables userlands" % host)
    guest = "tul" + host.split("-")[0][-2:]
    info = lab.guest_add(guest, host)
    forward = dict(name=RULESET, protocol="tcp", destination_port=[PORT], expires=300)
    reply = dict(name=RULESET + "-r", protocol="tcp", source_port=PORT, expires=300)
    rules = [{"name": "rule", "virtops.virtnet.trace_rule": forward},
             {"name": "reply", "virtops.virtnet.trace_rule": reply}]
    play = [{"hosts": host, "gather_facts": False,
             "tasks": [{"name": "log", "virtops.virtnet.nf_log": {"families": ["ipv4"]}}] + rules}]
    out = run_playbook(json.dumps(play) + "\n")
    assert out["rc"] == 0, out["stdout"][-3000:]
    stop = threading.Event()

    def traffic():  # ansible's start-up delays the capture by an unknown time: connect again and again
        while not stop.is_set():
            lab.guest_exec(guest, ["nc", "-z", "-w", "3", UPLINK, PORT], check=False)
            stop.wait(0.5)
    t = threading.Thread(target=traffic)
    t.start()
    try:
        res = ok(run_module(host, "virtops.virtnet.trace_capture", action="oneshot", duration=3, match=FLOW))
    finally:
        stop.set()
        t.join()
        undo = [{"hosts": host, "gather_facts": False, "tasks": [
            {"name": "u%d" % i, "virtops.virtnet.trace_rule": dict(name=n, state="absent")}
            for i, n in enumerate((RULESET, RULESET + "-r"))]}]
        run_playbook(json.dumps(undo) + "\n")
        lab.guest_del(guest)
    assert res["changed"] is False and res["source_used"] == "nfnetlink", res.get("tool")
    syns = [p for p in res["packets"] if p["hops"][0]["src"] == info["ip"] and str(p["hops"][0]["dport"]) == PORT]
    assert syns, (res["tool"], [p["hops"][0] for p in res["packets"]][:5])
    # the capture may begin inside a connection (its ACKs skip NAT): some new connection's SYN is masqueraded
    path = [[(h["table"], h["chain"], h.get("rule")) for h in p["hops"]] for p in syns][:4]
    assert any("masquerade" in (h.get("rule") or "").lower() for p in syns for h in p["hops"]), path
    replies = [p for p in res["packets"] if p["hops"][0]["src"] == UPLINK and str(p["hops"][0]["sport"]) == PORT]
    assert replies, res["packets"][:3]
    assert any(info["ip"] in [h["dst"] for h in r["hops"]] for r in replies), replies[0]["hops"]   # de-NATed
