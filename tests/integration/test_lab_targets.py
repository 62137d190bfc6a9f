# SPDX-License-Identifier: GPL-3.0-or-later
"""Which Python the lab's modules really run on, read from the hosts through Ansible.

el7 and el8 run modules on the real CPython 2.7 / 3.6 built by tests/lab/pytargets.py when the
controller's ansible-core can (<= 2.16), else on /usr/bin/python3 (an emulation, README)."""
import subprocess

import pytest
from ansible.release import __version__ as ansible_version

import pytargets

OLD_CORE = tuple(int(x) for x in ansible_version.split(".")[:2]) < (2, 17)


def _debian_python():
    return subprocess.run(["/usr/bin/python3", "-c", "import platform; print(platform.python_version())"],
                          stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout.strip()


def test_module_python_per_persona(lab, run_module):
    hosts = [(h, i["persona"]) for h, i in lab.state()["hosts"].items() if i["persona"] != "el6"]
    assert hosts
    for host, persona in hosts:
        res = run_module(host, "ansible.builtin.setup", filter=["ansible_python_version", "ansible_python"])
        assert not res["failed"], res
        facts = res["ansible_facts"]
        target = pytargets.PERSONA_TARGETS.get(persona)
        if target and OLD_CORE and pytargets.interpreter(target):
            assert facts["ansible_python_version"] == pytargets.TARGETS[target]["python"], (host, facts)
            assert facts["ansible_python"]["executable"] == pytargets.interpreter(target)
        else:
            assert facts["ansible_python_version"] == _debian_python(), (host, ansible_version, facts)
            assert facts["ansible_python"]["executable"] == "/usr/bin/python3"


def test_real_targets_import_their_pinned_libraries(lab):
    built = [t for t in sorted(pytargets.TARGETS) if pytargets.interpreter(t)]
    if not built:
        pytest.skip("no target Python built here: %s" % "; ".join(
            "%s: %s" % (t, pytargets.skip_reason(t)) for t in sorted(pytargets.TARGETS)))
    host = next(h for h, i in lab.state()["hosts"].items() if i["persona"] == "el7")
    for target in built:  # inside a lab host: /root hidden, its own mount namespace
        out = lab.exec(host, [pytargets.interpreter(target), "-c",
                              "import libvirt, lxml.etree, pkg_resources, platform; print(' '.join(["
                              "platform.python_version(), pkg_resources.get_distribution('libvirt-python').version,"
                              " '.'.join(map(str, lxml.etree.LXML_VERSION[:3])),"
                              " str(libvirt.open('qemu:///system').networkLookupByName('default').isActive())]))"]
                       ).stdout.split()
        t = pytargets.TARGETS[target]
        assert out == [t["python"], t["libvirt_python"], t["wheels"][0].split("==")[1], "1"], (target, out)
