# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/lab/personas.py and the persona wrappers in tests/lab/host/ (no root): host naming, the persona
tables, what a host's setup is given (persona_plan, write_persona_dir), and the wrappers run on data files."""
import os
import subprocess
import sys

import pytest

LAB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lab")
sys.path.insert(0, LAB)
import personas  # noqa: E402
import pytargets  # noqa: E402


def test_host_names_count_per_persona():
    assert personas.host_names(["debian12", "el7", "el6"]) == [
        ("debian12-1", "debian12"), ("el7-1", "el7"), ("el6-1", "el6")]
    assert [n for n, dummy in personas.host_names(["debian12", "el7"], 4)] == [
        "debian12-1", "el7-1", "debian12-2", "el7-2"]
    assert personas.host_names([], 1) == [("debian12-1", "debian12")]
    with pytest.raises(ValueError):
        personas.host_names(["el5"])


def test_persona_tables():
    p = personas.PERSONAS
    assert p["el7"]["osrelease"] == "3.10.0-1160.el7.x86_64"
    assert p["el6"]["osrelease"] == "2.6.32-754.el6.x86_64"
    assert p["el7"]["release_files"]["/etc/redhat-release"] == "CentOS Linux release 7.9.2009 (Core)\n"
    assert p["el6"]["release_files"]["/etc/redhat-release"] == "CentOS release 6.10 (Final)\n"
    assert "/etc/os-release" in p["el6"]["hide_files"]
    assert "/etc/os-release" in p["el7"]["release_files"]
    # 2.6.32 has ipt_LOG, not the 3.x nf_log_* / xt_LOG names; 3.10 has both via aliases
    assert "ipt_LOG" in p["el6"]["modules"] and "xt_LOG" not in p["el6"]["modules"]
    assert "nf_log_ipv4" not in p["el6"]["modules"]
    assert {"nf_log_ipv4", "nf_log_ipv6", "xt_LOG", "xt_TRACE"} <= set(p["el7"]["modules"])
    assert "nf_log_syslog" in p["debian12"]["modules"]
    assert p["el6"]["python"] == "/usr/bin/python2.6-does-not-exist"
    assert p["el6"]["iptables"]["version"] == "1.4.7" and not p["el6"]["iptables"]["wait"]
    assert p["el7"]["iptables"]["version"] == "1.4.21" and p["el7"]["iptables"]["wait"]


def test_el8_persona_table():
    p = personas.PERSONAS["el8"]
    assert p["osrelease"] == "4.18.0-553.el8_10.x86_64"
    assert p["release_files"]["/etc/redhat-release"] == "Rocky Linux release 8.10 (Green Obsidian)\n"
    assert 'PLATFORM_ID="platform:el8"' in p["release_files"]["/etc/os-release"]
    assert p["iptables"] is None  # the real nft backend, no version wrapper
    assert {"xtables-legacy-multi", "iptables-legacy", "ip6tables-legacy-restore"} <= set(p["hide_sbin"])
    assert "nf_conntrack_ipv4" in p["modules"] and "nf_log_syslog" not in p["modules"]
    assert pytargets.PERSONA_TARGETS == {"el7": "py27", "el8": "py36"}


def test_rootfs_persona_tables():
    p = personas.PERSONAS
    assert (p["debian11"]["rootfs"], p["debian13"]["rootfs"], p["el10"]["rootfs"]) == ("bullseye", "trixie", "trixie")
    assert p["debian11"]["modules"] == p["debian12"]["modules"] and p["debian13"]["osrelease"] is None
    assert p["el10"]["osrelease"] == "6.12.0-55.el10.x86_64" and p["el10"]["firewall_backend"] == "nftables"
    assert 'PLATFORM_ID="platform:el10"' in p["el10"]["release_files"]["/etc/os-release"]


def test_plans():
    """What each host's setup is told to do (what the setup did when it was built as shell text)."""
    plan = personas.persona_plan("debian12")
    assert plan["install"] == [("modprobe", "/usr/sbin/modprobe")] and plan["hide"] == [] and plan["files"] == {}
    assert plan["real"] == {} and set(plan["data"]) == {"modules", "modprobe_fatal"}
    plan = personas.persona_plan("el6")
    dests = [d for w, d in plan["install"]]
    assert dests == ["/usr/sbin/modprobe", "/usr/bin/uname", "/usr/sbin/iptables", "/usr/sbin/iptables-save",
                     "/usr/sbin/iptables-restore", "/usr/sbin/ip6tables", "/usr/sbin/ip6tables-save",
                     "/usr/sbin/ip6tables-restore", "/usr/sbin/sysctl"]
    assert {"/etc/os-release", "/usr/sbin/nft", "/etc/alternatives/iptables", "/usr/bin/python3"} <= set(plan["hide"])
    assert plan["data"]["iptables_version"] == "1.4.7\n" and plan["data"]["iptables_wait"] == "0\n"
    assert plan["data"]["sysctl_map"] == "ip6t_LOG nf_log_ipv6\nipt_LOG nf_log_ipv4\n"
    plan = personas.persona_plan("el7")
    assert "/usr/bin/python3" not in plan["hide"] and plan["data"]["iptables_wait"] == "1\n"
    assert "/usr/sbin/sysctl" not in [d for w, d in plan["install"]]
    plan = personas.persona_plan("el8")
    assert "/usr/sbin/xtables-legacy-multi" in plan["hide"] and "/etc/alternatives/iptables-legacy" not in plan["hide"]
    plan = personas.persona_plan("el10")
    assert ("tc", "/usr/sbin/tc") in plan["install"] and plan["data"]["firewall_backend"] == "nftables\n"
    assert {"/usr/sbin/iptables-legacy", "/etc/alternatives/iptables-legacy"} <= set(plan["hide"])
    assert personas.persona_plan("debian13")["install"] == [("modprobe", "/usr/sbin/modprobe")]


def _fake(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)


@pytest.fixture
def host(tmp_path):
    """``host(persona)`` -> run(tool, args): the persona's directory written as for a lab host (real programs
    taken from a fake root whose uname, sysctl and tc print what they are asked), its wrappers run on it."""
    root = tmp_path / "root"
    _fake(root / "usr/bin/uname", '[ "$1" = -r ] && echo 6.1.0-x && exit 0\n'
                                  'echo "Linux h 6.1.0-x #1 SMP x86_64 GNU/Linux"\n')
    _fake(root / "usr/sbin/sysctl", 'for a; do printf "ARG %s\\n" "$a"; done\necho "net.netfilter.nf_log.2 = nf_log_ipv4"\n'
                                    'echo nf_log_ipv6\n')
    _fake(root / "usr/sbin/tc", 'echo "real tc $*"\n')

    def make(persona):
        pdir = tmp_path / persona
        plan = personas.write_persona_dir(persona, str(pdir), root=str(root))
        if (pdir / "real" / "xtables-legacy-multi").is_symlink():
            (pdir / "real" / "xtables-legacy-multi").unlink()
            _fake(pdir / "real" / "xtables-legacy-multi",
                  'echo "multi $*"\n[ "$1" = iptables-save ] && echo "# Generated by iptables-save v1.8.9 (legacy) on x"\n'
                  'exit 0\n')

        def run(tool, args):
            env = dict(os.environ, VIRTLAB_PERSONA_DIR=str(pdir))
            return subprocess.run([str(pdir / "bin" / tool)] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  universal_newlines=True, check=False, env=env)
        run.plan, run.dir = plan, pdir
        return run
    return make


def test_persona_dir_as_the_setup_reads_it(host):
    run = host("el7")
    d = run.dir
    assert (d / "files/etc/redhat-release").read_text() == "CentOS Linux release 7.9.2009 (Core)\n"
    assert (d / "install").read_text().splitlines()[:2] == ["modprobe /usr/sbin/modprobe", "uname /usr/bin/uname"]
    assert "/etc/debian_version\n" in (d / "hide").read_text()
    assert (d / "osrelease").read_text() == "3.10.0-1160.el7.x86_64\n"
    for name in ("modprobe", "uname", "iptables", "ip6tables-restore"):
        assert os.access(str(d / "bin" / name), os.X_OK)
    real = host("el6").dir / "real"
    assert sorted(os.listdir(str(real))) == ["sysctl", "uname", "xtables-legacy-multi"]


@pytest.mark.parametrize("persona,module,rc", [
    ("el6", "ipt_LOG", 0), ("el6", "ipt-LOG", 0), ("el6", "nf_log_ipv4", 1), ("el6", "xt_LOG", 1),
    ("el7", "nf_log_ipv4", 0), ("el7", "xt_TRACE", 0), ("el7", "nf_log_syslog", 1),
    ("debian12", "nf_log_syslog", 0), ("debian12", "nf_conntrack_ipv4", 1),
    ("el8", "nft_chain_nat", 0), ("el8", "nf_log_syslog", 1),
])
def test_modprobe(host, persona, module, rc):
    run = host(persona)
    p = run("modprobe", [module])
    assert p.returncode == rc, p.stderr
    if rc:
        assert ("Module %s not found" % module) in p.stderr
    assert run("modprobe", ["-q", "nosuch"]).stderr == ""
    if persona == "el8" and rc:
        assert "4.18.0-553.el8_10.x86_64" in p.stderr


def test_modprobe_fatal_messages_and_options(host):
    assert host("el7")("modprobe", ["x"]).stderr == "modprobe: FATAL: Module x not found.\n"
    run = host("el6")
    assert run("modprobe", ["x"]).stderr == "FATAL: Module x not found.\n"
    assert run("modprobe", []).returncode == 1
    assert run("modprobe", ["-V"]).stdout == "kmod version 20\n"
    assert run("modprobe", ["-r", "ipt_LOG", "nosuch"]).returncode == 1  # -r: every name counts
    assert run("modprobe", ["ipt_LOG", "nosuch"]).returncode == 0       # else only the first


def test_iptables_wrapper_version_wait_and_backend(host):
    el6 = host("el6")
    assert el6("iptables", ["--version"]).stdout == "iptables v1.4.7\n"
    assert el6("ip6tables", ["-V"]).stdout == "ip6tables v1.4.7\n"
    assert el6("iptables-save", ["-V"]).stdout == "iptables-save v1.4.7\n"
    p = el6("iptables", ["-w", "-L"])
    assert p.returncode == 2 and "iptables v1.4.7: unknown option `-w'" in p.stderr
    assert el6("iptables-restore", ["--wait"]).returncode == 2
    el7 = host("el7")
    assert el7("iptables", ["-w", "-L"]).stdout == "multi iptables -w -L\n"
    assert el7("ip6tables-restore", ["-n"]).stdout == "multi ip6tables-restore -n\n"
    assert el7("iptables-restore", ["-w"]).returncode == 2  # restore_wait False on el7 too
    assert el7("iptables-save", ["-t", "raw"]).stdout == (
        "multi iptables-save -t raw\n# Generated by iptables-save v1.4.21 on x\n")


def test_sysctl_wrapper_translates_logger_names(host):
    p = host("el6")("sysctl", ["-w", "net.netfilter.nf_log.2=ipt_LOG", "kernel.x = ip6t_LOG"])
    assert "ARG net.netfilter.nf_log.2=nf_log_ipv4\n" in p.stdout and "ARG kernel.x = nf_log_ipv6\n" in p.stdout
    assert "ARG -w\n" in p.stdout
    p = host("el6")("sysctl", ["-w", "kernel.x=a b\\n"])  # other arguments pass as they are, one each
    assert "ARG kernel.x=a b\\n\n" in p.stdout
    assert "net.netfilter.nf_log.2 = ipt_LOG\n" in p.stdout
    assert "\nip6t_LOG\n" in p.stdout


def test_uname_wrapper(host):
    assert host("el7")("uname", ["-r"]).stdout == "3.10.0-1160.el7.x86_64\n"
    assert "Linux h 2.6.32-754.el6.x86_64 #1" in host("el6")("uname", ["-a"]).stdout


def test_tc_shim_passes_other_calls_to_the_real_tc(host):
    """The shimmed "action csum" call logs to the host's /var/log/libvirt, so it is not run here: without it
    libvirt 11 cannot start an el10 host's default network, which every el10 lab up waits for."""
    run = host("el10")
    assert run("tc", ["qdisc", "show"]).stdout == "real tc qdisc show\n"
    assert run("tc", ["filter", "show", "csum"]).stdout == "real tc filter show csum\n"


def test_host_scripts_parse():
    for name in sorted(os.listdir(os.path.join(LAB, "host"))):
        p = subprocess.run(["sh", "-n", os.path.join(LAB, "host", name)], stderr=subprocess.PIPE,
                           universal_newlines=True, check=False)
        assert p.returncode == 0, (name, p.stderr)
