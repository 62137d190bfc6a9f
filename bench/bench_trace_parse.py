# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: the trace parser against ``grep -c TRACE:`` on the same 1,000,000-line files.

Two inputs are generated in a temp dir from the real captured lines in
tests/unit/fixtures/trace/: a kernel log (half legacy TRACE lines with IP IDs varied so that every
copy is its own packet, half unrelated kernel lines) and an ``xtables-monitor --trace`` log (trace
ids varied the same way). Each run times, alternately:

* ours:   ``iter_packets`` streaming over the open file, every packet built and consumed;
* theirs: ``grep -c TRACE: FILE > out`` (output to a file: with stdout on /dev/null GNU grep stops
  at the first match).

Reported: wall-clock medians, lines/s, ``grep / ours`` (the harness ratio; the goal "under 25x
grep" is a ratio of at least 0.04), CPU seconds of our parse, and the peak RSS of a separate
process that streams the file (flat memory: the goal is under 150 MB on any size). Since the netfilter
split of issue 14, _ruleset no longer imports ansible, and the parser's peak RSS went from 44.9 / 47.2 MB
to 23.8 / 25.9 MB (kernel log / xtables-monitor log).

Two floors put the ratios in context, timed on the same file in the same run (CPU seconds, best
of three, as a multiple of grep's CPU time):

* ``floor_bare_loop``: ``for line in fh: pass`` -- what any Python line parser pays;
* ``floor_one_dict_per_hop``: the bare loop plus, per trace line, one ``find``, two slices, one
  dict lookup and one 17-key hop dict (``copy`` + ``update``) appended to a list -- no field
  parsing, no grouping, no packets. Whatever a parser does beyond this is grouping and fields.
* ``floor_common_case``: bench/_trace_floor.py -- the parser's hot path cut down to what this
  well-formed input needs (same caches, hop dicts, grouping, packets; no checks, no NAT, no other
  formats). How fast this output contract can go at all in this interpreter.

The interpreter is recorded (``python``): the Makefile builds the venv on Debian's python3.
"""
from __future__ import annotations

import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "build", "collections"))

from _harness import Bench  # noqa: E402
import _trace_floor  # noqa: E402

FIXTURES = os.path.join(ROOT, "tests", "unit", "fixtures", "trace")
LINES = int(os.environ.get("BENCH_TRACE_LINES", 1_000_000))
GOAL_RATIO = 1 / 25.0
NOISE = [
    "[%12.6f] audit: type=1400 audit(1764190000.%03d:%d): apparmor=\"STATUS\" operation=\"profile_replace\" "
    "profile=\"unconfined\" name=\"libvirt-%d\" pid=%d comm=\"apparmor_parser\"",
    "[%12.6f] virbr0: port %d(vnet%d) entered forwarding state %d %d",
    "[%12.6f] EXT4-fs (vda%d): mounted filesystem with ordered data mode. Opts: (null). %d %d %d",
    "[%12.6f] kvm: vcpu %d: requested %d ns lapic timer period limited to %d ns %d",
    "[%12.6f] IPv6: ADDRCONF(NETDEV_CHANGE): vnet%d: link becomes ready %d %d %d",
]


_PORT_RE = re.compile(r"\b(SPT|DPT|SPORT|DPORT)=(\d+)")
_SERVICE_PORTS = frozenset((3128, 3999))


def _new_connection(line, copy):
    """Each copy of the captured lines is a new connection: new IP IDs (above) and a new ephemeral
    port, the same in both directions, so no two copies share a field block (no cache can hit
    across copies more than it would on a real trace of many connections to one service)."""
    def port(m):
        value = int(m.group(2))
        if value in _SERVICE_PORTS:
            return m.group(0)
        return "%s=%d" % (m.group(1), 32768 + (value + copy * 7) % 28000)
    return _PORT_RE.sub(port, line)


def _write_copies(path, lines, src, render):
    """Write ``render(line, copy)`` (a list of output lines) for copy 1, 2, ... of ``src`` until
    ``lines`` lines are written; returns the count."""
    written = 0
    copy = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < lines:
            copy += 1
            for line in src:
                for text in render(line, copy):
                    out.write(text + "\n")
                    written += 1
                if written >= lines:
                    return written
    return written


def _fixture_lines(name, keep):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
        return [line for line in fh.read().splitlines() if keep(line)]


def _kernel_log(path, lines):
    idre = re.compile(r" (ID|FLOWLBL)=(\d+)")
    rnd = random.Random(6)

    def render(line, copy):
        line = idre.sub(lambda m: " %s=%d" % (m.group(1), (int(m.group(2)) + copy * 7919) % 65536), line, 1)
        noise = rnd.choice(NOISE) % (copy * 0.001, copy % 1000, copy, copy % 7, copy % 13)
        return [_new_connection(line, copy), noise]
    return _write_copies(path, lines, _fixture_lines("legacy_dmesg.txt", lambda line: "TRACE: " in line), render)


def _xtables_log(path, lines):
    idre = re.compile(r"^( ?(?:PACKET|TRACE): \d+ )([0-9a-f]{8})")
    ipid = re.compile(r" ID=(\d+)")

    def render(line, copy):
        line = idre.sub(lambda m: m.group(1) + "%08x" % ((int(m.group(2), 16) + copy * 2654435761) & 0xFFFFFFFF),
                        line, 1)
        line = ipid.sub(lambda m: " ID=%d" % ((int(m.group(1)) + copy * 7919) % 65536), line, 1)
        return [_new_connection(line, copy)]
    return _write_copies(path, lines, _fixture_lines("xtables_monitor_trace.txt",
                                                     lambda line: line.startswith(("PACKET: ", " TRACE: "))), render)


_TEMPLATE = dict.fromkeys(("table", "chain", "kind", "rulenum", "handle", "verdict", "rule", "in", "out", "physin",
                           "physout", "src", "dst", "sport", "dport", "ttl", "time"))


def _floor_bare_loop(path):
    with open(path, encoding="utf-8") as fh:
        for _line in fh:
            pass


def _floor_one_dict_per_hop(path):
    heads = {}
    hops = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            at = line.find("TRACE: ")
            if at < 0:
                continue
            sp = line.find(" ", at + 7)
            head = line[at + 7:sp]
            info = heads.get(head)
            if info is None:
                info = heads[head] = {"table": head}
            hop = _TEMPLATE.copy()
            hop.update(info)
            hop["time"] = line[sp + 1:]
            hops.append(hop)
            if len(hops) > 4096:
                hops = []


def _consume(fn, path):
    with open(path, encoding="utf-8") as fh:
        for _packet in fn(fh):
            pass


def _cpu_best(fn, path, runs=3):
    best = None
    for _run in range(runs):
        cpu = time.process_time()
        fn(path)
        took = time.process_time() - cpu
        best = took if best is None else min(best, took)
    return best


def _ours(path):
    from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._trace_parse import iter_packets

    def run():
        stats = {}
        cpu = time.process_time()
        with open(path, encoding="utf-8") as fh:
            packets = sum(1 for dummy in iter_packets(fh, stats=stats))
        return {"packets": packets, "trace_lines": stats["trace_lines"], "malformed": stats["malformed"],
                "cpu_s": round(time.process_time() - cpu, 3)}
    return run


def _grep(path, out):
    def run():
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(out, "w") as fh:
            proc = subprocess.run(["grep", "-c", "TRACE:", path], stdout=fh, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        with open(out) as fh:
            return {"count": int(fh.read().strip() or 0), "rc": proc.returncode, "cpu_s": round(cpu, 3)}
    return run


_PEAK = """
import resource, sys
sys.path.insert(0, sys.argv[2])
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._trace_parse import iter_packets
n = 0
with open(sys.argv[1], encoding="utf-8") as fh:
    for _ in iter_packets(fh):
        n += 1
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_rss_mb(path):
    proc = subprocess.run([sys.executable, "-c", _PEAK, path, os.path.join(ROOT, "build", "collections")],
                          capture_output=True, text=True, check=True)
    _packets, kb = proc.stdout.split()
    return round(int(kb) / 1024.0, 1)


def main():
    bench = Bench("trace_parse", runs=int(os.environ.get("BENCH_RUNS", 3)))
    facts = {}
    with tempfile.TemporaryDirectory(prefix="bench-trace-") as tmp:
        size = "%dM" % (LINES // 1_000_000) if LINES % 1_000_000 == 0 else "%dk" % (LINES // 1000)
        inputs = [("kernel log, %s lines (half TRACE)" % size, os.path.join(tmp, "kern.log"), _kernel_log),
                  ("xtables-monitor log, %s lines" % size, os.path.join(tmp, "xtables.log"), _xtables_log)]
        for name, path, make in inputs:
            lines = make(path, LINES)
            step = bench.step(name, ours=_ours(path), theirs=_grep(path, os.path.join(tmp, "grep.out")),
                              goal=GOAL_RATIO)
            rss = _peak_rss_mb(path)
            half = _kernel_log if make is _kernel_log else _xtables_log
            small = os.path.join(tmp, "small.log")
            half(small, LINES // 10)
            rss_small = _peak_rss_mb(small)
            os.unlink(small)
            grep_best = sorted(step.facts["theirs_cpu_s"])[len(step.facts["theirs_cpu_s"]) // 2] or 0.001
            common = _trace_floor.kernel_log if make is _kernel_log else _trace_floor.xtables
            bench.note(name, floor_common_case_times_grep=round(_cpu_best(lambda p: _consume(common, p), path) / grep_best, 1))
            bench.note(name, floor_bare_loop_times_grep=round(_cpu_best(_floor_bare_loop, path) / grep_best, 1),
                       floor_one_dict_per_hop_times_grep=round(_cpu_best(_floor_one_dict_per_hop, path) / grep_best, 1),
                       python="%s (%s)" % (sys.version.split()[0], sys.executable))
            ours = step.median_ours
            cpu_ours = sorted(step.facts["ours_cpu_s"])[len(step.facts["ours_cpu_s"]) // 2]
            cpu_grep = sorted(step.facts["theirs_cpu_s"])[len(step.facts["theirs_cpu_s"]) // 2]
            bench.note(name, lines_per_cpu_s=round(lines / cpu_ours) if cpu_ours else None,
                       times_grep_cpu=round(cpu_ours / cpu_grep, 1) if cpu_grep else None)
            bench.note(name, lines=lines, file_mb=round(os.path.getsize(path) / 1e6, 1),
                       lines_per_s=round(lines / ours), times_grep=round(ours / step.median_theirs, 1),
                       goal_times_grep=25, goal_lines_per_s=500000,
                       peak_rss_mb=rss, peak_rss_mb_at_tenth_size=rss_small, goal_peak_rss_mb=150,
                       memory_goal_met=rss < 150)
            facts[name] = dict(lines_per_s=round(lines / ours), times_grep=round(ours / step.median_theirs, 1),
                               lines_per_cpu_s=round(lines / cpu_ours) if cpu_ours else None,
                               times_grep_cpu=round(cpu_ours / cpu_grep, 1) if cpu_grep else None,
                               peak_rss_mb=rss,
                               floor_one_dict_per_hop_times_grep=step.facts["floor_one_dict_per_hop_times_grep"],
                               floor_common_case_times_grep=step.facts["floor_common_case_times_grep"])
            os.unlink(path)
    load = os.getloadavg()
    bench.write(extra={"summary": facts, "load_average_1_5_15": [round(x, 2) for x in load],
                       "note": "wall clock on a shared 2-core machine; cpu_s facts are our process CPU time"})
    for name, f in facts.items():
        print("  %s: %s lines/s (%s per CPU second), %.1fx grep wall, %sx grep CPU, peak RSS %.1f MB; "
              "floors: one dict per hop %sx, common case only %sx grep CPU" % (
                  name, f["lines_per_s"], f["lines_per_cpu_s"], f["times_grep"], f["times_grep_cpu"], f["peak_rss_mb"],
                  f["floor_one_dict_per_hop_times_grep"], f["floor_common_case_times_grep"]))
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
