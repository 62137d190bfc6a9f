# SPDX-License-Identifier: GPL-3.0-or-later
"""trace_capture end to end on lab hosts: the seed's scenario (a guest on libvirt's NAT network
opens TCP to the uplink 10.44.32.217:3128), for the legacy backend (el7, el6: dmesg) and the
nf_tables backend (debian12: xtables-monitor, nft monitor trace).

Run: VIRTLAB_NAME=cap .venv/bin/python -m pytest -q tests/integration/test_trace_capture.py
"""
import json
import re
import threading
import time

import pytest

from labtest import connect, ok, play  # tests/lab, put on sys.path by conftest
from waits import wait_for

UPLINK = "10.44.32.217"
PORT = "3128"
GUEST_NET = "192.168.122."
FLOW = dict(protocol="tcp", destination=UPLINK, destination_port=[PORT])
MODULE = "virtops.virtnet.trace_capture"
GUESTS = {"debian12-1": "tcg12", "el7-1": "tcg7", "el6-1": "tcg6"}
RULESET = "capture-it"


@pytest.fixture(scope="module")
def traced(lab, run_playbook):
    """Each host: ipv4 logger bound, TRACE rules for both directions of the flow (expiring), a guest."""
    guests = {}
    for host, guest in GUESTS.items():
        guests[host] = lab.guest_add(guest, host)
    play(run_playbook, ",".join(GUESTS), [
        ("virtops.virtnet.nf_log", dict(families=["ipv4"])),
        ("virtops.virtnet.trace_rule", dict(name=RULESET, protocol="tcp", destination_port=[PORT], expires=900)),
        ("virtops.virtnet.trace_rule", dict(name=RULESET + "-reply", protocol="tcp", source_port=PORT, expires=900)),
    ])
    yield guests
    play(run_playbook, ",".join(GUESTS), [
        ("virtops.virtnet.trace_rule", dict(name=RULESET, state="absent")),
        ("virtops.virtnet.trace_rule", dict(name=RULESET + "-reply", state="absent")),
    ])
    for guest in GUESTS.values():
        lab.guest_del(guest)


def wait_traced(lab, host, start, guest_ip):
    """Wait until what the capture reads holds a line of the guest's packets. A monitor (nfnetlink)
    writes them to its log file after the kernel sent them; a syslog file gets them through its
    forwarder. The kernel ring buffer needs no wait: TRACE prints there inside the packet's path, so the
    lines are in it when the guest's connect returns."""
    st = start["state"]
    if st["source"] == "nfnetlink":
        argv = ["grep", "-q", "-F", guest_ip, st["log"]]
    elif st["tool"] == "syslog":
        argv = ["grep", "-q", "-F", "SRC=%s " % guest_ip, st["file"]]
    else:
        return
    wait_for("the trace of %s in %s's capture" % (guest_ip, host),
             lambda: lab.exec(host, argv, check=False).returncode == 0)


def hop_names(packet):
    return ["%s:%s" % (h["table"], h["chain"]) for h in packet["hops"]]


def bond0_ip(lab, host):
    return lab.state()["hosts"][host]["bond0_ip"]


def assert_seed_path(lab, host, res, guest_ip, legacy):
    """The seed's picture: the SYN goes raw -> mangle -> nat PREROUTING (legacy), FORWARD accepted by
    libvirt's rule, POSTROUTING MASQUERADE; the SYN-ACK comes back to the host and is de-NATed to the guest."""
    packets = res["packets"]
    assert packets, res
    syn = next(p for p in packets if p["hops"][0]["src"] == guest_ip and str(p["hops"][0]["dport"]) == PORT)
    names = hop_names(syn)
    assert names[0] == "raw:PREROUTING"
    if legacy:
        assert names.index("raw:PREROUTING") < names.index("mangle:PREROUTING") < names.index("nat:PREROUTING"), names
    rules = [h.get("rule") or "" for h in syn["hops"]]
    accept = [r for r in rules if "-i virbr0" in r and "-s 192.168.122.0/24" in r and "-j ACCEPT" in r]
    assert accept, rules
    assert any(h["table"] == "filter" and "FORWARD" in h["chain"] or h["chain"].startswith("LIBVIRT_FW")
               for h in syn["hops"]), names
    masq = [h for h in syn["hops"] if h["table"] == "nat" and "MASQUERADE" in (h.get("rule") or "")]
    assert masq, rules
    # the translation is the parser's (packet nat), implied by that rule
    assert any(n["hop"] == syn["hops"].index(masq[0]) and n.get("implied") and n.get("target") == "MASQUERADE"
               for n in syn["nat"]), syn["nat"]
    # the reply: to the host's uplink address first, then (after de-NAT) to the guest
    host_ip = bond0_ip(lab, host)
    reply = next(p for p in packets if p["hops"][0]["src"] == UPLINK and str(p["hops"][0]["sport"]) == PORT)
    dsts = [h["dst"] for h in reply["hops"]]
    assert dsts[0] == host_ip, dsts
    assert guest_ip in dsts, dsts
    assert all(h["dst"] == guest_ip for h in reply["hops"][dsts.index(guest_ip):])
    # the snapshot the rules were resolved from
    assert any("MASQUERADE" in x for x in res["rules_snapshot"]["ipv4"])


def start_stop(lab, run_module, host, guest, attempts=3, **args):
    """Start, connect, stop. The kernel ring buffer (128 KiB here) is one for every lab of the parallel
    test workers: their TRACE lines can push a kernel-log capture's start marker out of it before the
    stop reads it. The module reports that (marker_found false, 'the log wrapped'); such a capture
    is taken again, at most ``attempts`` times in all."""
    for attempt in range(attempts):
        start = ok(run_module(host, MODULE, action="start", **args))
        assert start["changed"] and start["capture_id"]
        probe = connect(lab, guest)
        assert probe.returncode == 0, probe.stderr
        wait_traced(lab, host, start, lab.state()["guests"][guest]["ip"])
        res = ok(run_module(host, MODULE, action="stop", capture_id=start["capture_id"], match=FLOW,
                            return_lines=True))
        wrapped = res.get("marker_found") is False and any("the log wrapped" in w for w in res.get("warnings", []))
        if not wrapped or attempt == attempts - 1:
            return start, res


@pytest.mark.parametrize("host", ["el7-1", "el6-1"])
def test_legacy_dmesg_start_stop(lab, run_module, traced, host):
    start, res = start_stop(lab, run_module, host, GUESTS[host])
    assert start["source_used"] == "kernel_log" and start["tool"] == "dmesg"
    assert res["source_used"] == "kernel_log" and res["marker_found"] is True
    assert res["changed"] is True
    assert_seed_path(lab, host, res, traced[host]["ip"], legacy=True)
    assert all("TRACE:" in x for x in res["lines"] if "TRACE" in x)


def test_nft_xtables_monitor_start_stop(lab, run_module, traced):
    host = "debian12-1"
    start, res = start_stop(lab, run_module, host, GUESTS[host])
    assert start["source_used"] == "nfnetlink" and start["tool"] == "xtables-monitor"
    assert_seed_path(lab, host, res, traced[host]["ip"], legacy=False)
    # the monitor is gone (ended; init may not have reaped it yet) and nothing is left behind
    pid = start["state"]["pid"]
    assert pid.isdigit()
    left = lab.exec(host, ["sh", "-c", "ls /run/virtnet-capture-* /tmp/virtnet-capture-* 2>/dev/null; "
                           "ps -o stat= -p %s | grep -qv '^Z' && echo alive; true" % pid], check=False)
    assert left.stdout.strip() == ""


def test_nft_monitor_trace_oneshot_with_guest_traffic(lab, run_module, traced):
    host = "debian12-1"
    # ansible's own start-up delays the capture by an unknown time: connect again and again
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            connect(lab, GUESTS[host])
            stop.wait(0.5)
    t = threading.Thread(target=traffic)
    t.start()
    try:
        res = ok(run_module(host, MODULE, action="oneshot", monitor="nft", duration=3, match=FLOW))
    finally:
        stop.set()
        t.join()
    assert res["changed"] is False and res["tool"] == "nft"
    # the capture may begin inside a connection (its ACKs skip the nat table): some new connection's first
    # packet goes through the masquerade
    ours = [p for p in res["packets"] if p["hops"][0]["src"] == traced[host]["ip"]]
    assert any(h["table"] == "nat" and "masquerade" in (h.get("rule") or "").lower() for p in ours for h in p["hops"]), \
        [[(h["table"], h["chain"], h.get("rule")) for h in p["hops"]] for p in ours][:4]


@pytest.fixture
def host_netns(lab):
    """A network namespace created ON the host (not the lab's guest namespaces, which live in the
    machine's mount namespace the host cannot see), plugged into virbr0 as 192.168.122.230."""
    host = "el7-1"
    script = """
ip netns add capns
ip link add cap-h type veth peer name cap-g
ip link set cap-g netns capns
ip link set cap-h master virbr0 up
ip -n capns link set lo up
ip -n capns addr add 192.168.122.230/24 dev cap-g
ip -n capns link set cap-g up
ip -n capns route add default via 192.168.122.1
i=0; while [ "$(cat /sys/class/net/cap-h/brport/state)" != 3 ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done
"""
    lab.exec(host, ["sh", "-c", script])
    yield host, "capns", "192.168.122.230"
    lab.exec(host, ["sh", "-c", "ip link del cap-h; ip netns del capns"], check=False)


def test_legacy_oneshot_with_probe_in_a_host_netns(lab, run_module, traced, host_netns):
    host, netns, ip = host_netns
    res = ok(run_module(host, MODULE, duration=2, match=FLOW,
                        probe=dict(netns=netns, command=["nc", "-z", "-w", "2", UPLINK, PORT])))
    assert res["changed"] is False
    assert res["probe_result"]["rc"] == 0, res["probe_result"]
    assert_seed_path(lab, host, res, ip, legacy=True)
    # other guests' traffic is filtered out: only our namespace's flow (and its replies)
    for p in res["packets"]:
        assert ip in [h["src"] for h in p["hops"]] + [h["dst"] for h in p["hops"]]
    assert res["stats"]["flow_dropped_packets"] >= 0


@pytest.mark.parametrize("fmt", ["html", "text"])
def test_report_written_on_the_controller(lab, run_module, traced, tmp_path, fmt):
    try:
        from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_report  # noqa: F401
    except ImportError:
        pytest.skip("the report renderer (plugin_utils/netfilter/_trace_report.py) is not in the tree yet")
    host = "el6-1"
    path = str(tmp_path / ("report." + fmt))
    start = ok(run_module(host, MODULE, action="start"))
    assert connect(lab, GUESTS[host]).returncode == 0   # el6: dmesg, in the ring buffer when connect returns
    res = ok(run_module(host, MODULE, action="stop", capture_id=start["capture_id"], match=FLOW, report_path=path,
                        report_format=fmt))
    assert res["report_path"] == path
    with open(path) as f:
        text = f.read()
    assert ("<svg" in text) if fmt == "html" else ("MASQUERADE" in text)


def test_shared_ring_buffer_other_hosts_filtered(lab, run_module, traced):
    """el6-1's lines are in the same kernel log as el7-1's: el7-1's capture does not return them."""
    start = ok(run_module("el7-1", MODULE, action="start"))
    p6 = connect(lab, GUESTS["el6-1"])
    p7 = connect(lab, GUESTS["el7-1"])
    assert p6.returncode == 0 and p7.returncode == 0   # dmesg: in the ring buffer when connect returns
    res = ok(run_module("el7-1", MODULE, action="stop", capture_id=start["capture_id"], match=FLOW, return_lines=True))
    assert res["stats"]["foreign_lines"] > 0
    assert any("vg-" + GUESTS["el6-1"] in x for x in res["lines"])
    mac6 = lab.exec("el6-1", ["cat", "/sys/class/net/bond0/address"]).stdout.strip()
    for p in res["packets"]:
        for h in p["hops"]:
            assert h.get("physin") in (None, "", "vg-" + GUESTS["el7-1"]), h
    assert mac6
    assert_seed_path(lab, "el7-1", res, traced["el7-1"]["ip"], legacy=True)


def test_empty_capture_is_diagnosed(lab, run_module, traced):
    """Kernel log on the nf_tables host: nothing, and the warning says why."""
    res = ok(run_module("debian12-1", MODULE, source="kernel_log", duration=1, match=FLOW))
    assert res["packets"] == []
    assert "use source=nfnetlink" in res["diagnosis"][0]
    assert any("nothing was captured" in w for w in res.get("warnings", []))


def test_probe_on_another_inventory_host_names_the_delegate_to_pattern(lab, run_module, traced):
    """trace_capture runs its probe on the traced host only; another host's probe is a task with delegate_to
    between action=start and action=stop (the trace role's way: tests/integration/test_playbooks.py)."""
    res = run_module("el7-1", MODULE, duration=1, probe=dict(host="debian12-1", command=["hostname"]))
    assert res["failed"] and not res["changed"], res
    assert res["msg"].startswith("probe.host: 'debian12-1' is not the traced host 'el7-1'"), res["msg"]
    assert "action=start" in res["msg"] and "delegate_to: debian12-1" in res["msg"] and "action=stop" in res["msg"]
    assert lab.exec("el7-1", ["sh", "-c", "ls /run/virtnet-capture-* 2>/dev/null || true"]).stdout.strip() == ""
    res = ok(run_module("el7-1", MODULE, duration=1, probe=dict(host="el7-1", command=["hostname"])))
    assert res["probe_result"]["host"] == "el7-1" and res["probe_result"]["stdout"].strip() == "el7-1"


def test_check_mode_starts_nothing(lab, run_module, traced):
    res = ok(run_module("el6-1", MODULE, check=True, action="start"))
    assert res["changed"] is True and "would start" in res["msg"] and "capture_id" not in res
    res = ok(run_module("debian12-1", MODULE, check=True, duration=1))
    assert res["changed"] is False and res["source_used"] == "nfnetlink"
    left = lab.exec("el6-1", ["sh", "-c", "ls /run/virtnet-capture-* 2>/dev/null || true"]).stdout
    assert left.strip() == ""


CAPTURE_BAD = [
    (dict(action="stop", capture_id="x;reboot"), "capture_id"),
    (dict(action="stop", capture_id="abcdef123456"), "no capture abcdef123456"),
    (dict(match=dict(destination_port=["70000"])), "bad port"),
    (dict(probe=dict(netns="a b", command=["true"])), "netns"),
    (dict(probe=dict(netns="$(id)", command=["true"])), "netns"),
    (dict(match=dict(protocol="tcp;id")), "protocol"),
    (dict(match=dict(source="10.0.0.1`id`")), "source"),
    (dict(match=dict(in_interface="vn\u00e9t0")), "in_interface"),
    (dict(duration=-1), "duration"),
    (dict(max_lines=0), "max_lines"),
]


def test_bad_input(lab, run_module, traced, bad_input):
    def snapshot():
        rules = [re.sub(r"\[\d+:\d+\]", "", x) for x in lab.exec("el7-1", ["iptables-save"]).stdout.splitlines()
                 if not x.startswith("#")]
        return (rules,
                lab.exec("el7-1", ["sh", "-c", "ls /run/virtnet-capture-* 2>/dev/null || true"]).stdout)
    before = snapshot()
    for kw, word in CAPTURE_BAD:
        res = run_module("el7-1", MODULE, **kw)
        assert res["failed"] and word in res["msg"], (kw, res)
        assert not res["changed"] and snapshot() == before, kw
        bad_input("trace_capture", json.dumps(kw, ensure_ascii=False), word, res["msg"],
                  "iptables-save and the host's capture state files")


@pytest.fixture
def syslog_file(lab):
    """A stand-in for rsyslog's imklog on el7-1: /dev/kmsg copied into a syslog-format file (in the
    host's private /tmp) as 'Mon DD HH:MM:SS host kernel: message'."""
    host, path = "el7-1", "/tmp/virtnet-it-messages"
    script = """: > %s
cd / && nohup sh -c 'echo $$ > /tmp/virtnet-it-fwd.pid; cat /dev/kmsg | \
  sed -n -u "/^[0-9]/ s/^[^;]*;/Nov 26 21:00:00 el7-1 kernel: /p"' >> %s 2>/dev/null < /dev/null &
""" % (path, path)
    lab.exec(host, ["sh", "-c", script])
    # cat /dev/kmsg starts with the whole ring buffer: the file fills as soon as the forwarder runs
    wait_for("the kmsg forwarder to write %s" % path,
             lambda: lab.exec(host, ["test", "-s", path], check=False).returncode == 0)
    yield host, path
    # the pid is the sh running the pipeline: kill its children (cat, sed) too
    lab.exec(host, ["sh", "-c", "p=$(cat /tmp/virtnet-it-fwd.pid); pkill -P $p; kill $p; "
                                "rm -f /tmp/virtnet-it-fwd.pid %s" % path], check=False)


def test_legacy_syslog_file_reader_and_loss_warning(lab, run_module, traced, syslog_file):
    host, path = syslog_file
    start = ok(run_module(host, MODULE, action="start", kernel_log_reader="syslog", syslog_file=path))
    assert start["tool"] == "syslog"
    assert connect(lab, GUESTS[host]).returncode == 0
    # what rsyslog writes when imjournal drops messages (simulated: no rsyslog in the lab)
    lab.exec(host, ["sh", "-c", "echo 'Nov 26 21:00:01 el7-1 rsyslogd: imjournal: 12 messages lost due to "
                                "rate-limiting' >> %s" % path])
    wait_traced(lab, host, start, traced[host]["ip"])
    res = ok(run_module(host, MODULE, action="stop", capture_id=start["capture_id"], match=FLOW, return_lines=True))
    assert res["marker_found"] is True
    assert all(" kernel: TRACE: " in x for x in res["lines"] if "TRACE" in x)
    assert any("imjournal) lost 12 messages" in w for w in res.get("warnings", []))
    assert_seed_path(lab, host, res, traced[host]["ip"], legacy=True)


def test_unbound_logger_is_diagnosed(lab, run_module, traced):
    """el6-1 (no Python) with net.netfilter.nf_log.2 unbound: TRACE prints nothing, and we say why."""
    host = "el6-1"
    ok(run_module(host, "virtops.virtnet.nf_log", families=["ipv4"], state="absent"))
    try:
        start = ok(run_module(host, MODULE, action="start"))
        assert connect(lab, GUESTS[host]).returncode == 0   # dmesg: nothing printed, nothing to wait for
        res = ok(run_module(host, MODULE, action="stop", capture_id=start["capture_id"], match=FLOW))
    finally:
        ok(run_module(host, "virtops.virtnet.nf_log", families=["ipv4"]))
    assert res["packets"] == [] and res["marker_found"] is True
    # the binding comes first; lines of other labs sharing the ring buffer may be noted after it
    assert res["diagnosis"][0].startswith("no kernel logger is bound to net.netfilter.nf_log.2"), res["diagnosis"]


def _alive_after(lab, host, pid, grace):
    """Is ``pid`` still running ``grace`` seconds from now? An exited process that nobody has reaped
    yet (a zombie: the lab's hosts share the machine's init, which reaps when it gets to it) answers
    ``kill -0`` but runs nothing, so it counts as ended."""
    deadline = time.time() + grace
    while True:
        state = lab.exec(host, ["ps", "-o", "stat=", "-p", pid], check=False).stdout.strip()
        if not state or state.startswith("Z"):
            return False
        if time.time() >= deadline:
            return True
        time.sleep(0.5)


def test_monitor_ends_by_itself_after_its_lifetime(lab, run_module, traced):
    """A monitor whose stop never comes does not run forever."""
    host = "debian12-1"
    start = ok(run_module(host, MODULE, action="start", lifetime=10))
    pid = start["state"]["pid"]
    assert lab.exec(host, ["kill", "-0", pid], check=False).returncode == 0
    t0 = time.time()
    assert not _alive_after(lab, host, pid, 21), "monitor %s still running 21 s into its 10 s lifetime" % pid
    assert time.time() - t0 > 5, "monitor %s ended long before its lifetime" % pid
    res = ok(run_module(host, MODULE, action="stop", capture_id=start["capture_id"]))
    assert any("had exited before the capture was stopped" in w for w in res.get("warnings", []))


def test_kernel_log_capture_warns_with_unparsed_lines(lab, run_module, traced):
    """A trace-looking line the parser cannot read (written to the kernel log through /dev/kmsg, as a
    broken or foreign tool would) is not dropped silently: the result counts it, returns it and warns.
    The line carries this host's virbr0 MAC, so other labs' captures filter it out as foreign."""
    host = "el7-1"
    mac = lab.exec(host, ["cat", "/sys/class/net/virbr0/address"]).stdout.strip()
    tag = "virtnet-it-unparsed-%d" % time.time_ns()
    bad = "TRACE: filter:F IN=virbr0 OUT= MAC=%s:52:54:00:00:00:01:08:00 %s" % (mac, tag)
    for attempt in range(3):
        start = ok(run_module(host, MODULE, action="start"))
        assert connect(lab, GUESTS[host]).returncode == 0
        lab.exec(host, ["sh", "-c", 'printf "%s\\n" "$1" > /dev/kmsg', "sh", bad])
        res = ok(run_module(host, MODULE, action="stop", capture_id=start["capture_id"], match=FLOW,
                            return_lines=True))
        if res.get("marker_found") is not False:
            break
    assert res["marker_found"] is True, res.get("warnings")
    seen = [x for x in res["lines"] if tag in x]
    assert len(seen) == 1, res["lines"]
    assert res["unparsed"]["count"] >= 1 and res["stats"]["malformed"] == res["unparsed"]["count"]
    [record] = [u for u in res["unparsed"]["lines"] if tag in u["text"]]
    assert record["text"] == seen[0].rstrip()
    assert record["reason"] == "TRACE line: head 'filter:F' is not table:chain:type:rulenum"
    assert any("could not be read" in w and tag in w for w in res.get("warnings", [])), res.get("warnings")
    assert_seed_path(lab, host, res, traced[host]["ip"], legacy=True)
