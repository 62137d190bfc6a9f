# SPDX-License-Identifier: GPL-3.0-or-later
"""log_rule on lab hosts: the seed's nat POSTROUTING LOG, tagging, idempotence, replace, libvirt's rules
untouched, kernel LOG output from a guest, bad inputs.

Run: VIRTLAB_NAME=nf .venv/bin/python -m pytest -q tests/integration/test_log_rule.py
"""
import json
import re
import time

import pytest

from labansible import TARGET_HOST  # tests/lab, put on sys.path by conftest

BASE_HOSTS = ["debian12-1", "el7-1", "el6-1"]
# the persona of $VIRTLAB_TARGET (debian11, debian13, el10, el8) joins: make integration-userlands and
# integration-targets run this file's per-host tests on it (tests/lab/README.md)
HOSTS = BASE_HOSTS + ([TARGET_HOST] if TARGET_HOST not in BASE_HOSTS else [])
LEGACY = ("el7-1", "el6-1")   # iptables-legacy (TRACE to the kernel log); every other persona: nf_tables
UPLINK = "10.44.32.217"
MOD = "virtops.virtnet.log_rule"


def run(run_playbook, host, check=False, diff=False, **args):
    play = [{"hosts": host, "gather_facts": False, "tasks": [{"name": "t", MOD: args}]}]
    out = run_playbook(json.dumps(play) + "\n", check=check, diff=diff)
    res = out["results"].get("t", {}).get(host)
    assert res is not None, out["stdout"][-3000:] + out["stderr"][-3000:]
    return res


def save(lab, host, table):
    out = lab.exec(host, ["iptables-save", "-t", table]).stdout
    return [re.sub(r" \[\d+:\d+\]$", "", x) for x in out.splitlines() if x.startswith(("-A", ":", "*", "COMMIT"))]


def ok(res):
    assert not res["failed"], res
    return res


@pytest.fixture(scope="module", autouse=True)
def clean(run_playbook):
    def clean_all():
        play = [{"hosts": ",".join(HOSTS), "gather_facts": False, "tasks": [
            {"name": "t%s" % t, MOD: dict(name="all", state="absent", table=t)} for t in ("nat", "filter")]}]
        run_playbook(json.dumps(play) + "\n")
    clean_all()
    yield
    clean_all()


@pytest.mark.parametrize("host", HOSTS)
def test_seed_nat_log_rule(lab, run_playbook, host):
    before = save(lab, host, "nat")
    if host != "el10-1":   # el10: libvirt's rules are in its own nft table, not in iptables' nat
        assert any("MASQUERADE" in x for x in before), "libvirt's NAT rules expected in the lab"
    args = dict(name="it-nat", table="nat", chain="POSTROUTING", source="192.168.122.0/24", prefix="vn nat: ",
                rate=10)
    res = ok(run(run_playbook, host, check=True, diff=True, **args))
    assert res["changed"] and save(lab, host, "nat") == before
    res = ok(run(run_playbook, host, diff=True, **args))
    assert res["changed"] and len(res["rules"]) == 1
    assert '--log-prefix "vn nat: "' in res["rules"][0]
    now = save(lab, host, "nat")
    post = [x for x in now if x.startswith("-A POSTROUTING ")]
    assert post[-1] == res["rules"][0]                        # appended (position: append)
    assert [x for x in now if "virtnet:" not in x] == before  # libvirt's rules untouched
    assert not ok(run(run_playbook, host, **args))["changed"]

    # replace: another prefix and level -> one rule, one batch
    args_replaced = dict(args)
    args_replaced.update(prefix="vn nat2: ", level="info", position="insert")
    res = ok(run(run_playbook, host, diff=True, **args_replaced))
    assert res["changed"] and len(res["rules"]) == 1 and "vn nat2: " in res["rules"][0]
    assert res["diff"]["before"] and res["diff"]["after"]
    now = save(lab, host, "nat")
    post = [x for x in now if x.startswith("-A POSTROUTING ")]
    assert "virtnet:it-nat:" in post[0]    # inserted at the top of POSTROUTING

    res = ok(run(run_playbook, host, name="it-nat", table="nat", state="absent"))
    assert res["changed"] and save(lab, host, "nat") == before


def test_log_output_for_guest_traffic(lab, run_playbook):
    host = "el7-1"
    info = lab.guest_add("nflog7", host)
    try:
        ok(run(run_playbook, host, name="it-guest", table="nat", chain="POSTROUTING", source=info["ip"],
               prefix="vnlog-it: ", expires=300, position="insert"))  # before libvirt MASQUERADE
        lab.guest_exec("nflog7", ["sh", "-c", "nc -z -w 3 %s 3128 || true" % UPLINK])

        def logged():
            dmesg = lab.exec(host, ["dmesg"]).stdout
            return [x for x in dmesg.splitlines() if "vnlog-it: " in x and "SRC=%s" % info["ip"] in x]
        deadline = time.time() + 10   # LOG prints inside the packet's path: normally there at once
        while not logged():
            assert time.time() < deadline, "waited 10 s for the LOG line of %s in the kernel log" % info["ip"]
            time.sleep(0.2)
    finally:
        run(run_playbook, host, name="it-guest", table="nat", state="absent")
        lab.guest_del("nflog7")


BAD = [
    (dict(chain="INPUT", prefix="x" * 30), "prefix"),
    (dict(chain="INPUT", prefix='say "hi"'), "prefix"),
    (dict(chain="INPUT", prefix="a$(reboot)"), "prefix"),
    (dict(chain="NO_SUCH_CHAIN"), "chain"),
    (dict(chain="INPUT;reboot"), "chain"),
    (dict(chain="INPUT", protocol="tcp", destination_port=["9-2"]), "reversed"),
    (dict(chain="INPUT", source="192.168.122.0/240"), "source"),
    (dict(chain="INPUT", out_interface="eth0"), "out_interface"),
    (dict(chain="INPUT", destination="fe80::1"), "family"),
    (dict(chain="INPUT", extra=["-j", "DROP"]), "extra"),
    (dict(chain="INPUT", prefix="caf\u00e9: "), "prefix"),
    (dict(chain="INPUT", prefix="a`id`"), "prefix"),
    (dict(chain="INPUT", prefix="line\nbreak"), "prefix"),
    (dict(chain="C" * 29), "chain"),
    (dict(chain="INPUT", table="filter;id"), "table"),
    (dict(chain="INPUT", level="7;id"), "level"),
    (dict(chain="INPUT", name="a b"), "name"),
]


@pytest.mark.parametrize("host", ["el6-1", "debian12-1"])
def test_bad_inputs(lab, run_playbook, host, bad_input):
    before = save(lab, host, "filter")
    for kw, word in BAD:
        kw = dict(kw)
        res = run(run_playbook, host, name=kw.pop("name", "it-bad"), **kw)
        assert res["failed"] and word in res["msg"], (kw, res)
        assert not res["changed"] and save(lab, host, "filter") == before, kw
        bad_input("log_rule (%s)" % host, json.dumps(kw, ensure_ascii=False), word, res["msg"],
                  "iptables-save of the filter table")
