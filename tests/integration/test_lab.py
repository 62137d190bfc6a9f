# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab itself: hosts reachable over SSH, own libvirtd/iptables each, personas, guests, clean down."""
import os
import re
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))
import virtlab  # noqa: E402

from labansible import ansible_env, _bin  # noqa: E402

HOSTS = ["debian12-1", "el7-1", "el6-1"]


def adhoc(lab, pattern, *args):
    env = ansible_env(lab, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal", ANSIBLE_LOAD_CALLBACK_PLUGINS="0")
    return subprocess.run([_bin("ansible"), "-i", lab.inventory_path, pattern] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          env=env, timeout=300, check=False)


def test_three_hosts_up(lab):
    st = lab.status()
    assert list(st["hosts"]) == HOSTS
    for h, info in st["hosts"].items():
        assert info["ready"], info
        assert all(info["daemons"].values()), (h, info["daemons"])
    inv = open(lab.inventory_path).read()
    for group in ("hypervisors:", "debian12:", "el7:", "el6:"):
        assert group in inv


def test_up_is_idempotent_and_fast(lab):
    before = lab.state()
    t0 = time.time()
    assert lab.up(personas=["debian12", "el7", "el6"]) == lab.inventory_path
    assert time.time() - t0 < 5
    assert lab.state()["hosts"] == before["hosts"]


def test_ansible_ping_over_ssh(lab):
    p = adhoc(lab, "debian12,el7", "-m", "ping")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("SUCCESS") == 2, p.stdout


def test_el6_raw_works_and_ping_fails_without_python(lab):
    p = adhoc(lab, "el6", "-m", "raw", "-a", "cat /etc/redhat-release")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "CentOS release 6.10 (Final)" in p.stdout
    p = adhoc(lab, "el6", "-m", "ping")
    assert p.returncode != 0
    assert "python2.6-does-not-exist" in p.stdout + p.stderr or "FAILED" in p.stdout


def test_run_module_fixture(run_module):
    res = run_module("debian12-1", "ansible.builtin.command", cmd="hostname")
    assert not res["failed"], res
    assert res["stdout"] == "debian12-1"
    res = run_module("el6-1", "ansible.builtin.raw", _raw_params="uname -r")
    assert not res["failed"], res
    assert res["stdout"].strip() == "2.6.32-754.el6.x86_64"
    res = run_module("el7-1", "ansible.builtin.command", cmd="false")
    assert res["failed"] and res["rc"] == 1


def test_run_playbook_fixture(run_playbook):
    out = run_playbook("""
- hosts: debian12,el7
  gather_facts: false
  tasks:
    - name: read osrelease
      ansible.builtin.command: cat /proc/sys/kernel/osrelease
      changed_when: false
""", limit="debian12-1,el7-1")
    assert out["rc"] == 0, out["stderr"]
    res = out["results"]["read osrelease"]
    assert res["el7-1"]["stdout"] == "3.10.0-1160.el7.x86_64"
    assert res["debian12-1"]["stdout"] == open("/proc/sys/kernel/osrelease").read().strip()
    assert out["stats"]["el7-1"]["failures"] == 0


@pytest.mark.parametrize("host", HOSTS)
def test_each_host_has_its_own_libvirtd_with_default_network(lab, host):
    p = lab.exec(host, ["virsh", "-c", "qemu:///system", "net-list"])
    assert re.search(r"^\s*default\s+active\s+yes", p.stdout, re.M), p.stdout
    assert lab.exec(host, ["hostname"]).stdout.strip() == host
    links = lab.exec(host, ["ip", "-o", "link"]).stdout
    assert "virbr0" in links and "bond0" in links and "eth0" in links
    # libvirt's NAT rules are in this host's firewall
    assert "LIBVIRT_PRT" in lab.exec(host, ["iptables-save", "-t", "nat"]).stdout


def test_personas_probe_visible_facts(lab):
    def sh(host, cmd):
        return lab.exec(host, ["sh", "-c", cmd], check=False)

    real = open("/proc/sys/kernel/osrelease").read().strip()
    assert sh("debian12-1", "cat /proc/sys/kernel/osrelease").stdout.strip() == real
    assert 'ID=debian' in sh("debian12-1", "cat /etc/os-release").stdout
    assert sh("debian12-1", "test -e /etc/redhat-release").returncode == 1
    assert "(nf_tables)" in sh("debian12-1", "iptables --version").stdout

    assert sh("el7-1", "cat /proc/sys/kernel/osrelease").stdout.strip() == "3.10.0-1160.el7.x86_64"
    assert sh("el7-1", "uname -r").stdout.strip() == "3.10.0-1160.el7.x86_64"
    assert sh("el7-1", "cat /etc/redhat-release").stdout == "CentOS Linux release 7.9.2009 (Core)\n"
    assert sh("el7-1", "cat /etc/centos-release").stdout == "CentOS Linux release 7.9.2009 (Core)\n"
    assert 'VERSION_ID="7"' in sh("el7-1", "cat /etc/os-release").stdout
    assert sh("el7-1", "iptables --version").stdout.strip() == "iptables v1.4.21"
    assert sh("el7-1", "test -e /etc/debian_version").returncode == 1
    assert sh("el7-1", "command -v nft").returncode != 0

    assert sh("el6-1", "cat /proc/sys/kernel/osrelease").stdout.strip() == "2.6.32-754.el6.x86_64"
    assert sh("el6-1", "cat /etc/redhat-release").stdout == "CentOS release 6.10 (Final)\n"
    assert sh("el6-1", "test -e /etc/os-release").returncode == 1
    assert sh("el6-1", "iptables --version").stdout.strip() == "iptables v1.4.7"
    assert sh("el6-1", "iptables-save -t filter").stdout.startswith("# Generated by iptables-save v1.4.7 on")
    assert "unknown option" in sh("el6-1", "iptables -w -L -n").stderr
    for py in ("python", "python2", "python3"):
        assert sh("el6-1", "command -v %s" % py).returncode != 0, py

    # the legacy backend is really in use: rules added via `iptables` are visible to
    # iptables-legacy-save from outside, not in the nft ruleset of that netns
    lab.exec("el7-1", ["iptables", "-N", "VL_PROBE"])
    try:
        legacy = subprocess.run(["nsenter", "--net=/run/netns/%s" % lab.host_netns("el7-1"),
                                 "iptables-legacy-save", "-t", "filter"], stdout=subprocess.PIPE,
                                universal_newlines=True, check=False).stdout
        nft = subprocess.run(["nsenter", "--net=/run/netns/%s" % lab.host_netns("el7-1"),
                              "nft", "list", "ruleset"], stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout
        assert ":VL_PROBE" in legacy
        assert "VL_PROBE" not in nft
    finally:
        lab.exec("el7-1", ["iptables", "-X", "VL_PROBE"])


def test_personas_modprobe_and_sysctl(lab):
    def rc(host, cmd):
        return lab.exec(host, ["sh", "-c", cmd], check=False)

    assert rc("el7-1", "modprobe nf_log_ipv4").returncode == 0
    p = rc("el7-1", "modprobe ipt_nosuch")
    assert p.returncode == 1 and p.stderr.strip() == "modprobe: FATAL: Module ipt_nosuch not found."
    assert rc("el6-1", "modprobe ipt_LOG").returncode == 0
    p = rc("el6-1", "modprobe nf_log_ipv4")
    assert p.returncode == 1 and "FATAL: Module nf_log_ipv4 not found." in p.stderr
    assert rc("el6-1", "modprobe xt_LOG").returncode == 1
    assert rc("debian12-1", "modprobe nf_log_syslog").returncode == 0
    # el6: logger names as a 2.6.32 kernel shows them
    try:
        assert rc("el6-1", "sysctl -w net.netfilter.nf_log.2=ipt_LOG").returncode == 0
        assert rc("el6-1", "sysctl -n net.netfilter.nf_log.2").stdout.strip() == "ipt_LOG"
        assert rc("el6-1", "cat /proc/sys/net/netfilter/nf_log/2").stdout.strip() == "nf_log_ipv4"
        assert rc("el7-1", "sysctl -n net.netfilter.nf_log.2").stdout.strip() in ("NONE", "nf_log_ipv4")
    finally:
        rc("el6-1", "sysctl -w net.netfilter.nf_log.2=NONE")
    with open("/proc/sys/net/netfilter/nf_log_all_netns") as f:
        assert f.read().strip() == "1"


def test_host_log_lines_reach_dmesg(lab):
    """nf_log_all_netns=1: a LOG rule inside a host writes to the kernel log the controller reads."""
    tag = "VLDMESG%d " % (os.getpid() % 100000)
    rule = ["OUTPUT", "-p", "tcp", "--dport", "9", "-j", "LOG", "--log-prefix", tag]
    lab.exec("el7-1", ["iptables", "-I"] + rule)
    try:
        lab.exec("el7-1", ["/usr/bin/python3", "-c", "import socket; s=socket.socket(); s.settimeout(2);"
                           " s.connect_ex(('10.44.32.1', 9))"])
        deadline = time.time() + 5
        while time.time() < deadline:
            out = subprocess.run(["dmesg"], stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout
            if tag.strip() in out:
                break
            time.sleep(0.2)
        line = [l for l in out.splitlines() if tag.strip() in l][-1]
        assert "OUT=bond0" in line and "DPT=9" in line
        assert "SRC=%s" % lab.state()["hosts"]["el7-1"]["bond0_ip"] in line
    finally:
        lab.exec("el7-1", ["iptables", "-D"] + rule)


def test_hosts_are_isolated(lab):
    a, b = "debian12-1", "el7-1"
    lab.exec(a, ["iptables", "-N", "VL_ISOLATION"])
    xml = os.path.join(lab.dir, "vliso.xml")
    with open(xml, "w") as f:
        f.write("<network><name>vliso</name><bridge name='vlisobr0'/>"
                "<ip address='192.168.251.1' netmask='255.255.255.0'/></network>")
    try:
        lab.exec(a, ["virsh", "-c", "qemu:///system", "net-create", xml])
        assert "VL_ISOLATION" in lab.exec(a, ["iptables-save"]).stdout
        assert "VL_ISOLATION" not in lab.exec(b, ["iptables-save"]).stdout
        assert "vliso" in lab.exec(a, ["virsh", "-c", "qemu:///system", "net-list", "--name"]).stdout
        assert "vliso" not in lab.exec(b, ["virsh", "-c", "qemu:///system", "net-list", "--all", "--name"]).stdout
        assert "vlisobr0" in lab.exec(a, ["ip", "-o", "link"]).stdout
        assert "vlisobr0" not in lab.exec(b, ["ip", "-o", "link"]).stdout
        assert "vlisobr0" not in subprocess.run(["ip", "-o", "link"], stdout=subprocess.PIPE,
                                                universal_newlines=True, check=False).stdout
        assert os.listdir("/sys/class/net").count("vlisobr0") == 0
        # own /etc/libvirt, /var/lib/libvirt, /run/libvirt
        assert lab.exec(a, ["sh", "-c", "ls /run/libvirt/network"]).stdout != ""
        assert lab.exec(a, ["hostname"]).stdout != lab.exec(b, ["hostname"]).stdout
    finally:
        lab.exec(a, ["virsh", "-c", "qemu:///system", "net-destroy", "vliso"], check=False)
        lab.exec(a, ["iptables", "-X", "VL_ISOLATION"], check=False)


def test_ns_guest_is_masqueraded_to_the_uplink(lab):
    g = lab.guest_add("itg1", "debian12-1")
    try:
        assert g["ip"].startswith("192.168.122.")
        n = len(lab.uplink_connections())
        p = lab.guest_exec("itg1", ["/usr/bin/python3", "-c",
                                    "import socket; s=socket.create_connection(('10.44.32.217', 3128), timeout=10);"
                                    " print(s.getsockname()[0]); print(s.recv(64).decode())"])
        assert p.stdout.split()[0] == g["ip"]
        assert "virtlab-uplink" in p.stdout
        conns = lab.uplink_connections()[n:]
        assert conns, "uplink saw no connection"
        bond0 = lab.state()["hosts"]["debian12-1"]["bond0_ip"]
        assert conns[-1]["src"] == bond0 and conns[-1]["dst"] == "10.44.32.217"
        # the uplink has no route back to the guests' subnet
        assert "192.168.122" not in lab.uplink_exec(["ip", "route"]).stdout
    finally:
        lab.guest_del("itg1")
    assert "itg1" not in lab.state()["guests"]
    assert not os.path.exists("/run/netns/vn-%s-g-itg1" % lab.name)


def test_qemu_guest_tap_on_virbr0(lab):
    g = lab.guest_add("itq1", "el7-1", kind="qemu")
    try:
        assert re.match(r"^vnet\d+$", g["tap"]), g
        assert g["tap"] in lab.exec("el7-1", ["ls", "/sys/class/net/virbr0/brif"]).stdout.split()
        assert "master virbr0" in lab.exec("el7-1", ["bridge", "link", "show", "dev", g["tap"]]).stdout
        assert g["mac"].startswith("52:54:00:")
        assert "running" in lab.exec("el7-1", ["virsh", "-c", "qemu:///system", "domstate", "itq1"]).stdout
    finally:
        lab.guest_del("itq1")
    assert "itq1" not in lab.exec("el7-1", ["virsh", "-c", "qemu:///system", "list", "--all", "--name"]).stdout


def _root_snapshot(name):
    """Root namespace state: full interface/address/firewall listings, plus whatever mentions
    lab NAME among namespaces, mounts and /run (other labs may come and go meanwhile)."""
    def run(argv):
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, check=False).stdout

    def ours(line):
        return ("vn-%s-" % name) in line or ("virtnet-%s" % name) in line
    return {
        "link": sorted(re.sub(r"^\d+: ", "", l) for l in run(["ip", "-o", "link"]).splitlines()),
        "addr": sorted(re.sub(r"^\d+: ", "", l) for l in run(["ip", "-o", "addr"]).splitlines()),
        "iptables": [l for l in run(["iptables-save"]).splitlines() if not l.startswith("#")],
        "iptables-legacy": [l for l in run(["iptables-legacy-save"]).splitlines() if not l.startswith("#")],
        "nft": run(["nft", "list", "ruleset"]).splitlines(),
        "netns": sorted(l for l in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else []) if ours(l)),
        "mounts": sorted(l for l in open("/proc/self/mounts").read().splitlines() if ours(l)),
        "run": sorted(x for x in os.listdir("/run") if ours(x)),
    }


def test_down_leaves_nothing(lab):
    """A second, small lab: up, a guest of each kind, down; root namespace as before."""
    name = "itdn%d" % (os.getpid() % 1000)
    small = virtlab.Lab(name)
    assert not small.is_up()
    before = _root_snapshot(name)
    t0 = time.time()
    small.up(personas=["el6"])
    up_time = time.time() - t0
    small.guest_add("g1", "el6-1")
    small.guest_add("q1", "el6-1", kind="qemu")
    assert os.path.exists("/run/netns/vn-%s-g-g1" % name)
    small.down()
    after = _root_snapshot(name)
    for key in before:
        assert before[key] == after[key], key
    assert not os.path.exists(small.dir)
    assert not [n for n in os.listdir("/run/netns") if n.startswith("vn-%s-" % name)]
    # no process is left in a namespace of that lab (checked by name: its state dir is gone)
    ps = subprocess.run(["ps", "-eo", "stat=,args="], stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout
    assert not [l for l in ps.splitlines() if "virtnet-%s/" % name in l and not l.startswith("Z")]
    assert up_time < 30
    # the session lab is untouched
    assert lab.is_up() and lab.status()["hosts"]["debian12-1"]["ready"]
