# SPDX-License-Identifier: GPL-3.0-or-later
"""virtlab pure helpers: host naming, persona tables, generated scripts, inventory (no root)."""
import os
import shlex
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))
import virtlab  # noqa: E402


def test_host_names_count_per_persona():
    assert virtlab.host_names(["debian12", "el7", "el6"]) == [
        ("debian12-1", "debian12"), ("el7-1", "el7"), ("el6-1", "el6")]
    assert [n for n, dummy in virtlab.host_names(["debian12", "el7"], 4)] == [
        "debian12-1", "el7-1", "debian12-2", "el7-2"]
    assert virtlab.host_names([], 1) == [("debian12-1", "debian12")]
    with pytest.raises(ValueError):
        virtlab.host_names(["el5"])


def test_persona_tables():
    p = virtlab.PERSONAS
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


def _sh(script, args, tmp_path, name="tool"):
    path = tmp_path / name
    path.write_text(script)
    path.chmod(0o755)
    return subprocess.run([str(path)] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)


@pytest.mark.parametrize("persona,module,rc", [
    ("el6", "ipt_LOG", 0), ("el6", "ipt-LOG", 0), ("el6", "nf_log_ipv4", 1), ("el6", "xt_LOG", 1),
    ("el7", "nf_log_ipv4", 0), ("el7", "xt_TRACE", 0), ("el7", "nf_log_syslog", 1),
    ("debian12", "nf_log_syslog", 0), ("debian12", "nf_conntrack_ipv4", 1),
])
def test_modprobe_script(tmp_path, persona, module, rc):
    p = _sh(virtlab.modprobe_script(persona), [module], tmp_path)
    assert p.returncode == rc, p.stderr
    if rc:
        assert ("Module %s not found" % module) in p.stderr
    assert _sh(virtlab.modprobe_script(persona), ["-q", "nosuch"], tmp_path).stderr == ""


def test_modprobe_fatal_messages(tmp_path):
    assert _sh(virtlab.modprobe_script("el7"), ["x"], tmp_path).stderr == "modprobe: FATAL: Module x not found.\n"
    assert _sh(virtlab.modprobe_script("el6"), ["x"], tmp_path).stderr == "FATAL: Module x not found.\n"


def test_iptables_wrapper_version_and_wait(tmp_path):
    p = _sh(virtlab.iptables_script("el6", "iptables"), ["--version"], tmp_path)
    assert p.stdout == "iptables v1.4.7\n"
    p = _sh(virtlab.iptables_script("el6", "ip6tables"), ["-V"], tmp_path)
    assert p.stdout == "ip6tables v1.4.7\n"
    p = _sh(virtlab.iptables_script("el6", "iptables"), ["-w", "-L"], tmp_path)
    assert p.returncode == 2 and "unknown option `-w'" in p.stderr
    assert "unknown option" not in virtlab.iptables_script("el7", "iptables")
    assert "iptables-save v1.4.21" in virtlab.iptables_script("el7", "iptables-save")
    for tool in ("iptables", "iptables-save", "iptables-restore"):
        assert "xtables-legacy-multi %s" % tool in virtlab.iptables_script("el7", tool)


def test_sysctl_wrapper_translates_logger_names(tmp_path):
    fake = tmp_path / "fake-sysctl"
    fake.write_text('#!/bin/sh\nfor a; do echo "ARG $a"; done\necho "net.netfilter.nf_log.2 = nf_log_ipv4"\n'
                    'echo nf_log_ipv6\n')
    fake.chmod(0o755)
    p = _sh(virtlab.sysctl_script("el6", str(fake)), ["-w", "net.netfilter.nf_log.2=ipt_LOG"], tmp_path)
    assert "ARG net.netfilter.nf_log.2=nf_log_ipv4" in p.stdout
    assert "net.netfilter.nf_log.2 = ipt_LOG" in p.stdout
    assert "\nip6t_LOG\n" in p.stdout


def test_uname_wrapper(tmp_path):
    fake = tmp_path / "fake-uname"
    fake.write_text('#!/bin/sh\n[ "$1" = -r ] && echo 6.1.0-x && exit 0\necho "Linux h 6.1.0-x #1 SMP x86_64 GNU/Linux"\n')
    fake.chmod(0o755)
    assert _sh(virtlab.uname_script("el7", str(fake)), ["-r"], tmp_path).stdout == "3.10.0-1160.el7.x86_64\n"
    assert "Linux h 2.6.32-754.el6.x86_64 #1" in _sh(virtlab.uname_script("el6", str(fake)), ["-a"], tmp_path).stdout


def test_inventory_rendering():
    hosts = [{"name": "debian12-1", "persona": "debian12", "mgmt_ip": "172.31.255.10", "netns": "vn-x-debian12-1",
              "bond0_ip": "10.44.32.10"},
             {"name": "el6-1", "persona": "el6", "mgmt_ip": "172.31.255.11", "netns": "vn-x-el6-1",
              "bond0_ip": "10.44.32.11"}]
    text = virtlab.render_inventory("x", hosts, "/run/virtnet-x/id_ed25519", "vn-x-mgmt", relay="/r/relay.py",
                                    state_dir="/run/virtnet-x")
    inv = yaml.safe_load(text)
    hv = inv["all"]["children"]["hypervisors"]["hosts"]
    assert set(hv) == {"debian12-1", "el6-1"}
    assert set(inv["all"]["children"]["el6"]["hosts"]) == {"el6-1"}
    assert set(inv["all"]["children"]["debian12"]["hosts"]) == {"debian12-1"}
    d = hv["debian12-1"]
    assert d["ansible_host"] == "172.31.255.10" and d["ansible_user"] == "root"
    assert d["ansible_python_interpreter"] == "/usr/bin/python3"
    assert hv["el6-1"]["ansible_python_interpreter"] == "/usr/bin/python2.6-does-not-exist"
    assert d["virtlab_uplink_ip"] == "10.44.32.217" and d["virtlab_netns"] == "vn-x-debian12-1"
    assert d["virtlab_lab"] == "x" and d["virtlab_persona"] == "debian12"
    assert d["ansible_control_path_dir"] == "/run/virtnet-x/cp"
    args = shlex.split(d["ansible_ssh_common_args"])
    assert "ProxyCommand=nsenter --net=/run/netns/vn-x-mgmt /usr/bin/python3 /r/relay.py %h 22" in args
    assert "StrictHostKeyChecking=no" in args and "UserKnownHostsFile=/dev/null" in args


def test_lab_names_and_paths():
    lab = virtlab.Lab("nf")
    assert lab.dir == "/run/virtnet-nf"
    assert lab.inventory_path == "/run/virtnet-nf/inventory.yml"
    assert lab.host_netns("el7-1") == "vn-nf-el7-1"
    assert lab.mgmt_ns == "vn-nf-mgmt" and lab.uplink_ns == "vn-nf-uplink"
    for bad in ("A", "x" * 13, "a/b", "-a"):
        with pytest.raises(virtlab.LabError):
            virtlab.Lab(bad)


def test_lab_default_name(monkeypatch):
    monkeypatch.delenv("VIRTLAB_NAME", raising=False)
    assert virtlab.Lab().name == "lab"
    monkeypatch.setenv("VIRTLAB_NAME", "net")
    assert virtlab.Lab().name == "net"


# ---- real target Pythons (pytargets.py) and the el8 persona ---------------------------------
import pytargets  # noqa: E402  (tests/lab is on sys.path above)


def test_el8_persona_table():
    p = virtlab.PERSONAS["el8"]
    assert p["osrelease"] == "4.18.0-553.el8_10.x86_64"
    assert p["release_files"]["/etc/redhat-release"] == "Rocky Linux release 8.10 (Green Obsidian)\n"
    assert 'PLATFORM_ID="platform:el8"' in p["release_files"]["/etc/os-release"]
    assert p["iptables"] is None  # the real nft backend, no version wrapper
    assert {"xtables-legacy-multi", "iptables-legacy", "ip6tables-legacy-restore"} <= set(p["hide_sbin"])
    assert "nf_conntrack_ipv4" in p["modules"] and "nf_log_syslog" not in p["modules"]
    assert pytargets.PERSONA_TARGETS == {"el7": "py27", "el8": "py36"}


@pytest.mark.parametrize("persona,module,rc", [("el8", "nft_chain_nat", 0), ("el8", "nf_log_syslog", 1)])
def test_el8_modprobe(tmp_path, persona, module, rc):
    p = _sh(virtlab.modprobe_script(persona), [module], tmp_path)
    assert p.returncode == rc, p.stderr
    if rc:
        assert "4.18.0-553.el8_10.x86_64" in p.stderr


def _inventory(persona):
    hosts = [{"name": "%s-1" % persona, "persona": persona, "mgmt_ip": "172.31.255.10",
              "netns": "vn-x-%s-1" % persona, "bond0_ip": "10.44.32.10"}]
    return yaml.safe_load(virtlab.render_inventory("x", hosts, "/k", "vn-x-mgmt", relay="/r.py"))[
        "all"]["children"]["hypervisors"]["hosts"]["%s-1" % persona]


def test_inventory_uses_real_target_python_when_built(monkeypatch):
    monkeypatch.setattr(pytargets, "interpreter", lambda t: "/var/cache/virtlab/pytargets/%s/bin/python" % t)
    h = _inventory("el7")
    assert h["virtlab_target_python"] == "/var/cache/virtlab/pytargets/py27/bin/python"
    assert h["virtlab_target_python_version"] == "2.7.18"
    assert h["ansible_python_interpreter"] == (
        "{{ virtlab_target_python if ansible_version.full is version('2.17', '<') else '/usr/bin/python3' }}")
    assert _inventory("el8")["virtlab_target_python_version"] == "3.6.15"
    assert _inventory("debian12")["ansible_python_interpreter"] == "/usr/bin/python3"


def test_inventory_falls_back_with_reason_when_not_built(monkeypatch):
    monkeypatch.setattr(pytargets, "interpreter", lambda t: None)
    monkeypatch.setattr(pytargets, "pyenv_prefix", lambda v: (None, "pyenv is not installed"))
    h = _inventory("el7")
    assert h["ansible_python_interpreter"] == "/usr/bin/python3" and h["virtlab_target_python"] == ""
    assert h["virtlab_target_python_skip"] == "pyenv is not installed"


def test_pytargets_recipe_key_names_versions_and_changes_with_the_recipe(monkeypatch):
    key = pytargets.recipe_key("py27")
    assert key.startswith("py27-cpython2.7.18-libvirt5.10.0-lxml4.9.4-")
    monkeypatch.setitem(pytargets.TARGETS, "py27", dict(pytargets.TARGETS["py27"], wheels=["lxml==4.9.3"]))
    assert pytargets.recipe_key("py27") != key


def test_generator_patch_drops_apis_newer_than_the_binding(tmp_path):
    """The patch, applied to the block of libvirt-python 5.10.0's generator.py it targets, makes
    the parser forget a <function> whose version is newer than 5.10.0 and keep older ones."""
    old = pytargets.GENERATOR_PATCH[0][0]
    (tmp_path / "generator.py").write_text(
        "class P:\n    def start(self, attrs):\n        if True:\n            self.function = attrs['name']\n" + old
        + "        return self.function\n")
    pytargets.patch_generator(str(tmp_path))
    ns = {}
    exec(compile((tmp_path / "generator.py").read_text(), "generator.py", "exec"), ns)
    start = ns["P"]().start
    assert start({"name": "virDomainDefineXML", "module": "m", "version": "0.1.1"}) == "virDomainDefineXML"
    assert start({"name": "virNodeDeviceDefineXML", "module": "m", "version": "7.3.0"}) is None
    assert start({"name": "virDomainSetLaunchSecurityState", "module": "m", "version": "5.10.1"}) is None
    (tmp_path / "generator.py").write_text("# another release's generator\n")
    with pytest.raises(RuntimeError):
        pytargets.patch_generator(str(tmp_path))  # a changed sdist is noticed, not half-patched
