# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/lab/pytargets.py: the real old target Pythons' recipes and the libvirt-python generator patch."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lab"))
import pytargets  # noqa: E402


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
