# SPDX-License-Identifier: GPL-3.0-or-later
"""nf_log on lab hosts: the right module and logger per persona, bindings, persistent files, absent.

Run: VIRTLAB_NAME=nf .venv/bin/python -m pytest -q tests/integration/test_nf_log.py
"""
import pytest

from labansible import TARGET_HOST  # tests/lab, put on sys.path by conftest

MOD = "virtops.virtnet.nf_log"
EXPECT = {
    # host: (module for ipv4, logger ipv4, logger ipv6, modules file, sysctl file)
    "debian12-1": ("nf_log_syslog", "nf_log_ipv4", "nf_log_ipv6",
                   "/etc/modules-load.d/virtnet.conf", "/etc/sysctl.d/90-virtnet.conf"),
    "el7-1": ("nf_log_ipv4", "nf_log_ipv4", "nf_log_ipv6",
              "/etc/modules-load.d/virtnet.conf", "/etc/sysctl.d/90-virtnet.conf"),
    "el6-1": ("ipt_LOG", "ipt_LOG", "ip6t_LOG", "/etc/sysconfig/modules/virtnet.modules", "/etc/sysctl.conf"),
    # the userland personas (kernel 6.1 for debian11/13, 6.12 for el10: nf_log_syslog; el8's 4.18: nf_log_ipv4)
    "el8-1": ("nf_log_ipv4", "nf_log_ipv4", "nf_log_ipv6",
              "/etc/modules-load.d/virtnet.conf", "/etc/sysctl.d/90-virtnet.conf"),
}
for _h in ("debian11-1", "debian13-1", "el10-1"):
    EXPECT[_h] = EXPECT["debian12-1"]
# debian12, el7, el6, and the persona of $VIRTLAB_TARGET (make integration-userlands / integration-targets)
HOSTS = sorted(set(["debian12-1", "el7-1", "el6-1", TARGET_HOST]))


def ok(res):
    assert not res["failed"], res
    return res


def sysctl(lab, host, pf):
    return lab.exec(host, ["sysctl", "-n", "net.netfilter.nf_log.%d" % pf]).stdout.strip()


def read(lab, host, path):
    r = lab.exec(host, ["cat", path], check=False)
    return r.stdout if r.returncode == 0 else None


@pytest.mark.parametrize("host", HOSTS)
def test_binds_the_right_logger_and_persists(lab, run_module, host):
    module, log4, log6, modfile, sysfile = EXPECT[host]
    # start unbound and without our files, as on a fresh host
    ok(run_module(host, MOD, families=["ipv4", "ipv6"], state="absent", force=True))
    lab.exec(host, ["sysctl", "-w", "net.netfilter.nf_log.2=NONE"])
    lab.exec(host, ["sysctl", "-w", "net.netfilter.nf_log.10=NONE"])
    sysconf_before = read(lab, host, "/etc/sysctl.conf")

    res = ok(run_module(host, MOD, families=["ipv4", "ipv6"], check=True, diff=True))
    assert res["changed"] and sysctl(lab, host, 2) == "NONE"          # check mode: nothing applied

    res = ok(run_module(host, MOD, families=["ipv4", "ipv6"], diff=True))
    assert res["changed"]
    assert res["chosen"]["ipv4"]["module"] == module and res["chosen"]["ipv4"]["logger"] == log4
    assert res["chosen"]["ipv6"]["logger"] == log6
    assert res["chosen"]["ipv4"]["why"]
    assert sysctl(lab, host, 2) == log4 and sysctl(lab, host, 10) == log6
    assert res["families"]["ipv4"]["before"] == "NONE" and res["families"]["ipv4"]["after"] == log4
    assert ok(run_module(host, MOD, families=["ipv4", "ipv6"]))["changed"] is False

    res = ok(run_module(host, MOD, families=["ipv4", "ipv6"], persistent=True, diff=True))
    assert res["changed"] and sorted(res["files"]) == sorted([modfile, sysfile])
    mods = read(lab, host, modfile)
    assert module in mods
    assert "net.netfilter.nf_log.2 = %s" % log4 in read(lab, host, sysfile)
    if host.startswith("el6"):
        assert mods.startswith("#!/bin/sh")
        assert read(lab, host, sysfile).startswith(sysconf_before or "")
    assert ok(run_module(host, MOD, families=["ipv4", "ipv6"], persistent=True))["changed"] is False

    res = ok(run_module(host, MOD, families=["ipv4", "ipv6"], state="absent", diff=True))
    assert res["changed"]
    assert sysctl(lab, host, 2) == "NONE" and sysctl(lab, host, 10) == "NONE"
    assert read(lab, host, modfile) is None
    if host.startswith("el6"):
        assert read(lab, host, sysfile) == sysconf_before
    else:
        assert read(lab, host, sysfile) is None
    assert ok(run_module(host, MOD, families=["ipv4", "ipv6"], state="absent"))["changed"] is False
    # leave the host bound, as the other tests expect
    ok(run_module(host, MOD, families=["ipv4", "ipv6"]))


def test_netns_is_reported_on_a_modern_kernel(lab, run_module):
    res = ok(run_module("debian12-1", MOD, families=["ipv4"], all_netns=True))
    assert res["netns"]["in_netns"] is True and res["netns"]["needed"] is True
    assert any("nf_log_all_netns" in w for w in res.get("warnings", []))


def test_binding_held_by_another_logger(lab, run_module):
    host = "debian12-1"
    lab.exec(host, ["sysctl", "-w", "net.netfilter.nf_log.2=nfnetlink_log"])
    try:
        res = run_module(host, MOD, families=["ipv4"])
        assert res["failed"] and "nfnetlink_log" in res["msg"] and "force" in res["msg"]
        assert sysctl(lab, host, 2) == "nfnetlink_log"
        res = ok(run_module(host, MOD, families=["ipv4"], force=True))
        assert res["changed"] and sysctl(lab, host, 2) == "nf_log_ipv4"
    finally:
        lab.exec(host, ["sysctl", "-w", "net.netfilter.nf_log.2=nf_log_ipv4"])


def test_arp_on_el6_is_a_clear_error(lab, run_module):
    res = run_module("el6-1", MOD, families=["arp"])
    assert res["failed"] and "arp" in res["msg"] and "2.6.32" in res["msg"]


def test_module_that_cannot_be_loaded_names_module_and_kernel(lab, run_module):
    """el6: ipt_LOG must be loaded when nothing is bound; make the persona's modprobe not know it (the
    wrapper reads the module names the persona's kernel has from /etc/virtlab/modules)."""
    host = "el6-1"
    lab.exec(host, ["sysctl", "-w", "net.netfilter.nf_log.2=NONE"])
    lab.exec(host, ["sh", "-c", "cp /etc/virtlab/modules /tmp/modules.orig && "
                                "grep -vx ipt_LOG /tmp/modules.orig > /etc/virtlab/modules"])
    assert lab.exec(host, ["modprobe", "ipt_LOG"], check=False).returncode != 0, "the wrapper still knows ipt_LOG"
    try:
        res = run_module(host, MOD, families=["ipv4"])
        assert res["failed"]
        assert "ipt_LOG" in res["msg"] and "2.6.32-754.el6.x86_64" in res["msg"], res["msg"]
        assert lab.exec(host, ["sysctl", "-n", "net.netfilter.nf_log.2"]).stdout.strip() == "NONE"
    finally:
        lab.exec(host, ["cp", "/tmp/modules.orig", "/etc/virtlab/modules"])
        ok(run_module(host, MOD, families=["ipv4"]))


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_persistent_write_that_fails_is_clear_and_leaves_no_partial_file(lab, run_module, fault):
    """persistent: true where /etc/sysctl.d cannot be written (mounted read-only, or a full filesystem):
    a clear error naming the file and the reason, no file and no temporary file left behind."""
    host, path = "el7-1", "/etc/sysctl.d/90-virtnet.conf"
    ok(run_module(host, MOD, families=["ipv4"], state="absent", force=True))
    lab.exec(host, ["sysctl", "-w", "net.netfilter.nf_log.2=NONE"])
    opts = "ro,size=64k" if fault == "read-only" else "size=4k"
    lab.exec(host, ["mount", "-t", "tmpfs", "-o", opts, "virtnet-fault", "/etc/sysctl.d"])
    try:
        if fault == "full":  # fill it: a 4 KiB tmpfs holds one page
            lab.exec(host, ["sh", "-c", "dd if=/dev/zero of=/etc/sysctl.d/fill bs=1k count=64 2>/dev/null; true"])
        res = run_module(host, MOD, families=["ipv4"], persistent=True)
        assert res["failed"], res
        assert "cannot write %s" % path in res["msg"], res["msg"]
        reason = "Read-only file system" if fault == "read-only" else "No space left on device"
        assert reason in res["msg"] and "(nothing was changed)" in res["msg"], res
        assert sysctl(lab, host, 2) == "NONE", "the runtime binding was made although the files were not"
        assert read(lab, host, "/etc/modules-load.d/virtnet.conf") is None, "a file was written, another not"
        left = lab.exec(host, ["sh", "-c", "ls -A /etc/sysctl.d | grep -v '^fill$' || true"]).stdout.split()
        assert left == [], left
    finally:
        lab.exec(host, ["umount", "/etc/sysctl.d"], check=False)
    assert read(lab, host, path) is None
