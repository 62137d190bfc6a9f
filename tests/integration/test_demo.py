# SPDX-License-Identifier: GPL-3.0-or-later
"""`make demo` (scripts/demo.sh) on the el10 persona: libvirt's nftables backend. The demo brings up its
own one-host lab (named after the test run's lab, $VIRTLAB_NAME, suffix ``d``), declares the NAT network, traces a
guest's TCP connection to the uplink 10.44.32.217:3128 and explains it; the explanation must name
libvirt's nft chains, and the demo's lab must be gone afterwards.

Run: VIRTLAB_NAME=nft .venv/bin/python -m pytest -q -m integration -p no:xdist tests/integration/test_demo.py
"""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def demo_lab_name():
    name = os.environ.get("VIRTLAB_NAME") or "it"
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        name = "%s-%s" % (name, worker)
    return name[:11] + "d"


def test_demo_on_el10_explains_libvirt_nft_chains(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    name = demo_lab_name()
    env = dict(os.environ, DEMO_LAB=name, DEMO_PERSONA="el10", DEMO_REPORT_DIR=str(tmp_path), KEEP="0")
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "demo.sh")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = (tmp_path / "explain-el10-1.txt").read_text(encoding="utf-8")
    assert "Host el10-1 (el10), read with nft (nfnetlink)" in text, text
    assert 'FORWARD accepted by nftables libvirt_network:guest_output (out bond0): rule ip saddr 192.168.122.0/24 ' \
           'iif "virbr0"' in text, text
    assert "NAT     nftables libvirt_network:guest_nat (hook POSTROUTING)" in text, text
    assert "masquerade to :1024-65535" in text and "de-NATs the destination" in text, text
    assert "LIBVIRT_" not in text
    assert text in out.stdout                     # the demo prints what it wrote
    assert "TRACE rules of ours left on the host after the run: 0" in out.stdout
    assert (tmp_path / "trace-el10-1.html").stat().st_size > 0
    assert not os.path.exists("/run/virtnet-%s" % name), "the demo's lab was not taken down"
