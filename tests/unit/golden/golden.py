# SPDX-License-Identifier: GPL-3.0-or-later
"""Golden outputs of the libvirt modules and of the trace report: a net for refactors.

``records()`` drives each libvirt module's real front end (``main()`` of network, network_info and
guest_interface, through ``AnsibleModule`` with the module arguments patched in) against the fake
libvirt connections, fake hosts and fixtures of the unit tests, scenario after scenario, and keeps
the whole result dict each run prints (changed, changes, xml, diff, warnings, msg, ...), failures
included. ``trace_records()`` parses every trace/capture fixture and keeps a SHA-256 of the parsed
and annotated packets, of the text report and of the HTML report. ``capture_records()`` builds, for
every such fixture, the ``trace_result`` trace_capture returns (packets parsed and annotated as
trace_capture does, ``explanation``/``culprits`` from the report's ``explain``) and
keeps the explanation lines and what the role's ``roles/trace/templates/paths.j2`` and the demo's
``playbooks/templates/explain.j2`` render from it (Jinja2 with Ansible's template-lookup defaults).

test_golden.py compares both with the committed files. Regenerate only when an output change is
intended, and say which in the commit message:

    .venv/bin/python tests/unit/golden/golden.py --update-golden
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
UNIT = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(UNIT))
LIBVIRT_TESTS = os.path.join(UNIT, "plugins", "module_utils", "libvirt")
LIBVIRT_GOLDEN = os.path.join(HERE, "libvirt_modules.json")
TRACE_GOLDEN = os.path.join(HERE, "trace_report.json")
CAPTURE_GOLDEN = os.path.join(HERE, "trace_capture.json")

sys.path.insert(0, os.path.join(ROOT, "build", "collections"))
sys.path.insert(0, LIBVIRT_TESTS)

from ansible.module_utils import basic  # noqa: E402
from ansible.module_utils.common import warnings  # noqa: E402

try:
    from ansible.module_utils import _internal  # ansible-core 2.19
except ImportError:  # 2.16
    _internal = None

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt import _domain as D  # noqa: E402
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt import _network_manager as M  # noqa: E402
from ansible_collections.virtops.virtnet.plugins.modules import guest_interface as gi_module  # noqa: E402
from ansible_collections.virtops.virtnet.plugins.modules import network as net_module  # noqa: E402
from ansible_collections.virtops.virtnet.plugins.modules import network_info as info_module  # noqa: E402

import test_interface_manager as TI  # noqa: E402
import test_network_manager as TN  # noqa: E402


# ------------------------------------------------------------------------------------------------ driving main()
class _Patch:
    """Set attributes for the duration of a run, put them back afterwards."""

    def __init__(self):
        self.saved = []

    def set(self, obj, name, value):
        self.saved.append((obj, name, getattr(obj, name, _Patch), ))
        setattr(obj, name, value)

    def undo(self):
        for obj, name, value in reversed(self.saved):
            if value is _Patch:
                delattr(obj, name)
            else:
                setattr(obj, name, value)


FIREWALL = {
    "iptables-save": "\n".join([
        "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":LIBVIRT_FWO - [0:0]",
        "[5:300] -A LIBVIRT_FWO -s 192.168.122.0/24 -i virbr0 -j ACCEPT",
        "[0:0] -A LIBVIRT_FWO -i virbr0 -j REJECT --reject-with icmp-port-unreachable", "COMMIT",
        "*nat", ":POSTROUTING ACCEPT [0:0]", ":LIBVIRT_PRT - [0:0]",
        "[2:120] -A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE", "COMMIT", ""]),
    "ip6tables-save": "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n",
    "nft list tables": "table ip libvirt_network\ntable inet filter\n",
    "nft -a list table ip libvirt_network": "\n".join([
        "table ip libvirt_network { # handle 7",
        "\tchain guest_nat { # handle 5",
        "\t\tip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 counter packets 3 bytes 180 masquerade # handle 16",
        "\t}", "}", ""]),
}


def _messages(items):
    """Warnings and deprecations as their text: a list of str (ansible-core 2.16) or of summaries (2.19)."""
    out = []
    for item in items:
        if isinstance(item, dict):
            item = (item.get("event") or {}).get("msg") or item.get("msg")
        out.append(item)
    return out


def _run_main(main, args, check=False, diff=True, patch=None):
    """Run a module's main() with ``args``; return the result dict it prints (exit_json or fail_json)."""
    warnings._global_warnings.clear()  # AnsibleModule keeps them process-wide: each run starts with none
    warnings._global_deprecations.clear()
    payload = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    p = patch or _Patch()
    if hasattr(_internal, "is_controller"):  # ansible-core 2.19: once controller code is imported (by other tests),
        p.set(_internal, "is_controller", False)  # module warnings would go to Display, not into the result
    p.set(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": payload}).encode("utf-8"))
    if hasattr(basic, "_ANSIBLE_PROFILE"):
        p.set(basic, "_ANSIBLE_PROFILE", "legacy")

    def get_bin_path(self, arg, required=False, opt_dirs=None):
        return "/usr/sbin/" + arg

    def run_command(self, argv, **kwargs):
        key = " ".join([os.path.basename(argv[0])] + [a for a in argv[1:] if a != "-c"])
        if key in FIREWALL:
            return 0, FIREWALL[key], ""
        return 0, "", ""
    p.set(basic.AnsibleModule, "get_bin_path", get_bin_path)
    p.set(basic.AnsibleModule, "run_command", run_command)
    p.set(M, "open", _no_network_conf)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            try:
                main()
            except SystemExit:
                pass
    finally:
        p.undo()
    result = json.loads(out.getvalue())
    result.pop("invocation", None)
    for key in ("warnings", "deprecations"):
        if key in result:
            result[key] = _messages(result[key])
    if "exception" in result:
        result["exception"] = result["exception"].strip().splitlines()[-1]
    return result


def _no_network_conf(path, *args, **kwargs):
    if path == "/etc/libvirt/network.conf":
        return io.StringIO("firewall_backend = 'nftables'\n")
    return open(path, *args, **kwargs)


# ------------------------------------------------------------------------------------------------ network
def _network_host(patch, host):
    host.link_mac = lambda dev: "fe:54:00:00:00:%02x" % (sum(map(ord, dev)) % 256)
    patch.set(M, "HostView", lambda: host)


def _network_run(conn, args, check=False, host=None):
    p = _Patch()
    p.set(net_module, "connect", lambda module, uri=None: conn)
    _network_host(p, host or TN.fake_host())
    return _run_main(net_module.main, args, check=check, patch=p)


def _info_run(conn, args, host=None):
    p = _Patch()
    p.set(info_module, "connect", lambda module, uri=None: conn)
    _network_host(p, host or TN.fake_host())
    return _run_main(info_module.main, args, patch=p)


NEW = dict(TN.NEW)
ROUTED = dict(name="routed", bridge={"name": "virbr20"}, forward="route", forward_dev="bond0",
              ips=[{"address": "10.77.0.1", "prefix": 24, "ranges": [{"start": "10.77.0.10", "end": "10.77.0.50"}]}],
              dns={"hosts": [{"ip": "10.77.0.5", "hostnames": ["db"]}]},
              portgroups=[{"name": "web", "default": True}])


def network_records():
    out = {}
    conn = TN.FakeConn()
    seq = [
        ("create.check", NEW, True),
        ("create", NEW, False),
        ("create.again", NEW, False),
        ("dhcp_host.check", dict(NEW, ips=[dict(NEW["ips"][0], hosts=[{"mac": "52:54:00:00:00:09", "ip": "192.168.100.9"}])]), True),
        ("dhcp_host", dict(NEW, ips=[dict(NEW["ips"][0], hosts=[{"mac": "52:54:00:00:00:09", "ip": "192.168.100.9"}])]), False),
        ("mtu.refused", dict(NEW, mtu=9000), False),
        ("mtu.restart.check", dict(NEW, mtu=9000, restart="if_needed"), True),
        ("mtu.restart", dict(NEW, mtu=9000, restart="if_needed"), False),
        ("inactive", dict(NEW, mtu=9000, active=False, autostart=True), False),
        ("active_again", dict(NEW, mtu=9000), False),
        ("routed", ROUTED, False),
        ("routed.again", ROUTED, False),
        ("no_prefix", dict(name="noprefix", bridge={"name": "virbr30"}, ips=[{"address": "10.88.0.1"}]), True),
        ("no_prefix_b", dict(name="noprefixb", bridge={"name": "virbr31"}, ips=[{"address": "172.20.0.1"}]), True),
        ("ipv6", dict(name="v6", bridge={"name": "virbr32"}, ips=[{"address": "fd00:77::1", "prefix": 64, "family": "ipv6"}]), True),
        ("xml", dict(xml="<network><name>raw</name><bridge name='virbr33'/><forward mode='nat'/>"
                         "<ip address='10.99.0.1' netmask='255.255.255.0'/></network>"), False),
        ("xml.again", dict(xml="<network><name>raw</name><bridge name='virbr33'/><forward mode='nat'/>"
                               "<ip address='10.99.0.1' netmask='255.255.255.0'/></network>"), False),
        ("conflict.bridge", dict(NEW, name="dup", bridge={"name": "virbr0"}), False),
        ("conflict.overlap", dict(NEW, name="dup", bridge={"name": "virbr40"}, ips=[{"address": "192.168.122.201", "prefix": 30}]), False),
        ("conflict.route", dict(NEW, name="dup", bridge={"name": "virbr40"}, ips=[{"address": "10.44.32.77", "prefix": 28}]), False),
        ("conflict.forward_dev", dict(NEW, name="dup", bridge={"name": "virbr40"}, forward="route", forward_dev="eth5"), False),
        ("conflict.host_link", dict(NEW, name="dup", bridge={"name": "eth0"}), False),
        ("bad.range", dict(NEW, name="bad", bridge={"name": "virbr41"},
                           ips=[{"address": "10.66.0.1", "prefix": 24, "ranges": [{"start": "10.67.0.1", "end": "10.67.0.9"}]}]), False),
        ("bad.mac", dict(NEW, name="bad", bridge={"name": "virbr41"}, mac="zz"), False),
        ("bad.xml", dict(xml="<network><name>x</name"), False),
        ("macvtap", dict(name="mv", forward="bridge", forward_dev="eth0"), False),
        ("no_prefix_c", dict(name="noprefixc", bridge={"name": "virbr34"}, ips=[{"address": "192.168.150.1"}]), True),
        ("absent.check", dict(name="lab", state="absent"), True),
        ("absent", dict(name="lab", state="absent"), False),
        ("absent.again", dict(name="lab", state="absent"), False),
    ]
    for label, args, check in seq:
        out["network/" + label] = _network_run(conn, args, check=check)
    # the restart that puts running guests' taps back
    conn = TN.FakeConn()
    _network_run(conn, NEW)
    host = TN.fake_host(links=("lo", "eth0", "bond0", "virbr0", "vnet3", "vnet4"))
    host.running_guest_ports = lambda c, name, br: (
        {"vnet3": {"domain": "q1", "mac": "52:54:00:00:00:33"}} if name == "lab" else {})
    host.bridge_ports = lambda br: ["vnet3"] if br == "virbr10" else []
    out["network/restart_with_guest"] = _network_run(conn, dict(NEW, mtu=1400, restart="if_needed"), host=host)
    return out


def network_info_records():
    conn = TN.FakeConn()
    _network_run(conn, NEW)
    _network_run(conn, ROUTED)
    host = TN.fake_host()
    host.running_guest_ports = lambda c, name, br: (
        {"vnet0": {"domain": "g1", "mac": "52:54:00:00:00:10"}} if name == "default" else {})
    host.bridge_ports = lambda br: ["vnet0", "vnet1"] if br == "virbr0" else []
    leases = _Patch()
    leases.set(TN.FakeNet, "DHCPLeases", lambda self: [
        {"mac": "52:54:00:00:00:10", "ipaddr": "192.168.122.10", "prefix": 24, "hostname": "g1", "clientid": None,
         "iaid": None, "expirytime": 1700000000, "type": 0, "iface": "virbr0"}] if self.name() == "default" else [])
    try:
        return {
            "network_info/all": _info_run(conn, {}, host=host),
            "network_info/one_no_firewall": _info_run(conn, {"name": "lab", "firewall": False}, host=host),
            "network_info/missing": _info_run(conn, {"name": "nope"}, host=host),
        }
    finally:
        leases.undo()


# ------------------------------------------------------------------------------------------------ guest_interface
def _gi_run(conn, args, check=False):
    p = _Patch()
    p.set(gi_module, "connect", lambda module, uri=None: conn)
    p.set(D, "HostView", TI.FakeHost)
    args = dict(args)
    args.setdefault("unplug_timeout", 0)
    random.seed(14)
    return _run_main(gi_module.main, args, check=check, patch=p)


def guest_interface_records():
    out = {}
    net_if = TI.NET_IF

    def conn_with(*doms):
        return TI.FakeConn(*doms)

    # a stopped domain: add, again, update, remove
    conn = conn_with(TI.FakeDomain("g"), TI.FakeDomain("other", ifaces=net_if.replace(":01", ":77")))
    seq = [
        ("stopped.add.check", dict(domain="g", type="network", source="default", mac="52:54:00:aa:00:01"), True),
        ("stopped.add", dict(domain="g", type="network", source="default", mac="52:54:00:aa:00:01"), False),
        ("stopped.add.again", dict(domain="g", type="network", source="default", mac="52:54:00:aa:00:01"), False),
        ("stopped.update", dict(domain="g", type="network", source="default", mac="52:54:00:aa:00:01",
                                link_state="down", mtu=1400,
                                bandwidth={"inbound": {"average": 1000, "peak": 2000, "burst": 64}}), False),
        ("stopped.random_mac", dict(domain="g", type="bridge", source="br0", model="e1000e"), False),
        ("stopped.ovs", dict(domain="g", type="bridge", source="br0", mac="52:54:00:aa:00:03",
                             virtualport={"type": "openvswitch", "interfaceid": "09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f"}), False),
        ("stopped.direct", dict(domain="g", type="direct", source="eth0", mode="bridge", mac="52:54:00:aa:00:04"), False),
        ("stopped.filter", dict(domain="g", type="network", source="default", mac="52:54:00:aa:00:05",
                                filterref={"filter": "clean-traffic", "parameters": {"IP": "192.168.122.5"}}), False),
        ("stopped.vhostuser", dict(domain="g", type="vhostuser", path="/run/s.sock", mode="server", queues=2,
                                   ensure_shared_memory=True, mac="52:54:00:aa:00:06"), False),
        ("stopped.remove.check", dict(domain="g", mac="52:54:00:aa:00:01", state="absent"), True),
        ("stopped.remove", dict(domain="g", mac="52:54:00:aa:00:01", state="absent"), False),
        ("stopped.remove.again", dict(domain="g", mac="52:54:00:aa:00:01", state="absent"), False),
        ("err.domain", dict(domain="nope", type="network", source="default"), False),
        ("err.network", dict(domain="g", type="network", source="nonet"), False),
        ("err.bridge", dict(domain="g", type="bridge", source="nobr"), False),
        ("err.not_bridge", dict(domain="g", type="bridge", source="eth0"), False),
        ("err.direct", dict(domain="g", type="direct", source="nodev", mode="bridge"), False),
        ("err.mac", dict(domain="g", type="network", source="default", mac="52:54:00:00:00"), False),
        ("err.dup_mac", dict(domain="g", type="network", source="default", mac="52:54:00:00:00:77"), False),
        ("err.path", dict(domain="g", type="vhostuser", path="sock", mode="client"), False),
        ("err.mode", dict(domain="g", type="bridge", source="br0", mode="vepa"), False),
        ("err.live_always", dict(domain="g", type="network", source="default", live="always"), False),
        ("remote_uri", dict(domain="g", type="direct", source="nodev", mode="vepa", mac="52:54:00:aa:00:07",
                            uri="qemu+ssh://root@far/system"), False),
    ]
    for label, args, check in seq:
        out["guest_interface/" + label] = _gi_run(conn, args, check=check)

    # a running domain: attach live first, live update, impossible change, refused update, unplug
    dom = TI.FakeDomain("r", ifaces=net_if, running=True)
    conn = conn_with(dom)
    seq = [
        ("running.attach.check", dict(domain="r", type="network", source="default", mac="52:54:00:bb:00:01"), True),
        ("running.attach", dict(domain="r", type="network", source="default", mac="52:54:00:bb:00:01"), False),
        ("running.link_down", dict(domain="r", type="network", source="default", mac="52:54:00:bb:00:01", link_state="down"), False),
        ("running.to_bridge", dict(domain="r", type="bridge", source="br0", mac="52:54:00:bb:00:01"), False),
        ("running.model.impossible", dict(domain="r", type="bridge", source="br0", mac="52:54:00:bb:00:01", model="e1000e"), False),
        ("running.model.fail", dict(domain="r", type="bridge", source="br0", mac="52:54:00:bb:00:01", model="rtl8139",
                                    on_live_impossible="fail"), False),
        ("running.never", dict(domain="r", type="bridge", source="br0", mac="52:54:00:bb:00:01", mtu=1300, live="never"), False),
        ("running.unplug.pending", dict(domain="r", mac="52:54:00:00:00:01", state="absent"), False),
        ("running.unplug.pending.again", dict(domain="r", mac="52:54:00:00:00:01", state="absent"), False),
        ("running.present_while_pending", dict(domain="r", type="network", source="default", mac="52:54:00:00:00:01"), False),
    ]
    for label, args, check in seq:
        out["guest_interface/" + label] = _gi_run(conn, args, check=check)
    dom.unplug_completes = True
    out["guest_interface/running.unplug.completes"] = _gi_run(conn, dict(domain="r", mac="52:54:00:bb:00:01", state="absent"))
    dom.refuse_update = "Operation not supported: cannot modify network device link state"
    out["guest_interface/running.refused_update"] = _gi_run(
        conn, dict(domain="r", mac="52:54:00:00:00:01", type="network", source="default", link_state="down"))
    two = TI.FakeDomain("a", ifaces=net_if + net_if.replace(":01", ":02"), running=True)
    out["guest_interface/running.ambiguous"] = _gi_run(
        conn_with(two), dict(domain="a", type="network", source="default", state="absent"))
    dom2 = TI.FakeDomain("h", running=True)
    dom2.refuse_attach = "internal error: unable to execute QEMU command 'netdev_add'"
    out["guest_interface/running.hotplug_refused"] = _gi_run(
        conn_with(dom2), dict(domain="h", type="network", source="default", mac="52:54:00:cc:00:01"))
    dom3 = TI.FakeDomain("v", running=True)
    out["guest_interface/running.vhostuser_config_only"] = _gi_run(conn_with(dom3), dict(
        domain="v", type="vhostuser", path="/run/s.sock", mode="server", ensure_shared_memory=True, mac="52:54:00:cc:00:02"))
    return out


def records():
    out = {}
    out.update(network_records())
    out.update(network_info_records())
    out.update(guest_interface_records())
    return out


# ------------------------------------------------------------------------------------------------ trace report
def _sha(obj):
    text = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _trace_fixtures():
    """(name, text, el7 iptables-save text) of every trace/capture fixture."""
    fixtures = os.path.join(UNIT, "fixtures")
    with open(os.path.join(fixtures, "capture", "el7_iptables_save.txt"), encoding="utf-8") as fh:
        save = fh.read()
    for path in sorted(glob.glob(os.path.join(fixtures, "trace", "*.txt")) + glob.glob(os.path.join(fixtures, "capture", "*.txt"))):
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        yield "%s/%s" % (os.path.basename(os.path.dirname(path)), os.path.basename(path)), text, save


def trace_records():
    from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_parse as tp
    from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_report as rep
    out = {}
    for name, text, save in _trace_fixtures():
        parsed = tp.parse(text)
        packets = tp.annotate(tp.parse(text)["packets"], save)
        out[name] = {
            "packets": len(parsed["packets"]),
            "parse": _sha(parsed),
            "annotate": _sha(packets),
            "text": _sha(rep.render_text(packets, unparsed=parsed.get("unparsed"))),
            "html": _sha(rep.render_html(packets, title=name, unparsed=parsed.get("unparsed"))),
        }
    return out


def _render(template, variables):
    import jinja2
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.Undefined)
    with open(os.path.join(ROOT, template), encoding="utf-8") as fh:
        return env.from_string(fh.read()).render(**variables)


def capture_records():
    from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_parse as tp
    from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_report as rep
    out = {}
    for name, text, save in _trace_fixtures():
        packets = tp.annotate(tp.parse(text)["packets"], save)  # as trace_capture: parse, annotate (the NAT: the parser's)
        told = rep.explain(packets, None)
        result = dict(changed=True, source_used="kernel_log", tool="dmesg", packets=packets,
                      explanation=told["lines"], culprits=told["culprits"])
        if not packets:
            result["diagnosis"] = ["no matching traffic passed the host during the capture"]
        variables = dict(trace_result=result, inventory_hostname="golden-1", virtlab_persona="el7",
                         virtlab_uplink_ip="10.44.32.217")
        out[name] = {
            "explain": told["lines"],
            "culprits": _sha(told["culprits"]),
            "paths.j2": _render("roles/trace/templates/paths.j2", variables).splitlines(),
            "explain.j2": _render("playbooks/templates/explain.j2", variables).splitlines(),
        }
    return out


def _dump(obj, path):
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.write("\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update-golden"]:
        sys.exit("usage: golden.py --update-golden   (rewrites %s, %s and %s)"
                 % (LIBVIRT_GOLDEN, TRACE_GOLDEN, CAPTURE_GOLDEN))
    _dump(records(), LIBVIRT_GOLDEN)
    _dump(trace_records(), TRACE_GOLDEN)
    _dump(capture_records(), CAPTURE_GOLDEN)
