# SPDX-License-Identifier: GPL-3.0-or-later
"""virtlab personas: what a probe on a lab host sees (release files, kernel release, iptables version and
backend, module names, Python), and the files a host's setup reads to become one (``write_persona_dir``).

What each persona emulates and what it cannot prove: README.md beside this file. The wrappers it installs
are shell scripts in ``host/`` (modprobe, iptables, sysctl, uname, tc), fed by data files, never by shell
text built here. Stdlib only; runs with any Python 3.6+.
"""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
HOST_SCRIPTS = os.path.join(HERE, "host")

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
# ---- personas whose userland is a real Debian tree (tests/lab/rootfs.py builds it) --------------
_EL10_RELEASE = "CentOS Stream release 10 (Coughlan)\n"
_EL10_OS_RELEASE = (
    'NAME="CentOS Stream"\nVERSION="10 (Coughlan)"\nID="centos"\nID_LIKE="rhel fedora"\n'
    'VERSION_ID="10"\nPLATFORM_ID="platform:el10"\nPRETTY_NAME="CentOS Stream 10 (Coughlan)"\n'
    'ANSI_COLOR="0;31"\nCPE_NAME="cpe:/o:centos:centos:10"\nHOME_URL="https://centos.org/"\n'
    'VENDOR_NAME="CentOS"\nREDHAT_SUPPORT_PRODUCT="Red Hat Enterprise Linux 10"\n'
    'REDHAT_SUPPORT_PRODUCT_VERSION="CentOS Stream"\n')
# the iptables-legacy front ends that EL10 does not ship (its iptables is the nf_tables one)
EL10_NO_LEGACY = ["iptables-legacy", "iptables-legacy-save", "iptables-legacy-restore", "ip6tables-legacy",
                  "ip6tables-legacy-save", "ip6tables-legacy-restore", "xtables-legacy-multi"]
# all rootfs personas run on this machine's kernel, and only el10 pretends another kernel release
_ROOTFS_COMMON = {"family": "debian", "release_files": {}, "hide_files": [], "osrelease": None,
                  "iptables": None, "modules": PERSONAS["debian12"]["modules"],
                  "modprobe_fatal": PERSONAS["debian12"]["modprobe_fatal"],
                  "python": "/usr/bin/python3", "sysctl_map": {}}
PERSONAS.update({
    "debian11": dict(_ROOTFS_COMMON, rootfs="bullseye"),
    "debian13": dict(_ROOTFS_COMMON, rootfs="trixie"),
    "el10": dict(_ROOTFS_COMMON, rootfs="trixie", family="redhat",
                 release_files={"/etc/redhat-release": _EL10_RELEASE, "/etc/centos-release": _EL10_RELEASE,
                                "/etc/system-release": _EL10_RELEASE, "/etc/os-release": _EL10_OS_RELEASE},
                 hide_files=["/etc/debian_version", "/etc/lsb-release"],
                 osrelease="6.12.0-55.el10.x86_64",
                 modprobe_fatal="modprobe: FATAL: Module %s not found in directory /lib/modules/6.12.0-55.el10.x86_64",
                 # libvirt's network.conf; tc: libvirt 11's nftables backend needs act_csum (host/tc.sh)
                 firewall_backend="nftables", hide_sbin=EL10_NO_LEGACY, tc_shim=True),
})
HIDE_PYTHON = ["python", "python2", "python2.7", "python3", "python3.11", "pydoc3", "pydoc3.11",
               "python3-config", "python3.11-config", "py3compile", "py3clean"]
HIDE_NFT = ["nft", "iptables-nft", "iptables-nft-save", "iptables-nft-restore", "ip6tables-nft",
            "ip6tables-nft-save", "ip6tables-nft-restore", "iptables-legacy", "iptables-legacy-save",
            "iptables-legacy-restore", "ip6tables-legacy", "ip6tables-legacy-save",
            "ip6tables-legacy-restore", "iptables-translate", "ip6tables-translate",
            "iptables-restore-translate", "ip6tables-restore-translate"]
IPTABLES_TOOLS = ["iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"]


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


def persona_plan(persona):
    """What a host's setup does to become ``persona``, as data: dict(
    ``data``: {file name: text} the wrappers and the setup read (modules, modprobe_fatal, osrelease,
    iptables_version, iptables_wait, iptables_restore_wait, sysctl_map, firewall_backend);
    ``files``: {absolute path in the host: text} release files written;
    ``hide``: [absolute paths] removed; ``install``: [(wrapper, dest)]: host/<wrapper>.sh installed as dest;
    ``real``: {name: path} the real programs the wrappers run, as seen in the host)."""
    p = PERSONAS[persona]
    data, hide, install, real = {}, [], [], {}
    if p["modules"] is not None:
        data["modules"] = "".join(m + "\n" for m in p["modules"])
        data["modprobe_fatal"] = p["modprobe_fatal"] + "\n"
        install.append(("modprobe", "/usr/sbin/modprobe"))
    hide += list(p["hide_files"]) + ["/usr/sbin/%s" % b for b in p.get("hide_sbin", [])]
    if p["osrelease"]:
        data["osrelease"] = p["osrelease"] + "\n"
        install.append(("uname", "/usr/bin/uname"))
        real["uname"] = "/usr/bin/uname"
    if p["iptables"]:
        ipt = p["iptables"]
        data["iptables_version"] = ipt["version"] + "\n"
        data["iptables_wait"] = "%d\n" % bool(ipt["wait"])
        data["iptables_restore_wait"] = "%d\n" % bool(ipt["restore_wait"])
        hide += ["/etc/alternatives/%s" % t for t in IPTABLES_TOOLS] + ["/usr/sbin/%s" % b for b in HIDE_NFT]
        install += [("iptables", "/usr/sbin/%s" % t) for t in IPTABLES_TOOLS]
        real["xtables-legacy-multi"] = "/usr/sbin/xtables-legacy-multi"
    if p["sysctl_map"]:
        data["sysctl_map"] = "".join("%s %s\n" % kv for kv in sorted(p["sysctl_map"].items()))
        install.append(("sysctl", "/usr/sbin/sysctl"))
        real["sysctl"] = "/usr/sbin/sysctl"
    if not p["python"].startswith("/usr/bin/python3"):
        hide += ["/usr/bin/%s" % b for b in HIDE_PYTHON]
    if p.get("firewall_backend"):
        data["firewall_backend"] = p["firewall_backend"] + "\n"
    if p.get("rootfs"):  # what EL10 does not ship, with the alternatives pointing at it
        hide += ["/etc/alternatives/%s" % b for b in p.get("hide_sbin", [])]
    if p.get("tc_shim"):
        install.append(("tc", "/usr/sbin/tc"))
        real["tc"] = "/usr/sbin/tc"
    return {"data": data, "files": dict(p["release_files"]), "hide": hide, "install": install, "real": real}


def write_persona_dir(persona, pdir, root="/"):
    """Write what host/setup.sh reads for ``persona`` into ``pdir`` (the host's $H/persona), afresh:
    the data files, ``files/`` (release files at their path), ``hide``, ``install`` ("WRAPPER DEST" lines),
    ``bin/`` (the wrappers) and ``real/`` (copies of the real programs taken from ``root``, the tree the
    host runs: the wrapper replaces the program in the host, so it cannot run that one)."""
    plan = persona_plan(persona)
    shutil.rmtree(pdir, ignore_errors=True)
    for sub in ("bin", "real", "files"):
        os.makedirs(os.path.join(pdir, sub))

    def write(path, text, mode=0o644):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
    for name, text in plan["data"].items():
        write(os.path.join(pdir, name), text)
    for path, text in plan["files"].items():
        if not path.startswith("/etc/"):
            raise ValueError("persona %s: release file %s is not under /etc" % (persona, path))
        write(os.path.join(pdir, "files", path.lstrip("/")), text)
    write(os.path.join(pdir, "hide"), "".join(p + "\n" for p in plan["hide"]))
    write(os.path.join(pdir, "install"), "".join("%s %s\n" % (os.path.basename(dest), dest) for dummy, dest in plan["install"]))
    for wrapper, dest in plan["install"]:
        shutil.copyfile(os.path.join(HOST_SCRIPTS, wrapper + ".sh"), os.path.join(pdir, "bin", os.path.basename(dest)))
        os.chmod(os.path.join(pdir, "bin", os.path.basename(dest)), 0o755)
    for name, path in plan["real"].items():
        if name == "xtables-legacy-multi":  # a multi-call binary nothing replaces: the host's own
            os.symlink(path, os.path.join(pdir, "real", name))
        else:
            shutil.copy2(os.path.join(root, path.lstrip("/")), os.path.join(pdir, "real", name))
    return plan
