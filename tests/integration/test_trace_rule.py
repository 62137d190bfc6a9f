# SPDX-License-Identifier: GPL-3.0-or-later
"""trace_rule on lab hosts of each persona: debian12 (nf_tables), el7 and el6 (legacy, el6 without Python).

Run: VIRTLAB_NAME=nf .venv/bin/python -m pytest -q tests/integration/test_trace_rule.py
"""
import json
import re
import subprocess
import threading
import time

import pytest

from labansible import TARGET_HOST  # tests/lab, put on sys.path by conftest
from labtest import connect, ok
from waits import wait_for

BASE_HOSTS = ["debian12-1", "el7-1", "el6-1"]
# the persona of $VIRTLAB_TARGET (debian11, debian13, el10, el8) joins: make integration-userlands and
# integration-targets run this file's per-host tests on it (tests/lab/README.md)
HOSTS = BASE_HOSTS + ([TARGET_HOST] if TARGET_HOST not in BASE_HOSTS else [])
LEGACY = ("el7-1", "el6-1")   # iptables-legacy (TRACE to the kernel log); every other persona: nf_tables
UPLINK = "10.44.32.217"
MOD = "virtops.virtnet.trace_rule"
POLL = 0.5  # seconds between two looks at a host's rules or logs


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
    assert res["backend"] == ("legacy" if host in LEGACY else "nft")
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


EXPIRE_LOG = "/var/tmp/virtnet-expire.log"  # the lab has no syslog daemon: the remover's log file


def expire_log(lab, host, name, exp):
    """The remover's log lines for one rule set and expiry on one host (/var/tmp is the machine's)."""
    out = lab.exec(host, ["sh", "-c", "cat %s 2>/dev/null || true" % EXPIRE_LOG]).stdout
    return [x for x in out.splitlines() if "host=%s " % host in x and " name=%s exp=%d " % (name, exp) in x]


def host_now(lab, host):
    return int(lab.exec(host, ["date", "+%s"]).stdout.strip())


def test_expiry_removed_by_detached_remover(lab, run_playbook):
    """All personas at once: rules with expires=20 are gone ~20 s later without the controller, each
    remover confirmed it started (pid) and logged what it removed."""
    play = [{"hosts": ",".join(HOSTS), "gather_facts": False, "tasks": [
        {"name": "t", MOD: dict(name="it-exp", protocol="tcp", destination_port=["4444"], expires=20)}]}]
    out = run_playbook(json.dumps(play) + "\n")
    exp = {}
    for host in HOSTS:
        res = out["results"]["t"][host]
        assert not res["failed"], res
        assert res["expires_at"] and "--datestop" in res["rules"][0]
        assert res["removers"]["ipv4"], res          # the remover confirmed it runs in its own session
        assert len(ours(save(lab, host), "it-exp")) == 1
        exp[host] = res["expires_at"]
    for host in HOSTS:
        wait_for("the remover to delete it-exp on %s" % host, lambda: not ours(save(lab, host), "it-exp"),
                 timeout=60, every=POLL)
        logged = wait_for("the remover's log line on %s" % host, lambda: expire_log(lab, host, "it-exp", exp[host]),
                          timeout=10, every=POLL)
        assert "removed 1 rule(s)" in logged[-1], logged


def test_remover_waits_out_a_held_xtables_lock(lab, run_playbook):
    """Legacy backend with iptables-restore -w: the xtables lock held across the expiry moment delays the
    remover, which removes the rule once the lock is free (debian12-1 driven with backend=legacy)."""
    host = "debian12-1"
    res = ok(run(run_playbook, host, MOD, name="it-lock", protocol="tcp", destination_port=["4445"], expires=6,
                 backend="legacy"))
    assert res["backend"] == "legacy" and res["removers"]["ipv4"]
    exp = res["expires_at"]
    assert exp - host_now(lab, host) >= 2, "the task took too long to hold the lock before the expiry"
    holder = lab.exec(host, ["sh", "-c", "sh -c 'exec 9>/run/xtables.lock && flock 9 && exec sleep 60' "
                                         "</dev/null >/dev/null 2>&1 & echo $!"]).stdout.strip()
    try:
        wait_for("the expiry moment plus 3 s", lambda: host_now(lab, host) >= exp + 3, timeout=20, every=POLL)
        legacy = lab.exec(host, ["iptables-legacy-save", "-t", "raw"]).stdout
        assert "virtnet:it-lock:" in legacy, "removed although the xtables lock was held"
    finally:
        lab.exec(host, ["kill", holder], check=False)
    wait_for("it-lock removed after the lock was released",
             lambda: "virtnet:it-lock:" not in lab.exec(host, ["iptables-legacy-save", "-t", "raw"]).stdout,
             timeout=60, every=POLL)
    logged = wait_for("the remover's log line", lambda: expire_log(lab, host, "it-lock", exp), timeout=10, every=POLL)
    assert "removed 1 rule(s)" in logged[-1], logged


def test_remover_survives_a_concurrent_restore_on_the_same_table(lab, run_playbook):
    """el6 (iptables-restore without -w, so no lock): another tool rewrites the raw table in a loop across
    the expiry moment; the remover still removes exactly its rule, the other tool's rule is intact."""
    host = "el6-1"
    res = ok(run(run_playbook, host, MOD, name="it-conc", protocol="tcp", destination_port=["4446"], expires=5))
    exp = res["expires_at"]
    churn = ("i=0; while [ $(date +%%s) -le %d ]; do "
             "printf '*raw\\n-A OUTPUT -p udp --dport 7 -j ACCEPT\\nCOMMIT\\n' | iptables-restore --noflush; "
             "printf '*raw\\n-D OUTPUT -p udp --dport 7 -j ACCEPT\\nCOMMIT\\n' | iptables-restore --noflush; "
             "i=$((i+1)); done; "
             "printf '*raw\\n-A OUTPUT -p udp --dport 9 -j ACCEPT\\nCOMMIT\\n' | iptables-restore --noflush; echo $i"
             % (exp + 4))
    loops = int(lab.exec(host, ["sh", "-c", churn], timeout=60).stdout.split()[-1])
    assert loops > 10
    wait_for("it-conc removed", lambda: not ours(save(lab, host), "it-conc"), timeout=60, every=POLL)
    lines = save(lab, host)
    assert "-A OUTPUT -p udp -m udp --dport 9 -j ACCEPT" in lines
    assert not [x for x in lines if "--dport 7 " in x]
    lab.exec(host, ["iptables", "-t", "raw", "-D", "OUTPUT", "-p", "udp", "--dport", "9", "-j", "ACCEPT"])
    logged = wait_for("the remover's log line", lambda: expire_log(lab, host, "it-conc", exp), timeout=10, every=POLL)
    assert "removed 1 rule(s)" in logged[-1], logged


def test_remover_retries_a_failed_read(lab, run_playbook):
    """The remover's read fails once at the expiry moment (iptables-nft-save exits 1): it does not take that
    for "nothing left", retries, removes the rule and logs both."""
    host = "debian12-1"
    res = ok(run(run_playbook, host, MOD, name="it-rdfail", protocol="tcp", destination_port=["4447"], expires=8))
    exp = res["expires_at"]
    assert exp - host_now(lab, host) >= 2, "the task took too long to arm the fault before the expiry"
    saver = res["probe"]["tools"].get("iptables-nft-save") and "iptables-nft-save" or "iptables-save"
    real = lab.exec(host, ["sh", "-c", "command -v %s" % saver]).stdout.strip()
    lab.exec(host, ["sh", "-c", "cp -P %s /tmp/real-save && rm -f %s && "
                                "printf '#!/bin/sh\\nif [ -e /tmp/fail-once ]; then rm -f /tmp/fail-once; "
                                "echo \"%s: simulated read failure\" >&2; exit 1; fi\\n"
                                "exec /usr/sbin/xtables-nft-multi %s \"$@\"\\n' > %s && chmod 755 %s && "
                                "touch /tmp/fail-once" % (real, real, saver, saver, real, real)])
    direct = ["xtables-nft-multi", "iptables-save", "-t", "raw"]  # not through the wrapper
    try:
        wait_for("it-rdfail removed", lambda: "virtnet:it-rdfail:" not in lab.exec(host, direct).stdout, timeout=60, every=POLL)
        assert lab.exec(host, ["test", "-e", "/tmp/fail-once"], check=False).returncode == 1, "the fault never fired"
    finally:
        lab.exec(host, ["sh", "-c", "rm -f %s && cp -P /tmp/real-save %s" % (real, real)])
    logged = wait_for("the remover's log lines", lambda: [x for x in expire_log(lab, host, "it-rdfail", exp)
                                                          if "removed" in x], timeout=10, every=POLL)
    every = expire_log(lab, host, "it-rdfail", exp)
    assert any("attempt 1: read failed: %s: simulated read failure" % saver in x for x in every), every
    assert "removed 1 rule(s)" in logged[-1]


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
    # shell metacharacters in every string option, over-long and non-ASCII text
    (dict(protocol="tcp;id"), "protocol"),
    (dict(protocol="tcp", source="$(id)"), "source"),
    (dict(protocol="tcp", destination="`id`"), "destination"),
    (dict(protocol="tcp", source_port="80|id"), "source_port"),
    (dict(protocol="tcp", destination_port=["80&&id"]), "destination_port"),
    (dict(in_interface="eth0\nid"), "in_interface"),
    (dict(out_interface="eth0>x", chains=["OUTPUT"]), "out_interface"),
    (dict(in_interface="\u00e9th0"), "in_interface"),
    (dict(extra=["-m", "string", "--string", "a b"]), "extra"),
    (dict(name="x" * 65), "name"),
    (dict(name="n\u00e9e"), "name"),
    (dict(name="all"), "name"),
    (dict(rate=0), "rate"),
    (dict(expires=0), "expires"),
    (dict(expires=31 * 86400), "expires"),
]


@pytest.mark.parametrize("host", ["debian12-1", "el6-1"])
def test_bad_inputs_fail_and_change_nothing(lab, run_playbook, host, bad_input):
    before = save(lab, host)
    before6 = save(lab, host, family="ipv6")
    for kw, word in BAD:
        args = dict(dict(name="it-bad"), **kw)
        res = run(run_playbook, host, MOD, **args)
        assert res["failed"], (kw, res)
        assert word in res["msg"], (kw, res["msg"])
        assert not res["changed"], (kw, res)
        assert save(lab, host) == before and save(lab, host, family="ipv6") == before6, kw
        bad_input("trace_rule (%s)" % host, json.dumps(kw, ensure_ascii=False), word, res["msg"],
                  "iptables-save and ip6tables-save of the raw table")


def test_el6_runs_without_python(lab, run_playbook):
    probe = lab.exec("el6-1", ["sh", "-c", "command -v python python2 python3 python2.6; true"]).stdout
    assert probe.strip() == ""
    res = ok(run(run_playbook, "el6-1", MOD, name="it-el6", protocol="tcp", destination_port=["3128"]))
    assert res["probe"]["iptables_version"] == "1.4.7" and res["probe"]["distro"]["major"] == "6"
    ok(run(run_playbook, "el6-1", MOD, name="it-el6", state="absent"))


@pytest.mark.parametrize("host", HOSTS)
def test_kernel_emits_trace_for_guest_traffic(lab, run_playbook, host):
    guest = "nfg" + host.split("-")[0][-2:]
    info = lab.guest_add(guest, host)
    try:
        ok(run(run_playbook, host, "virtops.virtnet.nf_log", families=["ipv4"]))
        ok(run(run_playbook, host, MOD, name="it-emit", protocol="tcp", source=info["ip"], destination=UPLINK,
               destination_port=["3128"], expires=300))
        if host not in LEGACY:
            # xtables-monitor says nothing when it is ready: the guest connects again every half second
            # until a packet of its flow is in the monitor's output (10 s at most)
            mon = subprocess.Popen(lab._nsenter(host) + ["timeout", "20", "stdbuf", "-oL", "xtables-monitor", "--trace"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
            lines = []
            reader = threading.Thread(target=lambda: lines.extend(iter(mon.stdout.readline, "")))
            reader.start()
            try:
                def seen():
                    return [x for x in list(lines) if info["ip"] in x and "3128" in x]
                deadline = time.time() + 10
                while not seen() and time.time() < deadline:
                    connect(lab, guest)
                    t_end = time.time() + 0.5
                    while not seen() and time.time() < t_end:
                        time.sleep(0.05)
            finally:
                mon.terminate()   # SIGTERM: timeout passes it on to xtables-monitor (SIGKILL would orphan it)
                mon.wait()
                reader.join(10)
            text = "".join(lines)
            assert "PACKET" in text or "TRACE" in text, text[-2000:]
            assert seen(), text[-2000:]
        else:
            connect(lab, guest)   # legacy: TRACE prints to the ring buffer inside the packet's path

            def hits():
                dmesg = lab.exec(host, ["dmesg"]).stdout
                return [x for x in dmesg.splitlines()
                        if "TRACE: raw:PREROUTING" in x and "SRC=%s" % info["ip"] in x and "DPT=3128" in x]
            wait_for("TRACE lines of %s's SYN in %s's kernel log" % (info["ip"], host), hits, timeout=10, every=0.2)
    finally:
        run(run_playbook, host, MOD, name="it-emit", state="absent")
        lab.guest_del(guest)


def _at_once(*calls):
    """Run the given callables at the same time; return their results in order."""
    out = [None] * len(calls)

    def runner(i, fn):
        out[i] = fn()
    threads = [threading.Thread(target=runner, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return out


@pytest.mark.parametrize("host", ["debian12-1", "el7-1"])
def test_two_playbooks_trace_one_host_at_once(lab, run_playbook, host):
    """Different names: both rule sets land, neither removes the other's; the same name twice: one rule set,
    no duplicate. Everything that is not ours stays byte-identical (counters aside)."""
    before = others(save(lab, host))
    for rnd in range(3):
        a, b = _at_once(
            lambda: run(run_playbook, host, MOD, name="it-ca", protocol="tcp", destination_port=[str(5100 + rnd)]),
            lambda: run(run_playbook, host, MOD, name="it-cb", protocol="udp", destination_port=[str(5200 + rnd)]))
        ok(a)
        ok(b)
        lines = save(lab, host)
        assert len(ours(lines, "it-ca")) == 1 and "--dport %d " % (5100 + rnd) in ours(lines, "it-ca")[0]
        assert len(ours(lines, "it-cb")) == 1 and "--dport %d " % (5200 + rnd) in ours(lines, "it-cb")[0]
        same = _at_once(*[lambda: run(run_playbook, host, MOD, name="it-cs", protocol="tcp",
                                      destination_port=[str(5300 + rnd)], chains=["PREROUTING", "OUTPUT"])] * 2)
        for res in same:
            ok(res)
        assert len(ours(save(lab, host), "it-cs")) == 2, ours(save(lab, host), "it-cs")  # one per chain
        assert others(save(lab, host)) == before
    gone = _at_once(lambda: run(run_playbook, host, MOD, name="it-ca", state="absent"),
                    lambda: run(run_playbook, host, MOD, name="it-cb", state="absent"),
                    lambda: run(run_playbook, host, MOD, name="it-cs", state="absent"))
    for res in gone:
        ok(res)
    lines = save(lab, host)
    assert not ours(lines, "it-ca") and not ours(lines, "it-cb") and not ours(lines, "it-cs")
    assert others(lines) == before


def _all_tables(lab, host):
    """iptables-save of every table, comments and counters aside (what another owner would compare)."""
    out = lab.exec(host, ["iptables-save"]).stdout
    return [re.sub(r" ?\[\d+:\d+\]", "", x) for x in out.splitlines() if x and not x.startswith("#")]


@pytest.mark.parametrize("host", ["debian12-1", "el7-1"])
def test_ten_thousand_foreign_rules_left_byte_identical(lab, run_playbook, host):
    """A crowded host (10,000 rules of libvirt-like, Docker-like and user owners in raw, nat and filter):
    our add and our remove leave every one of them, and their order, as they were.
    Timings of the same add/remove: bench/bench_trace_rule_crowded.py."""
    import crowd
    lab.exec(host, ["iptables-restore", "--noflush"], input=crowd.batch(), timeout=120)
    try:
        before = _all_tables(lab, host)
        assert len([x for x in before if x.startswith("-A ")]) >= 10000
        res = ok(run(run_playbook, host, MOD, name="it-crowd", protocol="tcp", destination_port=["3128", "8080"],
                     expires=600))
        assert res["changed"] and len(res["rules"]) == 2
        during = _all_tables(lab, host)
        assert [x for x in during if "virtnet:it-crowd:" not in x] == before
        res = ok(run(run_playbook, host, MOD, name="it-crowd", state="absent"))
        assert res["changed"]
        assert _all_tables(lab, host) == before
    finally:
        lab.exec(host, ["iptables-restore", "--noflush"], input=crowd.remove_batch(), check=False)
