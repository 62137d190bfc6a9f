# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/lab/matrix.py: merging several runs' results and versions into docs/matrix.md."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))
import matrix  # noqa: E402


def _dump(path, data):
    with open(path, "w") as f:
        json.dump(data, f)


def test_runs_merge_into_one_table(tmp_path):
    d = str(tmp_path)
    _dump(os.path.join(d, "versions-it-1.json"), {"el7": {"python": "3.11.2 (/usr/bin/python3)", "libvirt": "9.0.0"},
                                                  "debian11": {"libvirt": "7.0.0"}})
    _dump(os.path.join(d, "versions-it-el7-2.json"), {"el7": {"python": "2.7.18 (/opt/py27)", "libvirt": "9.0.0"}})
    _dump(os.path.join(d, "results-it-1.json"), [
        {"nodeid": "tests/integration/test_nf_log.py::t[el7-1]", "suite": "nf_log", "host": "el7-1",
         "outcome": "passed", "reason": ""},
        {"nodeid": "tests/integration/test_network.py::a", "suite": "network", "host": "debian11-1",
         "outcome": "failed", "reason": ""}])
    _dump(os.path.join(d, "results-it-el7-2.json"), [
        {"nodeid": "tests/integration/test_network.py::b", "suite": "network", "host": "el7-1",
         "outcome": "skipped", "reason": "no Python 2.7 here"}])
    out = os.path.join(d, "m.md")
    matrix.write(out, d)
    text = open(out).read()
    el7 = [line for line in text.splitlines() if line.startswith("| el7 |")]
    assert "3.11.2 (/usr/bin/python3) / 2.7.18 (/opt/py27)" in el7[0]        # both lanes' interpreters
    assert el7[1] == "| el7 | skipped 1 | passed 1 |"                         # network, nf_log
    assert "| debian11 | **FAILED 1** | \u2014 |" in text
    assert "- el7-1 / network: no Python 2.7 here" in text
    assert "- `tests/integration/test_network.py::a`" in text


def test_suite_and_host_names():
    assert matrix.suite_of("tests/integration/test_trace_capture.py::test_x[el6-1]") == "trace_capture"
    assert matrix.HOST_RE.match("debian13-1").group(1) == "debian13"
    assert not matrix.HOST_RE.match("nat")


def test_readme_table_from_the_summary(tmp_path):
    d = str(tmp_path)
    _dump(os.path.join(d, "versions-it-1.json"), {"el6": {"python": "none (/usr/bin/python2.6 absent)",
                                                          "libvirt": "9.0.0", "iptables": "iptables v1.4.7"},
                                                  "el10": {"python": "3.13.5 (/usr/bin/python3)", "libvirt": "11.3.0",
                                                           "iptables": "iptables v1.8.11 (nf_tables)",
                                                           "firewall_backend": "nftables"}})
    _dump(os.path.join(d, "results-it-1.json"), [
        {"nodeid": "a", "suite": "network", "host": "el10-1", "outcome": "passed", "reason": ""},
        {"nodeid": "b", "suite": "network", "host": "el10-1", "outcome": "failed", "reason": ""},
        {"nodeid": "c", "suite": "trace_rule", "host": "el6-1", "outcome": "passed", "reason": ""}])
    readme = os.path.join(d, "README.md")
    with open(readme, "w") as f:
        f.write("intro\n%s\nold table\n%s\noutro\n" % (matrix.README_BEGIN, matrix.README_END))
    matrix.write(os.path.join(d, "m.md"), d, json_path=os.path.join(d, "m.json"), readme=readme)
    text = open(readme).read()
    assert text.startswith("intro\n") and text.endswith("\noutro\n") and "old table" not in text
    rows = text.splitlines()
    assert rows.index("| el6 (CentOS 6 / EL6) | none usable (tracing needs none) | 9.0.0 | v1.4.7 | iptables (default) "
                      "| trace_rule 1 |") < [i for i, r in enumerate(rows) if r.startswith("| el10 ")][0]
    assert "| el10 (EL10 (CentOS Stream 10), Fedora 41+) | 3.13.5 | 11.3.0 | v1.8.11 (nf_tables) | nftables " \
           "| network 1 (**1 failed**) |" in rows


def test_committed_readme_table_is_the_committed_matrix():
    """README.md's support table is what docs/matrix.json (written by the same `make matrix`) renders."""
    root = os.path.join(os.path.dirname(__file__), "..", "..", "..")
    with open(os.path.join(root, "docs", "matrix.json")) as f:
        data = json.load(f)
    with open(os.path.join(root, "README.md")) as f:
        text = f.read()
    block = text.split(matrix.README_BEGIN, 1)[1].split(matrix.README_END, 1)[0]
    assert block == "\n" + matrix.readme_table(data)


def _probe_backend(tmp_path, conf_text):
    import subprocess
    conf = tmp_path / "network.conf"
    if conf_text is not None:
        conf.write_text(conf_text)
    env = dict(os.environ, VIRTLAB_NETCONF=str(conf))
    out = subprocess.run(["sh", "-c", matrix.PROBE, "probe", "/nonexistent"], env=env,
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    return [line.split("=", 1)[1] for line in out.splitlines() if line.startswith("firewall_backend=")][0]


def test_probe_reads_the_firewall_backend_libvirt_uses(tmp_path):
    # set explicitly (the el10 persona appends it after the commented default)
    assert _probe_backend(tmp_path, '#firewall_backend = "iptables"\nfirewall_backend = "nftables"\n') == "nftables"
    # unset on libvirt >= 10.4: the commented line is the build's default (Debian 13's network.conf)
    assert _probe_backend(tmp_path, '#   first available backend\n#firewall_backend = "iptables"\n') == \
        "iptables (build default)"
    # libvirt < 10.4's network.conf has no such option: iptables is the only backend
    assert _probe_backend(tmp_path, '# Master configuration file\n') == "iptables (only one before libvirt 10.4)"
    # libvirt 7.0 (Debian 11) installs no network.conf at all
    assert _probe_backend(tmp_path, None) == "iptables (only one before libvirt 10.4)"
