# SPDX-License-Identifier: GPL-3.0-or-later
"""The persona x suite matrix of an integration run (docs/matrix.md).

The integration conftest feeds it: ``record_versions(lab, dir)`` once per lab (versions read
from the hosts themselves: libvirtd --version, iptables --version, nft --version, the inventory's
Python, the release file and kernel release the host shows), ``collect(report)`` for every test
report (the host a test ran on travels in ``report.user_properties``, so this works under xdist),
and ``dump(dir)`` at the end of the session (results-<lab>-<pid>.json). `make test` runs several
sessions (the main run, VIRTLAB_TARGET=el7/el8 under ansible-core 2.16, VIRTLAB_TARGET=debian11/
debian13/el10); ``python3 tests/lab/matrix.py build/matrix docs/matrix.md`` merges them all into
the table. Nothing here is typed in by hand.
"""
import glob
import json
import os
import re
import time

SUITES = ["network", "guest_interface", "network_corpus", "nf_log", "trace_rule", "log_rule",
          "trace_capture", "playbooks", "lab"]
_RESULTS = []
HOST_RE = re.compile(r"^([a-z]+[0-9]+)-[0-9]+$")

PROBE = r"""
v() { "$@" 2>&1 | head -n 1; }
echo "os=$( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") || head -n 1 /etc/redhat-release 2>/dev/null)"
echo "kernel=$(uname -r)"
echo "libvirt=$(v libvirtd --version | sed 's/^libvirtd (libvirt) //')"
echo "qemu=$(v qemu-system-x86_64 --version | sed 's/^QEMU emulator version //')"
echo "iptables=$(v iptables --version)"
echo "nft=$(command -v nft >/dev/null 2>&1 && v nft --version || echo absent)"
# the backend libvirt uses: network.conf's setting; unset, the build's default (libvirt >= 10.4 writes it as
# the commented "#firewall_backend = ..." line); without the option or the file (libvirt < 10.4): iptables only
conf=${VIRTLAB_NETCONF:-/etc/libvirt/network.conf}
fb=$(sed -n 's/^firewall_backend *= *"\(.*\)"/\1/p' "$conf" 2>/dev/null | tail -n 1)
if [ -z "$fb" ]; then
  fb=$(sed -n 's/^#firewall_backend *= *"\(.*\)"/\1/p' "$conf" 2>/dev/null | tail -n 1)
  if [ -n "$fb" ]; then fb="$fb (build default)"; else fb="iptables (only one before libvirt 10.4)"; fi
fi
echo "firewall_backend=$fb"
if [ -x "$1" ]; then echo "python=$("$1" -c 'import sys; print(sys.version.split()[0])') ($1)"; else echo "python=none ($1 absent)"; fi
"""


def host_of(item):
    """The lab host a test item runs on: its ``userland``/``host`` parameter, else its module's HOST."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    for key in ("userland", "host"):
        val = params.get(key)
        if isinstance(val, str) and HOST_RE.match(val):
            return val
    host = getattr(item.module, "HOST", None) if getattr(item, "module", None) else None
    return host if isinstance(host, str) else None


def suite_of(nodeid):
    base = os.path.basename(nodeid.split("::", 1)[0])
    return re.sub(r"^test_|\.py$", "", base)


def collect(report):
    host = dict(report.user_properties).get("virtlab_host") if report.user_properties else None
    if report.when == "call" or (report.when == "setup" and not report.passed) or \
            (report.when == "teardown" and report.failed):
        reason = ""
        if report.skipped and isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2]).replace("Skipped: ", "")
        outcome = "error" if report.failed and report.when != "call" else report.outcome
        if getattr(report, "wasxfail", None) is not None:
            outcome, reason = "xfailed", "known failure: " + str(report.wasxfail)
        _RESULTS.append({"nodeid": report.nodeid, "suite": suite_of(report.nodeid), "host": host,
                         "outcome": outcome, "reason": reason})


def record_versions(lab, out_dir):
    """Versions as each host reports them, into out_dir/versions-<lab>.json (one per lab/worker)."""
    import virtlab  # tests/lab
    found = {}
    for host in lab.hosts:
        persona = lab.state()["hosts"][host]["persona"]
        python = virtlab.PERSONAS[persona]["python"]
        p = lab.exec(host, ["sh", "-c", PROBE, "probe", python], check=False)
        found[persona] = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "versions-%s-%d.json" % (lab.name, os.getpid())), "w") as f:
        json.dump(found, f, indent=1, sort_keys=True)


def _cell(rows):
    n = {}
    for r in rows:
        n[r["outcome"]] = n.get(r["outcome"], 0) + 1
    if not rows:
        return "—"
    parts = []
    if n.get("failed") or n.get("error"):
        parts.append("**FAILED %d**" % (n.get("failed", 0) + n.get("error", 0)))
    if n.get("passed"):
        parts.append("passed %d" % n["passed"])
    if n.get("xfailed"):
        parts.append("known failures %d" % n["xfailed"])
    if n.get("skipped"):
        parts.append("skipped %d" % n["skipped"])
    return ", ".join(parts)


def render(results, versions, when=None):
    personas = sorted(set(versions) | set(HOST_RE.match(r["host"]).group(1) for r in results
                                          if r["host"] and HOST_RE.match(r["host"])))
    suites = [s for s in SUITES if any(r["suite"] == s for r in results)]
    suites += sorted(set(r["suite"] for r in results) - set(suites))
    lines = ["# Test matrix: persona x suite", "",
             "Written by `make test` (`make matrix`, tests/lab/matrix.py) from its integration runs "
             "on %s. Versions are read from the lab hosts themselves during the run; what each persona "
             "emulates is in tests/lab/README.md. A cell counts the test cases that ran on that "
             "persona's host; \u2014 = the suite has no case for it." % (when or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
             "", "## Versions (as the hosts report them)", "",
             "| persona | release | kernel release | libvirt | qemu | iptables | nft | libvirt firewall backend | Python |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in personas:
        v = versions.get(p, {})
        lines.append("| %s | %s |" % (p, " | ".join(v.get(k, "?") or "default" for k in (
            "os", "kernel", "libvirt", "qemu", "iptables", "nft", "firewall_backend", "python"))))
    lines += ["", "## Results", "", "| persona | " + " | ".join(suites) + " |",
              "|---|" + "---|" * len(suites)]
    for p in personas:
        cells = []
        for s in suites:
            rows = [r for r in results if r["suite"] == s and r["host"] and r["host"].startswith(p + "-")]
            cells.append(_cell(rows))
        lines.append("| %s | %s |" % (p, " | ".join(cells)))
    lab_wide = [r for r in results if not r["host"]]
    if lab_wide:
        by = {}
        for r in lab_wide:
            by.setdefault(r["suite"], []).append(r)
        lines += ["", "Cases not tied to one host (several hosts or the lab itself): " +
                  "; ".join("%s: %s" % (s, _cell(rs)) for s, rs in sorted(by.items()))]
    skipped = sorted(set((r["host"] or "-", r["suite"], r["reason"]) for r in results if r["outcome"] in ("skipped", "xfailed")))
    if skipped:
        lines += ["", "## Skipped or known failures, with the reason", ""]
        lines += ["- %s / %s: %s" % s for s in skipped]
    failed = sorted(r["nodeid"] for r in results if r["outcome"] in ("failed", "error"))
    if failed:
        lines += ["", "## Failed", ""] + ["- `%s`" % f for f in failed]
    return "\n".join(lines) + "\n"


def dump(out_dir, name):
    """This session's results, for the later render (nothing is written when no test reported)."""
    if not _RESULTS:
        return
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results-%s-%d.json" % (name, os.getpid())), "w") as f:
        json.dump(_RESULTS, f, indent=0)


PERSONA_OS = {  # what each persona stands for (tests/lab/README.md says what of it is real)
    "debian12": "Debian 12", "debian11": "Debian 11", "debian13": "Debian 13", "el6": "CentOS 6 / EL6",
    "el7": "CentOS 7 / EL7", "el8": "EL8 (Rocky 8)", "el10": "EL10 (CentOS Stream 10), Fedora 41+"}
README_BEGIN = "<!-- BEGIN support table (generated by make matrix from docs/matrix.json) -->"
README_END = "<!-- END support table -->"


def summary(results, versions):
    """The README's view of a run: per persona its versions and each suite's outcome counts."""
    out = {}
    for p in sorted(versions):
        suites = {}
        for r in results:
            if r["host"] and r["host"].startswith(p + "-"):
                n = suites.setdefault(r["suite"], {})
                n[r["outcome"]] = n.get(r["outcome"], 0) + 1
        out[p] = {"versions": versions[p], "suites": suites}
    return out


def readme_table(data):
    """The README's support table, from docs/matrix.json (nothing typed in by hand)."""
    rows = ["| persona (stands for) | Python on the host | libvirt | iptables | libvirt firewall | suites passed there |",
            "|---|---|---|---|---|---|"]
    for p in [x for x in ("el6", "el7", "el8", "debian11", "debian12", "debian13", "el10") if x in data] + \
            sorted(set(data) - {"el6", "el7", "el8", "debian11", "debian12", "debian13", "el10"}):
        v, suites = data[p]["versions"], data[p]["suites"]
        py = v.get("python", "?")
        py = "none usable (tracing needs none)" if py.startswith("none") else re.sub(r" \([^)]*\)", "", py)
        cells = []
        for s in [x for x in SUITES if x in suites] + sorted(set(suites) - set(SUITES)):
            n = suites[s]
            bad = n.get("failed", 0) + n.get("error", 0)
            cells.append("%s %d%s" % (s, n.get("passed", 0), " (**%d failed**)" % bad if bad else ""))
        rows.append("| %s (%s) | %s | %s | %s | %s | %s |" % (
            p, PERSONA_OS.get(p, p), py, v.get("libvirt", "?"), v.get("iptables", "?").replace("iptables ", ""),
            v.get("firewall_backend") or "iptables (default)", ", ".join(cells) or "\u2014"))
    return "\n".join(rows) + "\n"


def replace_block(text, block):
    """text with the part between README_BEGIN and README_END replaced by block."""
    head, rest = text.split(README_BEGIN, 1)
    _old, tail = rest.split(README_END, 1)
    return head + README_BEGIN + "\n" + block + README_END + tail


def write(path, versions_dir, results=None, json_path=None, readme=None):
    if results is None:
        results = []
        for f in sorted(glob.glob(os.path.join(versions_dir, "results-*.json"))):
            with open(f) as fh:
                results += json.load(fh)
    versions = {}
    for f in sorted(glob.glob(os.path.join(versions_dir, "versions-*.json"))):
        with open(f) as fh:
            for persona, v in json.load(fh).items():
                have = versions.setdefault(persona, {})
                for k, val in v.items():  # one persona seen by several runs (el7: 3.11 and 2.7 lanes)
                    if val not in have.get(k, "").split(" / "):
                        have[k] = "%s / %s" % (have[k], val) if have.get(k) else val
    with open(path, "w") as f:
        f.write(render(results, versions))
    data = summary(results, versions)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
    if readme:
        with open(readme) as f:
            text = f.read()
        with open(readme, "w") as f:
            f.write(replace_block(text, readme_table(data)))


if __name__ == "__main__":
    import sys
    if len(sys.argv) not in (3, 5):
        sys.exit("usage: matrix.py RESULTS_DIR OUT.md [OUT.json README.md]")
    write(sys.argv[2], sys.argv[1], json_path=sys.argv[3] if len(sys.argv) == 5 else None,
          readme=sys.argv[4] if len(sys.argv) == 5 else None)
    print(" ".join(sys.argv[2:]))
