# SPDX-License-Identifier: GPL-3.0-or-later
"""trace_rule on lab hosts of each persona: debian12 (nf_tables), el7 and el6 (legacy, el6 without Python).

Run: VIRTLAB_NAME=nf .venv/bin/python -m pytest -q tests/integration/test_trace_rule.py
"""
import json
import re
import threading
import time

import pytest

HOSTS = ["debian12-1", "el7-1", "el6-1"]
UPLINK = "10.44.32.217"
MOD = "virtops.virtnet.trace_rule"


def run(run_playbook, host, module, check=False, diff=False, **args):
    """One task on one host (run_module cannot pass an option called ``name``)."""
    play = [{"hosts": host, "gather_facts": False, "tasks": [{"name": "t", module: args}]}]
    out = run_playbook(json.dumps(play) + "\n", check=check, diff=diff)
    res = out["results"].get("t", {}).get(host)
    assert res is not None, out["stdout"][-3000:] + out["stderr"][-3000:]
    return res


def save(lab, host, table="raw", family="ipv4"):
    tool = "iptables-save" if family == "ipv4" else "ip6tables-save"
    out = lab.exec(host, [tool, "-t", table]).stdout
    return [re.sub(r" \[\d+:\d+\]$", "", line) for line in out.splitlines()
            if line.startswith(("-A", ":", "*", "COMMIT"))]


def others(lines):
    """Everything that is not ours, without counters."""
    return [re.sub(r"\[\d+:\d+\]", "", x) for x in lines if "virtnet:" not in x]


def ours(lines, name):
    return [x for x in lines if ("virtnet:%s:" % name) in x]


def ok(res):
    assert not res["failed"], res
    return res


def clean_all(run_playbook):
    play = [{"hosts": ",".join(HOSTS), "gather_facts": False, "tasks": [
        {"name": "t", MOD: dict(name="all", state="absent", family="both")}]}]
    run_playbook(json.dumps(play) + "\n")


@pytest.fixture(scope="module", autouse=True)
def clean(run_playbook):
    """No rule of ours before and after this module (an interrupted run may have left some)."""
    clean_all(run_playbook)
    yield
    clean_all(run_playbook)


@pytest.fixture(scope="module")
def user_rules(lab):
    """A user TRACE rule that must survive everything we do (libvirt's own rules are in the other tables)."""
    for host in HOSTS:
        lab.exec(host, ["iptables", "-t", "raw", "-A", "OUTPUT", "-p", "udp", "--dport", "9", "-m", "comment",
                        "--comment", "user trace", "-j", "TRACE"])
    yield
    for host in HOSTS:
        lab.exec(host, ["iptables", "-t", "raw", "-D", "OUTPUT", "-p", "udp", "--dport", "9", "-m", "comment",
                        "--comment", "user trace", "-j", "TRACE"], check=False)


@pytest.mark.parametrize("host", HOSTS)
def test_add_find_rerun_replace_remove(lab, run_playbook, user_rules, host):
    before = save(lab, host)
    args = dict(name="it-add", protocol="tcp", destination=UPLINK, destination_port=["3128", "8000:8100"],
                chains=["PREROUTING", "OUTPUT"], rate=20)
    res = ok(run(run_playbook, host, MOD, diff=True, **args))
    assert res["changed"] and len(res["rules"]) == 4
    assert res["backend"] == ("nft" if host.startswith("debian") else "legacy")
    now = save(lab, host)
    assert len(ours(now, "it-add")) == 4
    assert sorted(ours(now, "it-add")) == sorted(res["rules"])
    assert others(now) == others(before)
    assert "virtnet:it-add:" in res["diff"]["after"] and res["diff"]["before"] == ""

    # re-run: unchanged, nothing applied
    res = ok(run(run_playbook, host, MOD, **args))
    assert not res["changed"] and res["batch"] == {}

    # check mode: a different rule set is predicted, nothing applied
    args2 = dict(args)
    args2.update(destination_port=["3128"], rate=None)
    res = ok(run(run_playbook, host, MOD, check=True, diff=True, **args2))
    assert res["changed"] and len(res["rules"]) == 2
    assert save(lab, host) == now

    # replace: old rules deleted and new ones added in one batch
    res = ok(run(run_playbook, host, MOD, diff=True, **args2))
    assert res["changed"]
    assert len(res["batch"]["ipv4"]) == 2 + 4 + 2
    now2 = save(lab, host)
    assert len(ours(now2, "it-add")) == 2 and others(now2) == others(before)

    # remove, then remove again
    res = ok(run(run_playbook, host, MOD, name="it-add", state="absent"))
    assert res["changed"] and res["rules"] == []
    res = ok(run(run_playbook, host, MOD, name="it-add", state="absent"))
    assert not res["changed"]
    after = save(lab, host)
    assert [re.sub(r"\[\d+:\d+\]", "", x) for x in after] == [re.sub(r"\[\d+:\d+\]", "", x) for x in before]


@pytest.mark.parametrize("host", HOSTS)
def test_family_both_and_absent_all(lab, run_playbook, host):
    v6_before = save(lab, host, family="ipv6")
    ok(run(run_playbook, host, MOD, name="it-both", family="both", protocol="tcp", destination_port=["22"]))
    ok(run(run_playbook, host, MOD, name="it-other", chains=["OUTPUT"], protocol="udp", destination_port=["53"]))
    assert len(ours(save(lab, host, family="ipv6"), "it-both")) == 1
    assert len(ours(save(lab, host), "it-other")) == 1
    res = ok(run(run_playbook, host, MOD, name="all", state="absent", family="both"))
    assert res["changed"]
    assert not [x for x in save(lab, host) if "virtnet:" in x]
    assert save(lab, host, family="ipv6") == v6_before


def test_expiry_removed_by_detached_remover(lab, run_playbook):
    """All personas at once: rules with expires=20 are gone ~20 s later without the controller."""
    play = [{"hosts": ",".join(HOSTS), "gather_facts": False, "tasks": [
        {"name": "t", MOD: dict(name="it-exp", protocol="tcp", destination_port=["4444"], expires=20)}]}]
    out = run_playbook(json.dumps(play) + "\n")
    for host in HOSTS:
        res = out["results"]["t"][host]
        assert not res["failed"], res
        assert res["expires_at"] and "--datestop" in res["rules"][0]
        assert len(ours(save(lab, host), "it-exp")) == 1
    deadline = time.time() + 60
    left = HOSTS
    while left and time.time() < deadline:
        time.sleep(3)
        left = [h for h in left if ours(save(lab, h), "it-exp")]
    assert not left, "expired rules still present on %s" % left


def test_expired_rules_are_purged_on_next_run(lab, run_playbook):
    host = "el7-1"
    # an expired rule of ours, as a killed remover would leave it
    lab.exec(host, ["iptables", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", "5555", "-m", "comment",
                    "--comment", "virtnet:it-stale:0123abcd:exp=1000000000", "-j", "TRACE"])
    res = ok(run(run_playbook, host, MOD, name="it-other", state="absent"))
    assert res["changed"] and len(res["purged"]) == 1
    assert not ours(save(lab, host), "it-stale")


BAD = [
    (dict(protocol="tcp", destination_port=["0"]), "destination_port"),
    (dict(protocol="tcp", destination_port=["65536"]), "destination_port"),
    (dict(protocol="tcp", destination_port=["200:100"]), "reversed"),
    (dict(source="10.0.0.0/33"), "source"),
    (dict(destination="10.1.2"), "destination"),
    (dict(in_interface="a-very-long-ifname"), "in_interface"),
    (dict(in_interface="eth0;reboot"), "in_interface"),
    (dict(extra=["-m", "comment", "--comment", "$(reboot)"]), "extra"),
    (dict(extra=["|", "sh"]), "extra"),
    (dict(chains=["FORWARD"]), "chains"),
    (dict(source="2001:db8::1"), "family"),
    (dict(name="x;reboot"), "name"),
]


@pytest.mark.parametrize("host", ["debian12-1", "el6-1"])
def test_bad_inputs_fail_and_change_nothing(lab, run_playbook, host):
    before = save(lab, host)
    for kw, word in BAD:
        args = dict(dict(name="it-bad"), **kw)
        res = run(run_playbook, host, MOD, **args)
        assert res["failed"], (kw, res)
        assert word in res["msg"], (kw, res["msg"])
    assert save(lab, host) == before


def test_el6_runs_without_python(lab, run_playbook):
    probe = lab.exec("el6-1", ["sh", "-c", "command -v python python2 python3 python2.6; true"]).stdout
    assert probe.strip() == ""
    res = ok(run(run_playbook, "el6-1", MOD, name="it-el6", protocol="tcp", destination_port=["3128"]))
    assert res["probe"]["iptables_version"] == "1.4.7" and res["probe"]["distro"]["major"] == "6"
    ok(run(run_playbook, "el6-1", MOD, name="it-el6", state="absent"))


def _connect(lab, guest):
    lab.guest_exec(guest, ["sh", "-c", "nc -z -w 3 %s 3128 || true" % UPLINK])


@pytest.mark.parametrize("host", HOSTS)
def test_kernel_emits_trace_for_guest_traffic(lab, run_playbook, host):
    guest = "nfg" + host.split("-")[0][-2:]
    info = lab.guest_add(guest, host)
    try:
        ok(run(run_playbook, host, "virtops.virtnet.nf_log", families=["ipv4"]))
        ok(run(run_playbook, host, MOD, name="it-emit", protocol="tcp", source=info["ip"], destination=UPLINK,
               destination_port=["3128"], expires=300))
        if host.startswith("debian"):
            box = {}

            def monitor():
                box["out"] = lab.exec(host, ["timeout", "6", "xtables-monitor", "--trace"], check=False).stdout
            t = threading.Thread(target=monitor)
            t.start()
            time.sleep(1.5)
            _connect(lab, guest)
            t.join()
            text = box.get("out", "")
            assert "PACKET" in text or "TRACE" in text, text[-2000:]
            assert info["ip"] in text and "3128" in text
        else:
            _connect(lab, guest)
            time.sleep(1)
            dmesg = lab.exec(host, ["dmesg"]).stdout
            hits = [x for x in dmesg.splitlines()
                    if "TRACE: raw:PREROUTING" in x and "SRC=%s" % info["ip"] in x and "DPT=3128" in x]
            assert hits, dmesg[-3000:]
    finally:
        run(run_playbook, host, MOD, name="it-emit", state="absent")
        lab.guest_del(guest)
