# SPDX-License-Identifier: GPL-3.0-or-later
"""virtlab: hypervisor hosts made of namespaces on one machine (test lab for virtops.virtnet).

Each lab host is a network namespace plus a persistent private mount + UTS namespace, in which
the lab runs Debian's real virtlogd, libvirtd and sshd. The controller reaches hosts over SSH
through a management namespace (ProxyCommand: relay.py). An uplink namespace stands for the
outside network. Guests are namespaces plugged into a libvirt bridge (kind=ns) or diskless
qemu/TCG domains (kind=qemu). Personas (debian12, el7, el8, el6) make a host look like that
distribution to a probe. See README.md beside this file.

Stdlib only; runs with any Python 3.6+ as root.

CLI:  virtlab.py [--lab NAME] up --hosts N --persona P ... | down | status | inventory
      | exec HOST -- CMD... | uplink -- CMD... | guest add NAME --host H [--network N] [--kind ns|qemu]
      | guest del NAME | guest exec NAME -- CMD...
API:  import virtlab; lab = virtlab.Lab('NAME'); lab.up(personas=[...]); lab.exec(host, argv) ...
"""
from __future__ import print_function

import argparse
import contextlib
import fcntl
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytargets  # tests/lab/pytargets.py: real CPython 2.7 / 3.6 targets (personas el7, el8)
import rootfs  # tests/lab/rootfs.py: the real Debian 11/13 userlands (personas debian11, debian13, el10)

HERE = os.path.dirname(os.path.abspath(__file__))
RELAY = os.path.join(HERE, "relay.py")
SYS_PYTHON = "/usr/bin/python3"  # Debian's python: relay + uplink listener run with it
UPLINK_GW = "10.44.32.1"
UPLINK_IP = "10.44.32.217"  # the seed's destination
UPLINK_PORT = 3128
UPLINK_NET = "10.44.32"
MGMT_NET = "172.31.255"
MGMT_GW = MGMT_NET + ".1"
SYSCTL_ALL_NETNS = "/proc/sys/net/netfilter/nf_log_all_netns"
SYSCTL_ORIG = "/run/virtnet.nf_log_all_netns.orig"  # shared by all labs: value before the first up
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,11}$")
OWN_NETNS_RE = re.compile(r"^(mgmt|uplink|g-[a-z0-9-]+|[a-z0-9]+-[0-9]+)$")  # after "vn-<lab>-"

# ---------------------------------------------------------------------------------------------
# Personas: what a probe sees. Pure data (unit-tested without root).
# ---------------------------------------------------------------------------------------------
_EL_COMMON_MODULES = [
    "nfnetlink", "nfnetlink_log", "nfnetlink_queue", "x_tables", "ip_tables", "ip6_tables",
    "iptable_filter", "iptable_nat", "iptable_mangle", "iptable_raw", "iptable_security",
    "ip6table_filter", "ip6table_mangle", "ip6table_raw", "ip6table_security",
    "nf_conntrack", "nf_conntrack_ipv4", "nf_conntrack_ipv6", "nf_defrag_ipv4", "nf_defrag_ipv6",
    "nf_nat", "nf_nat_ipv4", "xt_conntrack", "xt_state", "xt_comment", "xt_CHECKSUM",
    "xt_tcpudp", "xt_mark", "xt_multiport", "xt_physdev", "xt_addrtype", "xt_NFLOG", "xt_NFQUEUE",
    "ipt_MASQUERADE", "ipt_REJECT", "ip6t_REJECT", "xt_TRACE", "ipt_TRACE", "ip6t_TRACE",
    "ebtables", "ebtable_filter", "ebtable_nat", "ebtable_broute", "ebt_log", "ebt_nflog",
    "bridge", "tun", "vhost_net", "macvlan", "macvtap", "veth", "kvm", "kvm_intel", "kvm_amd",
    "8021q", "bonding",
]

PERSONAS = {
    "debian12": {
        "family": "debian",
        "release_files": {},  # untouched: Debian's own /etc/os-release, /etc/debian_version
        "hide_files": [],
        "osrelease": None,    # the real kernel release
        "iptables": None,     # Debian's alternatives: nft backend
        # Debian 12's kernel (6.1) names. This machine's kernel has everything built in and no
        # /lib/modules, where the real modprobe fails even for built-ins: emulated like el*.
        "modules": sorted(set(_EL_COMMON_MODULES + [
            "nf_log_syslog", "nf_log_ipv4", "nf_log_ipv6", "nf_log_arp", "nf_log_bridge",
            "nf_log_netdev", "xt_LOG", "ipt_LOG", "ip6t_LOG", "nf_nat_ipv6", "ip6table_nat",
            "xt_MASQUERADE", "br_netfilter", "nf_tables", "nft_compat", "nft_chain_nat", "nft_ct",
            "nft_log", "nft_masq", "nft_nat", "nft_reject", "nft_reject_inet", "nft_fib",
            "nft_fib_inet", "nf_reject_ipv4", "nf_reject_ipv6", "nf_conntrack_bridge",
        ]) - {"nf_conntrack_ipv4", "nf_conntrack_ipv6", "nf_nat_ipv4", "ipt_MASQUERADE"}),
        "modprobe_fatal": "modprobe: FATAL: Module %s not found in directory /lib/modules/6.1.0-28-amd64",
        "python": "/usr/bin/python3",
        "sysctl_map": {},
    },
    "el7": {
        "family": "redhat",
        "release_files": {
            "/etc/redhat-release": "CentOS Linux release 7.9.2009 (Core)\n",
            "/etc/centos-release": "CentOS Linux release 7.9.2009 (Core)\n",
            "/etc/system-release": "CentOS Linux release 7.9.2009 (Core)\n",
            "/etc/os-release": (
                'NAME="CentOS Linux"\nVERSION="7 (Core)"\nID="centos"\nID_LIKE="rhel fedora"\n'
                'VERSION_ID="7"\nPRETTY_NAME="CentOS Linux 7 (Core)"\nANSI_COLOR="0;31"\n'
                'CPE_NAME="cpe:/o:centos:centos:7"\nHOME_URL="https://www.centos.org/"\n'
                'BUG_REPORT_URL="https://bugs.centos.org/"\n'),
        },
        "hide_files": ["/etc/debian_version", "/etc/lsb-release"],
        "osrelease": "3.10.0-1160.el7.x86_64",
        "iptables": {"version": "1.4.21", "wait": True, "restore_wait": False},
        "modules": sorted(set(_EL_COMMON_MODULES + [
            "nf_log_ipv4", "nf_log_ipv6", "nf_log_bridge", "nf_log_arp", "nf_log_common",
            "xt_LOG", "ipt_LOG", "ip6t_LOG", "nf_nat_ipv6", "nf_nat_masquerade_ipv4",
            "ip6table_nat", "xt_MASQUERADE", "br_netfilter", "ebt_ulog",
        ])),
        "modprobe_fatal": "modprobe: FATAL: Module %s not found.",
        # under ansible-core <= 2.16 the real CPython 2.7 built by pytargets.py (see there)
        "python": "/usr/bin/python3",
        "sysctl_map": {},
    },
    "el8": {
        "family": "redhat",
        "release_files": {
            "/etc/redhat-release": "Rocky Linux release 8.10 (Green Obsidian)\n",
            "/etc/rocky-release": "Rocky Linux release 8.10 (Green Obsidian)\n",
            "/etc/system-release": "Rocky Linux release 8.10 (Green Obsidian)\n",
            "/etc/os-release": (
                'NAME="Rocky Linux"\nVERSION="8.10 (Green Obsidian)"\nID="rocky"\n'
                'ID_LIKE="rhel centos fedora"\nVERSION_ID="8.10"\nPLATFORM_ID="platform:el8"\n'
                'PRETTY_NAME="Rocky Linux 8.10 (Green Obsidian)"\nANSI_COLOR="0;32"\n'
                'CPE_NAME="cpe:/o:rocky:rocky:8:GA"\nHOME_URL="https://rockylinux.org/"\n'
                'BUG_REPORT_URL="https://bugs.rockylinux.org/"\n'),
        },
        "hide_files": ["/etc/debian_version", "/etc/lsb-release"],
        "osrelease": "4.18.0-553.el8_10.x86_64",
        "iptables": None,  # the real nft backend (Debian's 1.8.9; EL8 ships 1.8.5 nft-only)
        "hide_sbin": ["xtables-legacy-multi", "iptables-legacy", "iptables-legacy-save",
                      "iptables-legacy-restore", "ip6tables-legacy", "ip6tables-legacy-save",
                      "ip6tables-legacy-restore"],
        "modules": sorted(set(_EL_COMMON_MODULES + [
            "nf_log_ipv4", "nf_log_ipv6", "nf_log_bridge", "nf_log_arp", "nf_log_common", "nf_log_netdev",
            "xt_LOG", "ipt_LOG", "ip6t_LOG", "nf_nat_ipv6", "ip6table_nat", "xt_MASQUERADE", "br_netfilter",
            "nf_tables", "nf_tables_set", "nft_compat", "nft_chain_nat", "nft_ct", "nft_log", "nft_masq",
            "nft_nat", "nft_reject", "nft_reject_inet", "nft_fib", "nft_fib_inet", "nft_counter",
            "nf_reject_ipv4", "nf_reject_ipv6", "nf_conntrack_bridge",  # 4.18 still has nf_conntrack_ipv4
        ])),
        "modprobe_fatal": "modprobe: FATAL: Module %s not found in directory /lib/modules/4.18.0-553.el8_10.x86_64",
        # under ansible-core <= 2.16 the real CPython 3.6 built by pytargets.py (EL8's platform-python)
        "python": "/usr/bin/python3",
        "sysctl_map": {},
    },
    "el6": {
        "family": "redhat",
        "release_files": {
            "/etc/redhat-release": "CentOS release 6.10 (Final)\n",
            "/etc/centos-release": "CentOS release 6.10 (Final)\n",
            "/etc/system-release": "CentOS release 6.10 (Final)\n",
        },
        "hide_files": ["/etc/os-release", "/etc/debian_version", "/etc/lsb-release"],
        "osrelease": "2.6.32-754.el6.x86_64",
        "iptables": {"version": "1.4.7", "wait": False, "restore_wait": False},
        # 2.6.32: LOG is ipt_LOG/ip6t_LOG (xt_LOG only exists from 3.4), no nf_log_* modules,
        # TRACE is xt_TRACE with aliases ipt_TRACE/ip6t_TRACE.
        "modules": sorted(set(_EL_COMMON_MODULES + ["ipt_LOG", "ip6t_LOG", "ipt_ULOG", "ebt_ulog"])),
        "modprobe_fatal": "FATAL: Module %s not found.",
        "python": "/usr/bin/python2.6-does-not-exist",
        # the kernel here registers loggers as nf_log_ipv4/6; an el6 kernel calls them ipt_LOG/ip6t_LOG
        "sysctl_map": {"ipt_LOG": "nf_log_ipv4", "ip6t_LOG": "nf_log_ipv6"},
    },
}
PERSONAS.update(rootfs.personas(PERSONAS["debian12"]["modules"], PERSONAS["debian12"]["modprobe_fatal"]))
HIDE_PYTHON = ["python", "python2", "python2.7", "python3", "python3.11", "pydoc3", "pydoc3.11",
               "python3-config", "python3.11-config", "py3compile", "py3clean"]
HIDE_NFT = ["nft", "iptables-nft", "iptables-nft-save", "iptables-nft-restore", "ip6tables-nft",
            "ip6tables-nft-save", "ip6tables-nft-restore", "iptables-legacy", "iptables-legacy-save",
            "iptables-legacy-restore", "ip6tables-legacy", "ip6tables-legacy-save",
            "ip6tables-legacy-restore", "iptables-translate", "ip6tables-translate",
            "iptables-restore-translate", "ip6tables-restore-translate"]


def host_names(personas, count=None):
    """Host names for a persona list: `<persona>-<i>`, i counting per persona from 1.

    With count > len(personas) the persona list is cycled."""
    personas = list(personas) or ["debian12"]
    if count is None:
        count = len(personas)
    seen, out = {}, []
    for i in range(count):
        p = personas[i % len(personas)]
        if p not in PERSONAS:
            raise ValueError("unknown persona %r (known: %s)" % (p, ", ".join(sorted(PERSONAS))))
        seen[p] = seen.get(p, 0) + 1
        out.append(("%s-%d" % (p, seen[p]), p))
    return out


def modprobe_script(persona):
    """POSIX sh modprobe that knows only the persona kernel's module names (all built in here)."""
    p = PERSONAS[persona]
    known = " ".join(p["modules"])
    fatal = p["modprobe_fatal"]
    return """#!/bin/sh
# virtlab persona %(persona)s: modprobe knowing only that kernel's module names.
# Every known module is built into this machine's kernel, so "loading" it is a no-op.
known=" %(known)s "
quiet=0; remove=0; mods=""
for a in "$@"; do
  case "$a" in
    -q|--quiet) quiet=1 ;;
    -r|--remove) remove=1 ;;
    -V|--version) echo "kmod version 20"; exit 0 ;;
    -*) ;;
    *=*) ;;
    *) [ -z "$mods" ] && mods="$a" || { [ "$remove" = 1 ] && mods="$mods $a"; } ;;
  esac
done
[ -z "$mods" ] && { echo "Usage: modprobe [options] modulename" >&2; exit 1; }
for m in $mods; do
  n=$(printf '%%s' "$m" | tr '-' '_')
  case "$known" in
    *" $n "*) ;;
    *) [ "$quiet" = 1 ] || printf '%(fatal)s\\n' "$m" >&2; exit 1 ;;
  esac
done
exit 0
""" % {"persona": persona, "known": known, "fatal": fatal.replace("%s", "%s")}


def iptables_script(persona, tool):
    """Wrapper over the legacy backend presenting the persona's iptables version and options."""
    ipt = PERSONAS[persona]["iptables"]
    ver = ipt["version"]
    fam = "ip6tables" if tool.startswith("ip6") else "iptables"
    nowait = ""
    allow_wait = ipt["restore_wait"] if tool.endswith("-restore") else ipt["wait"]
    if not allow_wait and not tool.endswith("-save"):
        nowait = """if [ "$(cat /proc/$PPID/comm 2>/dev/null)" = libvirtd ]; then
  # EMULATION: this libvirtd (9.0) always passes -w; el's own libvirt would not. Drop it for libvirtd only.
  for a do shift; case "$a" in -w|--wait) continue ;; esac; set -- "$@" "$a"; done
fi
for a in "$@"; do
  case "$a" in
    -w|--wait|-w[0-9]*|--wait=*) echo "%(tool)s v%(ver)s: unknown option \\`$a'" >&2
      echo "Try \\`%(tool)s -h' or '%(tool)s --help' for more information." >&2; exit 2 ;;
  esac
done
""" % {"tool": tool, "ver": ver}
    if tool.endswith("-save"):
        body = """out=$(/usr/sbin/xtables-legacy-multi %(tool)s "$@"); rc=$?
[ -n "$out" ] && printf '%%s\\n' "$out" | sed -e 's/^# Generated by %(tool)s v[^ ]*\\( (legacy)\\)\\? on/# Generated by %(tool)s v%(ver)s on/' \\
  -e 's/^# Completed on/# Completed on/'
exit $rc
""" % {"tool": tool, "ver": ver}
    else:
        body = 'exec /usr/sbin/xtables-legacy-multi %s "$@"\n' % tool
    return """#!/bin/sh
# virtlab persona %(persona)s: %(tool)s v%(ver)s (legacy xtables backend)
for a in "$@"; do
  case "$a" in
    -V|--version) echo "%(fam_or_tool)s v%(ver)s"; exit 0 ;;
  esac
done
%(nowait)s%(body)s""" % {"persona": persona, "tool": tool, "ver": ver, "nowait": nowait,
                         "body": body, "fam_or_tool": tool if tool.endswith(("-save", "-restore")) else fam}


def sysctl_script(persona, real):
    """sysctl wrapper translating logger names (el6 kernel names <-> this kernel's names)."""
    mapping = PERSONAS[persona]["sysctl_map"]
    to_kernel = " ".join("-e 's/=%s$/=%s/' -e 's/= %s$/= %s/'" % (a, b, a, b) for a, b in mapping.items())
    from_kernel = " ".join("-e 's/^\\(net[./]netfilter[./]nf_log[./][0-9]* = \\)%s$/\\1%s/' -e 's/^%s$/%s/'"
                           % (b, a, b, a) for a, b in mapping.items())
    return """#!/bin/sh
# virtlab persona %(persona)s: sysctl with el6 logger names. EMULATION: this kernel registers
# nf_log_ipv4/nf_log_ipv6 where 2.6.32 registers ipt_LOG/ip6t_LOG; net.netfilter.nf_log.* values
# are translated both ways. /proc/sys and /proc/net/netfilter/nf_log show the real names.
set --  $(for a in "$@"; do printf '%%s\\n' "$a" | sed %(to_kernel)s; done)
out=$(%(real)s "$@"); rc=$?
[ -n "$out" ] && printf '%%s\\n' "$out" | sed %(from_kernel)s
exit $rc
""" % {"persona": persona, "real": real, "to_kernel": to_kernel, "from_kernel": from_kernel}


def uname_script(persona, real):
    rel = PERSONAS[persona]["osrelease"]
    return """#!/bin/sh
# virtlab persona %(persona)s: kernel release %(rel)s (the real kernel is shared by all hosts)
real=$(uname_real=1 %(real)s -r)
out=$(%(real)s "$@") || exit $?
printf '%%s\\n' "$out" | sed "s/$real/%(rel)s/"
""" % {"persona": persona, "rel": rel, "real": real}


def render_inventory(lab, hosts, key_path, mgmt_ns, relay=RELAY, state_dir=None):
    """Inventory YAML text. hosts: list of dicts(name, persona, mgmt_ip, netns)."""
    def q(s):
        return json.dumps(str(s))
    proxy = "nsenter --net=/run/netns/%s %s %s %%h 22" % (mgmt_ns, SYS_PYTHON, relay)
    common = "-o %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR" % (
        shlex.quote("ProxyCommand=" + proxy))
    lines = ["# virtlab inventory for lab %s (generated; do not edit)" % lab, "all:", "  children:",
             "    hypervisors:", "      hosts:"]
    for h in hosts:
        lines.append("        %s:" % h["name"])
        hv = [
            ("ansible_host", h["mgmt_ip"]),
            ("ansible_user", "root"),
            ("ansible_ssh_private_key_file", key_path),
            ("ansible_ssh_common_args", common),
        ] + pytargets.python_hostvars(h["persona"], PERSONAS[h["persona"]]["python"]) + [
            ("virtlab_lab", lab),
            ("virtlab_persona", h["persona"]),
            ("virtlab_netns", h["netns"]),
            ("virtlab_uplink_ip", UPLINK_IP),
            ("virtlab_uplink_port", UPLINK_PORT),
            ("virtlab_bond0_ip", h.get("bond0_ip", "")),
        ]
        if state_dir:
            hv.append(("ansible_control_path_dir", os.path.join(state_dir, "cp")))
        for k, v in hv:
            lines.append("          %s: %s" % (k, v if isinstance(v, int) else q(v)))
    by_persona = {}
    for h in hosts:
        by_persona.setdefault(h["persona"], []).append(h["name"])
    for p in sorted(by_persona):
        lines += ["    %s:" % p, "      hosts:"]
        lines += ["        %s: {}" % n for n in by_persona[p]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
class LabError(RuntimeError):
    pass


def _run(argv, check=True, input=None, timeout=120, **kw):
    p = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout, check=False, **kw)
    if check and p.returncode != 0:
        raise LabError("command failed (rc=%d): %s\n%s%s"
                       % (p.returncode, " ".join(map(shlex.quote, argv)), p.stdout, p.stderr))
    return p


def _write(path, text, mode=0o644):
    d = os.path.dirname(path)
    if d and not os.path.isdir(d):
        os.makedirs(d)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _ns_inode(path):
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _pids_in(inodes, kind="net"):
    """PIDs whose /proc/PID/ns/<kind> is one of the given nsfs inodes."""
    out = []
    if not inodes:
        return out
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ino = os.stat("/proc/%s/ns/%s" % (d, kind)).st_ino
        except OSError:
            continue
        if ino in inodes and int(d) != os.getpid():
            out.append(int(d))
    return out


def _kill_all(pids, grace=3.0):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.time() + grace
    while time.time() < deadline:
        alive = [p for p in pids if os.path.exists("/proc/%d" % p) and not _zombie(p)]
        if not alive:
            return
        time.sleep(0.05)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _is_mountpoint(path):
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


def _alive(pidfile):
    try:
        with open(pidfile) as f:
            pid = int(f.read().split()[0])
        os.kill(pid, 0)
        return not _zombie(pid)
    except (OSError, ValueError, IndexError):
        return False


UPLINK_LISTENER = r'''
import socket, sys, time
port, log = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(64)
while True:
    c, peer = s.accept()
    local = c.getsockname()
    with open(log, "a") as f:
        f.write("%.3f %s %d %s %d\n" % (time.time(), peer[0], peer[1], local[0], local[1]))
    try:
        c.sendall(b"virtlab-uplink\n")
    except OSError:
        pass
    c.close()
'''


# ---------------------------------------------------------------------------------------------
# the lab
# ---------------------------------------------------------------------------------------------
class Lab(object):
    def __init__(self, name=None):
        name = name or os.environ.get("VIRTLAB_NAME") or "lab"
        if not NAME_RE.match(name):
            raise LabError("lab name must match %s" % NAME_RE.pattern)
        self.name = name
        self.dir = "/run/virtnet-%s" % name
        self.state_path = os.path.join(self.dir, "state.json")
        self.inventory_path = os.path.join(self.dir, "inventory.yml")
        self.key_path = os.path.join(self.dir, "id_ed25519")
        self.nsdir = os.path.join(self.dir, "ns")
        self.mgmt_ns = "vn-%s-mgmt" % name
        self.uplink_ns = "vn-%s-uplink" % name
        self.uplink_log = os.path.join(self.dir, "uplink-%d.log" % UPLINK_PORT)
        self._lock = threading.Lock()

    # ---- state -----------------------------------------------------------------------------
    def state(self):
        try:
            with open(self.state_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"lab": self.name, "hosts": {}, "guests": {}}

    def _save(self, st):
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f, indent=2, sort_keys=True)
        os.rename(tmp, self.state_path)

    def is_up(self):
        return os.path.exists(self.state_path)

    @property
    def hosts(self):
        return sorted(self.state()["hosts"], key=lambda h: self.state()["hosts"][h]["index"])

    def host_netns(self, host):
        return "vn-%s-%s" % (self.name, host)

    def _host(self, host):
        st = self.state()
        if host not in st["hosts"]:
            raise LabError("lab %s has no host %r (hosts: %s)" % (self.name, host, ", ".join(sorted(st["hosts"]))))
        return st["hosts"][host]

    def _nsenter(self, host):
        ns = self.host_netns(host)
        return ["nsenter", "--net=/run/netns/%s" % ns, "--mount=%s/%s.mnt" % (self.nsdir, host),
                "--uts=%s/%s.uts" % (self.nsdir, host), "--"]

    # ---- exec ------------------------------------------------------------------------------
    def exec(self, host, argv, check=True, input=None, timeout=120):
        """Run argv inside the host's net+mount+uts namespaces; returns CompletedProcess (text)."""
        self._host(host)
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        return _run(self._nsenter(host) + list(argv), check=check, input=input, timeout=timeout, cwd="/")

    def uplink_exec(self, argv, check=True, input=None, timeout=120):
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        return _run(["nsenter", "--net=/run/netns/%s" % self.uplink_ns, "--"] + list(argv),
                    check=check, input=input, timeout=timeout)

    def mgmt_exec(self, argv, check=True, timeout=120):
        return _run(["nsenter", "--net=/run/netns/%s" % self.mgmt_ns, "--"] + list(argv),
                    check=check, timeout=timeout)

    def virsh(self, host, *args, **kw):
        return self.exec(host, ["virsh", "-q", "-c", "qemu:///system"] + list(args), **kw)

    def uplink_connections(self, since=None, at_least=0, timeout=5.0):
        """Connections the uplink listener accepted: list of dict(time, src, sport, dst, dport).

        ``since``: only those logged at or after that time. ``at_least``: wait up to ``timeout``
        seconds until that many are logged -- the listener writes a line after ``accept()``, and a
        client that connects and closes at once (``nc -z``) can be done before that."""
        deadline = time.time() + timeout
        while True:
            out = []
            try:
                with open(self.uplink_log) as f:
                    for line in f:
                        t, src, sport, dst, dport = line.split()
                        if since is None or float(t) >= since:
                            out.append({"time": float(t), "src": src, "sport": int(sport), "dst": dst,
                                        "dport": int(dport)})
            except OSError:
                pass
            if len(out) >= at_least or time.time() >= deadline:
                return out
            time.sleep(0.05)

    @contextlib.contextmanager
    def _locked(self, create=True):
        """Serialise up/down/guest changes of one lab between processes (flock on its state dir)."""
        while True:
            if create:
                os.makedirs(self.dir, 0o755, exist_ok=True)
            try:
                fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                if create:
                    continue
                yield False
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.dir).st_ino
                except OSError:
                    same = False
                if not same:  # removed by a concurrent down while we waited
                    continue
                yield True
                return
            finally:
                os.close(fd)

    # ---- up --------------------------------------------------------------------------------
    def up(self, personas=("debian12", "el7", "el6"), hosts=None, log=None):
        """Bring the lab up (idempotent). Returns the inventory path."""
        with self._locked():
            return self._up(personas, hosts, log)

    def _up(self, personas, hosts, log):
        t0 = time.time()
        wanted = host_names(personas, hosts)
        self._base_up()
        st = self.state()
        for name, persona in wanted:
            if name in st["hosts"] and st["hosts"][name]["persona"] != persona:
                raise LabError("host %s exists with persona %s" % (name, st["hosts"][name]["persona"]))
        errors = []
        threads = []
        for name, persona in wanted:
            if name not in st["hosts"]:
                used = set(h["index"] for h in st["hosts"].values())
                idx = min(set(range(0, 200)) - used)
                st["hosts"][name] = {"name": name, "persona": persona, "index": idx,
                                     "netns": self.host_netns(name),
                                     "mgmt_ip": "%s.%d" % (MGMT_NET, 10 + idx),
                                     "bond0_ip": "%s.%d" % (UPLINK_NET, 10 + idx)}
        self._save(st)
        for name, dummy in wanted:
            if self._host_healthy(name):
                continue

            def work(n=name):
                try:
                    self._host_up(n)
                except Exception as exc:  # report all hosts' failures together
                    errors.append("%s: %s" % (n, exc))
            t = threading.Thread(target=work)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        self._write_inventory()
        if errors:
            raise LabError("lab %s: host set-up failed:\n%s" % (self.name, "\n".join(errors)))
        if log:
            log("lab %s up in %.1fs" % (self.name, time.time() - t0))
        return self.inventory_path

    def _base_up(self):
        for tool in ("libvirtd", "virtlogd", "sshd", "dnsmasq", "qemu-system-x86_64"):
            if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin")):
                raise LabError("%s is missing (run `make apt`)" % tool)
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir, 0o755)
        os.makedirs(self.nsdir, exist_ok=True)
        os.makedirs(os.path.join(self.dir, "cp"), exist_ok=True)
        if not _is_mountpoint(self.nsdir):
            _run(["mount", "--bind", self.nsdir, self.nsdir])
            _run(["mount", "--make-private", self.nsdir])
        if not os.path.exists(self.key_path):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "virtlab-%s" % self.name,
                  "-f", self.key_path])
        shutil.copyfile(self.key_path + ".pub", os.path.join(self.dir, "authorized_keys"))
        # kernel log lines from every netns reach dmesg (value before the first lab kept aside)
        with self._lock:
            if not os.path.exists(SYSCTL_ORIG):
                with open(SYSCTL_ALL_NETNS) as f:
                    _write(SYSCTL_ORIG, f.read())
            with open(SYSCTL_ALL_NETNS, "w") as f:
                f.write("1\n")
        if not os.path.exists(self.state_path):
            self._save({"lab": self.name, "hosts": {}, "guests": {}})
        for ns in (self.mgmt_ns, self.uplink_ns):
            if not os.path.exists("/run/netns/%s" % ns):
                _run(["ip", "netns", "add", ns])
        m = ["ip", "-n", self.mgmt_ns]
        if _run(m + ["link", "show", "br0"], check=False).returncode != 0:
            _run(m + ["link", "set", "lo", "up"])
            _run(m + ["link", "add", "br0", "type", "bridge"])
            _run(m + ["addr", "add", MGMT_GW + "/24", "dev", "br0"])
            _run(m + ["link", "set", "br0", "up"])
        u = ["ip", "-n", self.uplink_ns]
        if _run(u + ["link", "show", "br0"], check=False).returncode != 0:
            _run(u + ["link", "set", "lo", "up"])
            _run(u + ["link", "add", "br0", "type", "bridge"])
            _run(u + ["addr", "add", UPLINK_GW + "/24", "dev", "br0"])
            _run(u + ["addr", "add", UPLINK_IP + "/24", "dev", "br0"])
            _run(u + ["link", "set", "br0", "up"])
        pidf = os.path.join(self.dir, "uplink-listener.pid")
        if not _alive(pidf):
            script = os.path.join(self.dir, "uplink_listener.py")
            _write(script, UPLINK_LISTENER)
            with open(os.path.join(self.dir, "uplink-listener.err"), "a") as err:
                p = subprocess.Popen(["nsenter", "--net=/run/netns/%s" % self.uplink_ns, SYS_PYTHON, script,
                                      str(UPLINK_PORT), self.uplink_log], stdin=subprocess.DEVNULL,
                                     stdout=err, stderr=err, start_new_session=True, close_fds=True)
            _write(pidf, "%d\n" % p.pid)

    def _host_healthy(self, host):
        h = os.path.join(self.dir, "hosts", host)
        return (os.path.exists(os.path.join(h, "up.done"))
                and os.path.exists("/run/netns/%s" % self.host_netns(host))
                and all(_alive(os.path.join(h, "pids", d + ".pid")) for d in ("virtlogd", "libvirtd", "sshd")))

    def _host_up(self, host):
        info = self._host(host)
        persona = info["persona"]
        ns = self.host_netns(host)
        hdir = os.path.join(self.dir, "hosts", host)
        done = os.path.join(hdir, "up.done")
        if os.path.exists(done):
            os.unlink(done)
        for sub in ("ovl/etc/u", "ovl/etc/w", "ovl/bin/u", "ovl/bin/w", "ovl/sbin/u", "ovl/sbin/w",
                    "var-lib-libvirt", "var-log-libvirt/qemu", "var-cache-libvirt", "root/.ssh", "tmp",
                    "bin", "pids"):
            os.makedirs(os.path.join(hdir, sub), exist_ok=True)
        os.chmod(os.path.join(hdir, "tmp"), 0o1777)
        os.chmod(os.path.join(hdir, "root"), 0o700)
        for sub in ("qemu", "dnsmasq", "network", "images", "boot", "sanlock", "swtpm", "filesystems"):
            os.makedirs(os.path.join(hdir, "var-lib-libvirt", sub), exist_ok=True)
        # ---- network namespace and links (never in the root namespace) ----
        if not os.path.exists("/run/netns/%s" % ns):
            _run(["ip", "netns", "add", ns])
        hn = ["ip", "-n", ns]
        idx = info["index"]
        mlink, ulink = "m-%s" % host[:12], "u-%s" % host[:12]
        if _run(hn + ["link", "show", "eth0"], check=False).returncode != 0:
            _run(["ip", "-n", self.mgmt_ns, "link", "del", mlink], check=False)
            _run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", mlink,
                  "netns", self.mgmt_ns])
            _run(["ip", "-n", self.mgmt_ns, "link", "set", mlink, "master", "br0", "up"])
            _run(hn + ["link", "set", "lo", "up"])
            _run(hn + ["addr", "add", "%s/24" % info["mgmt_ip"], "dev", "eth0"])
            _run(hn + ["link", "set", "eth0", "up"])
        if _run(hn + ["link", "show", "bond0"], check=False).returncode != 0:
            _run(["ip", "-n", self.uplink_ns, "link", "del", ulink], check=False)
            _run(["ip", "link", "add", "bond0", "netns", ns, "type", "veth", "peer", "name", ulink,
                  "netns", self.uplink_ns])
            _run(["ip", "-n", self.uplink_ns, "link", "set", ulink, "master", "br0", "up"])
            _run(hn + ["addr", "add", "%s/24" % info["bond0_ip"], "dev", "bond0"])
            _run(hn + ["link", "set", "bond0", "up"])
            _run(hn + ["route", "replace", "default", "via", UPLINK_GW, "dev", "bond0"])
        _run(["nsenter", "--net=/run/netns/%s" % ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        # ---- persistent mount + uts namespace ----
        mnt, uts = os.path.join(self.nsdir, host + ".mnt"), os.path.join(self.nsdir, host + ".uts")
        if not (_is_mountpoint(mnt) and _is_mountpoint(uts)):
            for f in (mnt, uts):
                if _is_mountpoint(f):
                    _run(["umount", f])
                _write(f, "")
            setup = os.path.join(hdir, "setup.sh")
            _write(setup, self._setup_script(host, persona, hdir), 0o755)
            _run(["nsenter", "--net=/run/netns/%s" % ns, "unshare", "--mount=%s" % mnt, "--uts=%s" % uts,
                  "--propagation", "private", "/bin/sh", setup], cwd="/")
        # ---- daemons ----
        pids = os.path.join(hdir, "pids")
        if not _alive(os.path.join(pids, "virtlogd.pid")):
            self.exec(host, ["virtlogd", "-d", "-p", os.path.join(pids, "virtlogd.pid")])
        if not _alive(os.path.join(pids, "libvirtd.pid")):
            self.exec(host, ["libvirtd", "-d", "-p", os.path.join(pids, "libvirtd.pid")])
        if not _alive(os.path.join(pids, "sshd.pid")):
            self.exec(host, ["/usr/sbin/sshd", "-f", os.path.join(hdir, "sshd_config")])
        deadline = time.time() + 60
        last = ""
        while time.time() < deadline:
            p = self.virsh(host, "net-list", "--name", check=False, timeout=20)
            last = p.stdout + p.stderr
            if p.returncode == 0 and "default" in p.stdout.split():
                break
            time.sleep(0.2)
        else:
            raise LabError("libvirtd on %s: default network not active: %s" % (host, last))
        _write(done, "%f\n" % time.time())

    def restart_daemon(self, host, daemon="libvirtd"):
        """Start ``daemon`` (virtlogd, libvirtd or sshd) of ``host`` again as ``up`` starts it, killing
        it first (SIGKILL) if it still runs: what systemd's Restart= does after a crash. For libvirtd,
        waits (60 s at most) until it answers ``virsh list``. Returns the new pid."""
        cmds = {"virtlogd": lambda pf: ["virtlogd", "-d", "-p", pf],
                "libvirtd": lambda pf: ["libvirtd", "-d", "-p", pf],
                "sshd": lambda pf: ["/usr/sbin/sshd", "-f", os.path.join(self.dir, "hosts", host, "sshd_config")]}
        if daemon not in cmds:
            raise LabError("restart_daemon: daemon must be one of %s" % ", ".join(sorted(cmds)))
        self._host(host)
        pidfile = os.path.join(self.dir, "hosts", host, "pids", daemon + ".pid")
        if _alive(pidfile):
            with open(pidfile) as f:
                pid = int(f.read().split()[0])
            os.kill(pid, signal.SIGKILL)
            deadline = time.time() + 10
            while os.path.exists("/proc/%d" % pid) and not _zombie(pid) and time.time() < deadline:
                time.sleep(0.05)
        self.exec(host, cmds[daemon](pidfile))
        deadline = time.time() + 60
        last = ""
        while time.time() < deadline:
            if daemon != "libvirtd" and _alive(pidfile):
                break
            if daemon == "libvirtd":
                p = self.virsh(host, "list", "--all", check=False, timeout=20)
                last = p.stdout + p.stderr
                if p.returncode == 0:
                    break
            time.sleep(0.1)
        else:
            raise LabError("%s on %s did not come back within 60 s: %s" % (daemon, host, last))
        with open(pidfile) as f:
            return int(f.read().split()[0])

    def _setup_script(self, host, persona, hdir):
        p = PERSONAS[persona]
        q = shlex.quote
        # per-host sshd: listens on the mgmt address only, root by the lab key only
        info = self._host(host)
        hostkey = os.path.join(hdir, "ssh_host_ed25519_key")
        if not os.path.exists(hostkey):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host, "-f", hostkey])
        _write(os.path.join(hdir, "sshd_config"), "\n".join([
            "# virtlab %s/%s" % (self.name, host),
            "ListenAddress %s" % info["mgmt_ip"],
            "HostKey %s" % hostkey,
            "PidFile %s" % os.path.join(hdir, "pids", "sshd.pid"),
            "PermitRootLogin prohibit-password",
            "AuthorizedKeysFile %s" % os.path.join(self.dir, "authorized_keys"),
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "AcceptEnv LANG LC_*",
            "MaxSessions 50",
            "MaxStartups 50:30:100",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
            "",
        ]))
        s = ["set -e", "H=%s" % q(hdir)]
        if p.get("rootfs"):  # `/` is an overlay of a real Debian tree (rootfs.py); then the common part
            s += rootfs.setup_prelude(rootfs.build(p["rootfs"]), hdir, self.dir)
            s.append("hostname %s" % q(host))
        else:
            # this netns' sysfs (libvirt reads /sys/class/net), hostname
            s.append("mount -t sysfs sysfs /sys")
            s.append("hostname %s" % q(host))
            # drop references to other namespaces' files copied into this mount namespace
            s.append("umount -l /run/netns 2>/dev/null || true")
            s.append("for d in /run/virtnet-*/ns; do umount -l \"$d\" 2>/dev/null || true; done")
            # writable views of /etc, /usr/bin, /usr/sbin private to this host (overlayfs)
            s.append("mount -t overlay overlay -o lowerdir=/etc,upperdir=$H/ovl/etc/u,workdir=$H/ovl/etc/w /etc")
            s.append("mount -t overlay overlay -o lowerdir=/usr/bin,upperdir=$H/ovl/bin/u,workdir=$H/ovl/bin/w /usr/bin")
            s.append("mount -t overlay overlay -o lowerdir=/usr/sbin,upperdir=$H/ovl/sbin/u,workdir=$H/ovl/sbin/w /usr/sbin")
            # private /run (keeps the lab dir), /tmp, /root, libvirt state
            s.append("mkdir -p $H/newrun && mount -t tmpfs -o mode=755,size=64m tmpfs $H/newrun")
            s.append("mkdir -p $H/newrun/%s $H/newrun/sshd $H/newrun/lock $H/newrun/libvirt $H/newrun/user $H/newrun/mount"
                     % q(os.path.basename(self.dir)))
            s.append("mount --bind %s $H/newrun/%s" % (q(self.dir), q(os.path.basename(self.dir))))
            s.append("mount --move $H/newrun /run")
            s.append("mount --bind $H/tmp /tmp")
            s.append("mount --bind $H/root /root")
            s.append("mount --bind $H/var-lib-libvirt /var/lib/libvirt")
            s.append("mkdir -p /var/log/libvirt /var/cache/libvirt 2>/dev/null || true")
            s.append("mount --bind $H/var-log-libvirt /var/log/libvirt")
            s.append("[ -d /var/cache/libvirt ] && mount --bind $H/var-cache-libvirt /var/cache/libvirt || true")
        # libvirt config: default network defined + autostart, qemu as root without cgroups/namespaces
        s.append("mkdir -p /etc/libvirt/qemu/networks/autostart")
        s.append("[ -f /etc/libvirt/qemu/networks/default.xml ] || "
                 "cp /usr/share/libvirt/networks/default.xml /etc/libvirt/qemu/networks/default.xml")
        s.append("ln -sf /etc/libvirt/qemu/networks/default.xml /etc/libvirt/qemu/networks/autostart/default.xml")
        s.append("cat >> /etc/libvirt/qemu.conf <<'EOF'\n# virtlab\nuser = \"root\"\ngroup = \"root\"\n"
                 "dynamic_ownership = 0\nremember_owner = 0\ncgroup_controllers = [ ]\nnamespaces = [ ]\n"
                 "security_driver = \"none\"\nEOF")
        s.append("cat >> /etc/libvirt/libvirtd.conf <<'EOF'\n# virtlab\n"
                 "log_outputs = \"3:file:/var/log/libvirt/libvirtd.log\"\nEOF")
        s.append("echo %s > /etc/hostname" % q(host))
        # resolvable own name (libvirt resolves it on every domain start; DNS would time out here)
        s.append("printf '127.0.1.1\\t%%s\\n' %s >> /etc/hosts" % q(host))
        # persona
        if p["modules"] is not None:
            _write(os.path.join(hdir, "bin", "modprobe"), modprobe_script(persona), 0o755)
            s.append("rm -f /usr/sbin/modprobe; cp $H/bin/modprobe /usr/sbin/modprobe")
        if persona != "debian12":
            for path in p["hide_files"]:
                s.append("rm -f %s" % q(path))
            for b in p.get("hide_sbin", []):
                s.append("rm -f /usr/sbin/%s" % q(b))
            for path, text in sorted(p["release_files"].items()):
                s.append("rm -f %s; printf '%%s' %s > %s" % (q(path), q(text), q(path)))
            if p["osrelease"]:
                _write(os.path.join(hdir, "osrelease"), p["osrelease"] + "\n")
                s.append("mount --bind $H/osrelease /proc/sys/kernel/osrelease")
                shutil.copy2("/usr/bin/uname", os.path.join(hdir, "bin", "uname.real"))
                _write(os.path.join(hdir, "bin", "uname"),
                       uname_script(persona, os.path.join(hdir, "bin", "uname.real")), 0o755)
                s.append("rm -f /usr/bin/uname; cp $H/bin/uname /usr/bin/uname")
            if p["iptables"]:
                for tool in ("iptables", "iptables-save", "iptables-restore",
                             "ip6tables", "ip6tables-save", "ip6tables-restore"):
                    _write(os.path.join(hdir, "bin", tool), iptables_script(persona, tool), 0o755)
                    s.append("rm -f /usr/sbin/%s /etc/alternatives/%s; cp $H/bin/%s /usr/sbin/%s"
                             % (tool, tool, tool, tool))
                for b in HIDE_NFT:
                    s.append("rm -f /usr/sbin/%s" % b)
            if p["sysctl_map"]:
                shutil.copy2("/usr/sbin/sysctl", os.path.join(hdir, "bin", "sysctl.real"))
                _write(os.path.join(hdir, "bin", "sysctl"),
                       sysctl_script(persona, os.path.join(hdir, "bin", "sysctl.real")), 0o755)
                s.append("rm -f /usr/sbin/sysctl; cp $H/bin/sysctl /usr/sbin/sysctl")
            if not p["python"].startswith("/usr/bin/python3"):
                for b in HIDE_PYTHON:
                    s.append("rm -f /usr/bin/%s" % b)
        s += rootfs.persona_setup(persona, p)
        return "\n".join(s) + "\n"

    def _write_inventory(self):
        st = self.state()
        hosts = sorted(st["hosts"].values(), key=lambda h: h["index"])
        _write(self.inventory_path, render_inventory(self.name, hosts, self.key_path, self.mgmt_ns,
                                                     state_dir=self.dir))

    # ---- guests ----------------------------------------------------------------------------
    def _network(self, host, network):
        xml = self.virsh(host, "net-dumpxml", network).stdout
        br = re.search(r"<bridge name='([^']+)'", xml)
        ip = re.search(r"<ip address='([0-9.]+)' (?:netmask='([0-9.]+)'|prefix='(\d+)')", xml)
        res = {"bridge": br.group(1) if br else None}
        if ip:
            if ip.group(2):
                prefix = sum(bin(int(o)).count("1") for o in ip.group(2).split("."))
            else:
                prefix = int(ip.group(3))
            res.update(gateway=ip.group(1), prefix=prefix)
        return res

    def guest_add(self, name, host, network="default", kind="ns"):
        """Add a guest (idempotent by name); returns its record."""
        with self._locked(create=False) as ok:
            if not ok:
                raise LabError("lab %s is not up" % self.name)
            return self._guest_add(name, host, network, kind)

    def _guest_add(self, name, host, network, kind):
        if not NAME_RE.match(name):
            raise LabError("guest name must match %s" % NAME_RE.pattern)
        st = self.state()
        if name in st["guests"]:
            return st["guests"][name]
        self._host(host)
        net = self._network(host, network)
        g = {"name": name, "host": host, "network": network, "kind": kind, "bridge": net["bridge"]}
        if kind == "ns":
            if not net["bridge"]:
                raise LabError("network %s on %s has no bridge to plug a namespace guest into (use kind=qemu)"
                               % (network, host))
            ip = None
            if "gateway" in net:  # static address .200+ (outside what tests hand out), else no address
                base = net["gateway"].rsplit(".", 1)[0]
                used = set(x.get("ip") for x in st["guests"].values()
                           if x["host"] == host and x.get("bridge") == net["bridge"])
                ip = next("%s.%d" % (base, i) for i in range(200, 250) if "%s.%d" % (base, i) not in used)
            gns = "vn-%s-g-%s" % (self.name, name)
            veth = "vg-%s" % name
            _run(["ip", "netns", "add", gns])
            try:
                _run(["ip", "link", "add", "eth0", "netns", gns, "type", "veth", "peer", "name", veth,
                      "netns", self.host_netns(host)])
                self.exec(host, ["ip", "link", "set", veth, "master", net["bridge"], "up"])
                gi = ["ip", "-n", gns]
                _run(gi + ["link", "set", "lo", "up"])
                if ip:
                    _run(gi + ["addr", "add", "%s/%d" % (ip, net["prefix"]), "dev", "eth0"])
                _run(gi + ["link", "set", "eth0", "up"])
                if ip:
                    _run(gi + ["route", "add", "default", "via", net["gateway"]])
                mac = link_mac(gns, "eth0")
                self._wait_forwarding(host, veth)
            except Exception:
                _run(["ip", "netns", "del", gns], check=False)
                raise
            g.update(ip=ip, mac=mac, netns=gns, veth=veth, gateway=net.get("gateway"))
        elif kind == "qemu":
            xml = """<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='network'><source network='%s'/><model type='e1000'/><rom enabled='no'/></interface>
    <memballoon model='none'/>
  </devices>
</domain>
""" % (name, network)
            path = os.path.join(self.dir, "hosts", host, "domain-%s.xml" % name)
            _write(path, xml)
            self.virsh(host, "define", path)
            try:
                self.virsh(host, "start", name, timeout=60)
            except LabError:
                self.virsh(host, "undefine", name, check=False)
                raise
            iface = self.virsh(host, "domiflist", name).stdout.split()
            # Interface Type Source Model MAC (no wait for STP forwarding: nothing runs inside)
            g.update(tap=iface[0], mac=iface[4], netns=self.host_netns(host), ip=None, domain=name)
        else:
            raise LabError("kind must be ns or qemu")
        st = self.state()
        st["guests"][name] = g
        self._save(st)
        return g

    def _wait_forwarding(self, host, port, timeout=15):
        """A new bridge port passes traffic only after STP listening/learning (kernel minimum 2 s
        each when STP is on, as in libvirt's default network): wait for state 3 (forwarding)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            p = self.exec(host, ["cat", "/sys/class/net/%s/brport/state" % port], check=False)
            if p.returncode != 0 or p.stdout.strip() == "3":
                return
            time.sleep(0.2)

    def guest_exec(self, name, argv, check=True, input=None, timeout=120):
        g = self.state()["guests"].get(name)
        if not g:
            raise LabError("no guest %r" % name)
        if g["kind"] != "ns":
            raise LabError("guest %s is a diskless qemu domain: nothing runs inside it" % name)
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        return _run(["nsenter", "--net=/run/netns/%s" % g["netns"], "--"] + list(argv),
                    check=check, input=input, timeout=timeout)

    def guest_del(self, name):
        with self._locked(create=False) as ok:
            return ok and self._guest_del(name)

    def _guest_del(self, name):
        st = self.state()
        g = st["guests"].get(name)
        if not g:
            return False
        if g["kind"] == "ns":
            ino = _ns_inode("/run/netns/%s" % g["netns"])
            _kill_all(_pids_in({ino} - {None}))
            _run(["ip", "netns", "del", g["netns"]], check=False)
        else:
            self.virsh(g["host"], "destroy", name, check=False)
            self.virsh(g["host"], "undefine", name, check=False)
        st = self.state()
        st["guests"].pop(name, None)
        self._save(st)
        return True

    # ---- status / down ---------------------------------------------------------------------
    def status(self):
        st = self.state()
        out = {"lab": self.name, "up": self.is_up(), "inventory": self.inventory_path, "hosts": {},
               "guests": st["guests"],
               "uplink_listener": _alive(os.path.join(self.dir, "uplink-listener.pid"))}
        for h, info in sorted(st["hosts"].items(), key=lambda kv: kv[1]["index"]):
            pd = os.path.join(self.dir, "hosts", h, "pids")
            out["hosts"][h] = dict(info, daemons={d: _alive(os.path.join(pd, d + ".pid"))
                                                  for d in ("virtlogd", "libvirtd", "sshd")},
                                   ready=self._host_healthy(h))
        return out

    def _our_netns(self):
        """Names of this lab's namespaces (exact names; other labs' names may share a prefix)."""
        names = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
        st = self.state()
        ours = {self.mgmt_ns, self.uplink_ns}
        hosts = set(st["hosts"])
        if os.path.isdir(os.path.join(self.dir, "hosts")):
            hosts.update(os.listdir(os.path.join(self.dir, "hosts")))
        ours.update(self.host_netns(h) for h in hosts)
        ours.update(g["netns"] for g in st["guests"].values() if g["kind"] == "ns")
        # leftovers of a crashed run whose state is gone: our naming scheme, not another lab's
        pref = "vn-%s-" % self.name
        others = [d[len("/run/virtnet-"):] for d in glob.glob("/run/virtnet-*")
                  if os.path.isdir(d) and d != self.dir]
        for n in names:
            rest = n[len(pref):] if n.startswith(pref) else None
            if rest is None or not OWN_NETNS_RE.match(rest):
                continue
            if any(len(o) > len(self.name) and n.startswith("vn-%s-" % o) for o in others):
                continue
            ours.add(n)
        return sorted(n for n in names if n in ours)

    def down(self, log=None):
        """Remove everything the lab made (also after a partial up or a crash)."""
        with self._locked(create=False):
            self._down(log)

    def _down(self, log):
        t0 = time.time()
        netns = self._our_netns()
        st = self.state()
        # qemu domains first (clean libvirt shutdown of their taps)
        for g in list(st["guests"].values()):
            if g["kind"] == "qemu":
                try:
                    self.virsh(g["host"], "destroy", g["name"], check=False, timeout=20)
                except Exception:
                    pass
        inodes = set(i for i in (_ns_inode("/run/netns/%s" % n) for n in netns) if i)
        mnt_inodes = set(i for i in (_ns_inode(f) for f in glob.glob(os.path.join(self.nsdir, "*.mnt"))) if i)
        mnt_inodes.discard(_ns_inode("/proc/self/ns/mnt"))
        for dummy in range(3):
            pids = sorted(set(_pids_in(inodes, "net")) | set(_pids_in(mnt_inodes, "mnt")))
            if not pids:
                break
            _kill_all(pids)
        pidf = os.path.join(self.dir, "uplink-listener.pid")
        if _alive(pidf):
            with open(pidf) as f:
                _kill_all([int(f.read().split()[0])])
        for f in sorted(glob.glob(os.path.join(self.nsdir, "*"))):
            if _is_mountpoint(f):
                _run(["umount", f], check=False)
        if _is_mountpoint(self.nsdir):
            _run(["umount", self.nsdir], check=False)
        for n in netns:
            _run(["ip", "netns", "del", n], check=False)
        if os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)
        with self._lock:
            others = glob.glob("/run/virtnet-*/state.json")
            if not others and os.path.exists(SYSCTL_ORIG):
                with open(SYSCTL_ORIG) as f:
                    old = f.read().strip() or "0"
                with open(SYSCTL_ALL_NETNS, "w") as f:
                    f.write(old + "\n")
                os.unlink(SYSCTL_ORIG)
        if log:
            log("lab %s down in %.1fs" % (self.name, time.time() - t0))


def link_mac(netns, dev):
    """MAC address of an interface inside a network namespace."""
    out = _run(["ip", "-n", netns, "-o", "link", "show", dev]).stdout
    m = re.search(r"link/ether ([0-9a-f:]{17})", out)
    if not m:
        raise LabError("no MAC for %s in %s: %s" % (dev, netns, out))
    return m.group(1)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def _split_cmd(rest):
    if rest and rest[0] == "--":
        rest = rest[1:]
    if not rest:
        raise SystemExit("missing command after --")
    return rest


def main(argv=None):
    ap = argparse.ArgumentParser(prog="virtlab.py", description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--lab", default=None, help="lab name (env VIRTLAB_NAME, default lab)")
    sub = ap.add_subparsers(dest="cmd")
    p = sub.add_parser("up")
    p.add_argument("--hosts", type=int, default=None)
    p.add_argument("--persona", action="append", default=[], choices=sorted(PERSONAS))
    sub.add_parser("down")
    sub.add_parser("status").add_argument("--json", action="store_true")
    sub.add_parser("inventory")
    p = sub.add_parser("exec")
    p.add_argument("host")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p = sub.add_parser("uplink")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p = sub.add_parser("guest")
    gs = p.add_subparsers(dest="gcmd")
    g = gs.add_parser("add")
    g.add_argument("name")
    g.add_argument("--host", required=True)
    g.add_argument("--network", default="default")
    g.add_argument("--kind", default="ns", choices=["ns", "qemu"])
    gs.add_parser("del").add_argument("name")
    g = gs.add_parser("exec")
    g.add_argument("name")
    g.add_argument("rest", nargs=argparse.REMAINDER)
    gs.add_parser("list")
    a = ap.parse_args(argv)
    if a.cmd is None:
        ap.print_help()
        return 2
    lab = Lab(a.lab)

    def log(msg):
        sys.stderr.write(msg + "\n")
    try:
        if a.cmd == "up":
            personas = a.persona or ["debian12"]
            print(lab.up(personas=personas, hosts=a.hosts or len(personas), log=log))
        elif a.cmd == "down":
            lab.down(log=log)
        elif a.cmd == "inventory":
            if not lab.is_up():
                log("lab %s is not up" % lab.name)
                return 1
            print(lab.inventory_path)
        elif a.cmd == "status":
            s = lab.status()
            if a.json:
                print(json.dumps(s, indent=2, sort_keys=True))
            else:
                print("lab %s: %s  inventory %s  uplink listener %s" % (
                    lab.name, "up" if s["up"] else "down", s["inventory"],
                    "alive" if s["uplink_listener"] else "dead"))
                for h, i in s["hosts"].items():
                    print("  %-12s %-8s mgmt %-15s bond0 %-14s %s" % (
                        h, i["persona"], i["mgmt_ip"], i["bond0_ip"],
                        " ".join("%s=%s" % (d, "up" if ok else "DOWN") for d, ok in sorted(i["daemons"].items()))))
                for n, g in sorted(s["guests"].items()):
                    print("  guest %-10s %-4s on %s/%s ip %s mac %s %s" % (
                        n, g["kind"], g["host"], g["network"], g.get("ip"), g.get("mac"),
                        g.get("tap") or g.get("netns")))
        elif a.cmd == "exec":
            p = lab.exec(a.host, _split_cmd(a.rest), check=False, timeout=3600)
            sys.stdout.write(p.stdout)
            sys.stderr.write(p.stderr)
            return p.returncode
        elif a.cmd == "uplink":
            p = lab.uplink_exec(_split_cmd(a.rest), check=False, timeout=3600)
            sys.stdout.write(p.stdout)
            sys.stderr.write(p.stderr)
            return p.returncode
        elif a.cmd == "guest":
            if a.gcmd == "add":
                print(json.dumps(lab.guest_add(a.name, a.host, a.network, a.kind), sort_keys=True))
            elif a.gcmd == "del":
                if not lab.guest_del(a.name):
                    log("no guest %s" % a.name)
                    return 1
            elif a.gcmd == "exec":
                p = lab.guest_exec(a.name, _split_cmd(a.rest), check=False, timeout=3600)
                sys.stdout.write(p.stdout)
                sys.stderr.write(p.stderr)
                return p.returncode
            else:
                print(json.dumps(lab.state()["guests"], indent=2, sort_keys=True))
    except LabError as exc:
        log("virtlab: %s" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
