# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/networks.yml and playbooks/trace.yml against lab hypervisors (real libvirtd, kernel,
iptables, SSH). Run alone with its own lab: VIRTLAB_NAME=roles pytest tests/integration/test_playbooks.py"""
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NETWORKS = os.path.join(ROOT, "playbooks", "networks.yml")
TRACE = os.path.join(ROOT, "playbooks", "trace.yml")
PYTHON_HOSTS = ["debian12-1", "el7-1"]  # the libvirt modules need Python on the host; el6 has none
UPLINK = "10.44.32.217"

# One NAT and one routed network per host, from variables templated per host (a fleet's group_vars).
FLEET_NETWORKS = [
    {"name": "pbnat", "forward": "nat", "bridge": {"name": "virbr-pbnat"},
     "ips": [{"address": "10.77.1.1", "prefix": 24,
              "ranges": [{"start": "10.77.1.100", "end": "10.77.1.150"}]}],
     "autostart": True},
    {"name": "pbroute", "forward": "route", "bridge": {"name": "virbr-pbrt"},
     "ips": [{"address": "10.77.{{ 10 + groups['hypervisors'].index(inventory_hostname) }}.1", "prefix": 24}],
     "upstream_route": {"host": "localhost", "gateway": "{{ virtlab_bond0_ip }}",
                        "command_prefix": ["ip", "netns", "exec", "vn-{{ virtlab_lab }}-uplink"]}},
]


def _task(out, prefix):
    """host -> result of the first task whose name starts with prefix."""
    for t in out["tasks"]:
        if t["name"].split(" : ", 1)[-1].startswith(prefix):
            return t["hosts"]
    raise AssertionError("no task %r in %s" % (prefix, [t["name"] for t in out["tasks"]]))


def _changed(out, hosts):
    return {h: out["stats"][h]["changed"] for h in hosts}


@pytest.fixture()
def fleet_networks(lab, run_playbook):
    yield
    absent = [{"name": n["name"], "state": "absent"} for n in FLEET_NETWORKS]
    run_playbook(NETWORKS, extra_vars={"virtnet_networks": absent}, limit=PYTHON_HOSTS)
    for i in range(len(lab.hosts)):
        lab.uplink_exec(["ip", "route", "del", "10.77.%d.0/24" % (10 + i)], check=False)
    for g in ("pbn1", "pbr1"):
        lab.guest_del(g)


def test_networks_playbook_converges_a_fleet(lab, run_playbook, fleet_networks):
    ev = {"virtnet_networks": FLEET_NETWORKS, "virtnet_install_libvirt": True}

    check = run_playbook(NETWORKS, extra_vars=ev, limit=PYTHON_HOSTS, check=True)
    assert check["rc"] == 0, check["stdout"][-3000:]
    for host in PYTHON_HOSTS:  # check mode defined nothing
        assert lab.virsh(host, "net-info", "pbnat", check=False).returncode != 0

    first = run_playbook(NETWORKS, extra_vars=ev, limit=PYTHON_HOSTS)
    assert first["rc"] == 0, first["stdout"][-3000:]
    assert all(_changed(first, PYTHON_HOSTS).values())
    second = run_playbook(NETWORKS, extra_vars=ev, limit=PYTHON_HOSTS)
    assert second["rc"] == 0, second["stdout"][-3000:]
    assert _changed(second, PYTHON_HOSTS) == {h: 0 for h in PYTHON_HOSTS}

    hosts = lab.hosts
    for host in PYTHON_HOSTS:
        idx = hosts.index(host)
        for net, bridge in (("pbnat", "virbr-pbnat"), ("pbroute", "virbr-pbrt")):
            info = lab.virsh(host, "net-info", net).stdout
            assert "Active:" in info and "yes" in info.split("Active:")[1].split("\n")[0]
            assert lab.exec(host, ["ip", "link", "show", bridge]).returncode == 0
        # the uplink router knows the way back to each host's routed subnet
        route = lab.uplink_exec(["ip", "-4", "route", "show", "10.77.%d.0/24" % (10 + idx)]).stdout
        assert "via %s" % lab.exec(host, ["sh", "-c", "ip -4 -o addr show bond0"]).stdout.split()[3].split("/")[0] in route

    # NAT: a guest reaches the uplink masqueraded; routed: with its own address
    host = PYTHON_HOSTS[0]
    gn = lab.guest_add("pbn1", host, network="pbnat")
    before = len(lab.uplink_connections())
    lab.guest_exec("pbn1", ["nc", "-z", "-w", "5", UPLINK, "3128"])
    lab.uplink_connections(at_least=before + 1)     # logged in order: the NAT guest's first
    gr = lab.guest_add("pbr1", host, network="pbroute")
    lab.guest_exec("pbr1", ["nc", "-z", "-w", "5", UPLINK, "3128"])
    seen = [c["src"] for c in lab.uplink_connections(at_least=before + 2)[-2:]]
    assert gn["ip"] not in seen and gr["ip"] == seen[-1]


@pytest.fixture()
def trace_guests(lab):
    names = []
    for i, host in enumerate(lab.hosts):
        name = "pbt%d" % (i + 1)
        lab.guest_add(name, host)
        names.append(name)
    yield
    for name in names:
        lab.guest_del(name)


def test_trace_playbook_prints_each_packets_path_on_every_persona(lab, run_playbook, trace_guests, tmp_path):
    ev = {
        "trace_name": "pbtrace",
        "trace_match": {"protocol": "tcp", "destination": UPLINK, "destination_port": ["3128"]},
        "trace_duration": 3,
        "trace_expires": 120,
        # each host's own guest connects (from the controller, where the guest namespaces live)
        "trace_probes": {host: {"host": "localhost", "command": [
            "ip", "netns", "exec", "vn-%s-g-pbt%d" % (lab.name, i + 1), "nc", "-z", "-w", "3", UPLINK, "3128"]}
            for i, host in enumerate(lab.hosts)},
    }
    if os.path.exists(os.path.join(ROOT, "plugins", "plugin_utils", "netfilter", "_trace_report.py")):
        ev["trace_report_dir"] = str(tmp_path)
    # The kernel ring buffer (128 KiB) is one for all labs of the parallel workers: their TRACE lines can
    # push a kernel-log capture's start marker out of it before the stop reads it (trace_capture then says
    # marker_found false, "the log wrapped"). Such a run is made again, at most 3 times in all.
    for _attempt in range(3):
        out = run_playbook(TRACE, extra_vars=ev)
        assert out["rc"] == 0, out["stdout"][-4000:]
        # the probes run on localhost: the role captures with start, the probe delegated to localhost, stop
        captured = _task(out, "Stop capturing and collect the packets")
        if all(captured[h].get("marker_found") is not False for h in lab.hosts):
            break
    printed = _task(out, "Print each packet's path")
    for host in lab.hosts:
        packets = captured[host]["packets"]
        outgoing = [p for p in packets if p["dst"] == UPLINK]
        replies = [p for p in packets if p["src"] == UPLINK]
        assert outgoing and replies, (host, [p.get("summary") for p in packets], captured[host].get("marker_found"),
                                      captured[host].get("warnings"), captured[host].get("stats"),
                                      captured[host].get("diagnosis"))
        hops = [h for p in outgoing for h in p["hops"]]
        assert outgoing[0]["hops"][0]["in"] == "virbr0"
        probe = captured[host]["probe_result"]
        assert probe["host"] == "localhost" and probe["rc"] == 0 and probe["command"][:2] == ["ip", "netns"], probe
        assert any(h["table"] == "filter" and "-j ACCEPT" in (h.get("rule") or "") for h in hops)
        assert any(h["table"] == "nat" and "MASQUERADE" in (h.get("rule") or "") for h in hops)
        assert any(n["field"] == "dst" and n["after"].startswith("192.168.122.") for p in replies for n in p["nat"])
        lines = printed[host]["msg"]
        assert any("MASQUERADE" in line for line in lines) and lines[0].startswith("packet 1: tcp ")
        # the rules were removed again; nothing of ours is left in the raw table
        assert "virtnet:pbtrace" not in lab.exec(host, ["iptables-save", "-t", "raw"]).stdout
        if "trace_report_dir" in ev:
            assert (tmp_path / ("trace-%s.html" % host)).exists()
    # a second run, one host at a time (serial), changes nothing (rules added and removed within the run
    # are not a change)
    again = run_playbook(TRACE, extra_vars=dict(ev, trace_print=False, trace_serial=1))
    assert again["rc"] == 0
    assert all(s["changed"] == 0 for h, s in again["stats"].items() if h != "localhost")
    assert sorted(h for h in again["stats"] if h != "localhost") == sorted(lab.hosts)


def test_trace_playbook_removes_rules_an_interrupted_run_left(lab, run_playbook):
    host = "el7-1"
    ev = {"trace_name": "pbleft", "trace_action": "enable", "trace_expires": 120,
          "trace_match": {"protocol": "tcp", "destination_port": ["3129"]}}
    out = run_playbook(TRACE, extra_vars=ev, limit=host)
    assert out["rc"] == 0, out["stdout"][-3000:]
    assert "virtnet:pbleft" in lab.exec(host, ["iptables-save", "-t", "raw"]).stdout
    out = run_playbook(TRACE, extra_vars=dict(ev, trace_action="disable", trace_nf_log=False), limit=host)
    assert out["rc"] == 0, out["stdout"][-3000:]
    assert out["stats"][host]["changed"] >= 1
    assert "virtnet:pbleft" not in lab.exec(host, ["iptables-save", "-t", "raw"]).stdout
