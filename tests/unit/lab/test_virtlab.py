# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/lab/virtlab.py and the Lab class (netnslab.py) without root: the inventory, lab names and paths,
the API other code imports, the command line's parsing."""
import os
import shlex
import subprocess
import sys

import pytest
import yaml

LAB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lab")
sys.path.insert(0, LAB)
import pytargets  # noqa: E402
import virtlab  # noqa: E402


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


def test_api_names_other_code_imports():
    """tests/integration, bench/, molecule/ and matrix.py use these as virtlab.X."""
    for name in ("Lab", "LabError", "PERSONAS", "host_names", "render_inventory", "link_mac", "main"):
        assert hasattr(virtlab, name), name
    assert virtlab.Lab("x").up.__doc__ and issubclass(virtlab.LabError, RuntimeError)


def test_cli_parses_without_touching_anything():
    p = subprocess.run([sys.executable, os.path.join(LAB, "virtlab.py"), "up", "--persona", "el5"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert p.returncode == 2 and "invalid choice: 'el5'" in p.stderr
    p = subprocess.run([sys.executable, os.path.join(LAB, "virtlab.py"), "--help"],
                       stdout=subprocess.PIPE, universal_newlines=True, check=False)
    assert p.returncode == 0 and "{up,down,status,inventory,exec,uplink,guest}" in p.stdout


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
