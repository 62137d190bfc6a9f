# SPDX-License-Identifier: GPL-3.0-or-later
"""Golden outputs of the trace parser: a regression net for its fast paths.

The parser's hot loop is hand-inlined and its field blocks go through caches (see the module
docstring of plugins/plugin_utils/netfilter/_trace_parse.py); a change there must not change a single output
byte. ``inputs()`` builds a deterministic set of texts from the committed fixtures: every fixture,
the dmesg lines rendered as syslog / short-iso / CRLF / bare, 40 mutated mixes of all trace lines
(truncated, a byte replaced, two lines glued) and 10 line-by-line interleavings of two fixtures.
``digests()`` parses each with three window/max_open settings and records a SHA-256 of the
canonical JSON of ``parse()``, of the ``iter_packets()`` stream order and of ``annotate()``.

Regenerate (only when an output change is intended, and say so in the commit):
    python tests/unit/plugins/plugin_utils/netfilter/trace_golden.py > tests/unit/fixtures/trace/golden_digests.json
"""
import glob
import hashlib
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))), "fixtures")
GOLDEN = os.path.join(FIXTURES, "trace", "golden_digests.json")
SETTINGS = (("default", {}), ("tiny", {"window": 3, "max_open": 2}), ("small", {"window": 50, "max_open": 7}))


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read()


def inputs():
    files = sorted(glob.glob(os.path.join(FIXTURES, "trace", "*.txt")) + glob.glob(os.path.join(FIXTURES, "capture", "*.txt")))
    texts = {}
    for path in files:
        texts["%s/%s" % (os.path.basename(os.path.dirname(path)), os.path.basename(path))] = _read(path)
    dmesg = texts["trace/legacy_dmesg.txt"].splitlines()
    texts["syn/syslog"] = "\n".join("Nov 26 20:56:%02d host kernel: %s" % (i % 60, line.split("] ", 1)[-1])
                                    for i, line in enumerate(dmesg))
    texts["syn/syslog_ts"] = "\n".join("Nov 26 20:56:%02d host kernel: %s" % (i % 60, line) for i, line in enumerate(dmesg))
    texts["syn/iso"] = "\n".join("2026-11-26T20:56:%02d+0000 host kernel: %s" % (i % 60, line.split("] ", 1)[-1])
                                 for i, line in enumerate(dmesg))
    texts["syn/crlf"] = texts["trace/legacy_dmesg.txt"].replace("\n", "\r\n")
    texts["syn/bare"] = "\n".join(line.split("] ", 1)[-1] for line in dmesg)
    names = sorted(texts)
    trace = [line for name in names for line in texts[name].splitlines()
             if "TRACE" in line or "trace id" in line or "PACKET" in line]
    rnd = random.Random(1)
    for k in range(40):
        lines = trace[:]
        rnd.shuffle(lines)
        out = []
        for line in lines[:rnd.randint(1, len(lines))]:
            r = rnd.random()
            if r < 0.1:
                line = line[:rnd.randint(0, len(line))]
            elif r < 0.2:
                i = rnd.randint(0, max(0, len(line) - 1))
                line = line[:i] + rnd.choice(" :=x0\t") + line[i + 1:]
            elif r < 0.25:
                line = line + " " + rnd.choice(trace)
            out.append(line)
        texts["mut/%02d" % k] = "\n".join(out)
    for k in range(10):
        a = texts[rnd.choice(names)].splitlines()
        b = texts[rnd.choice(names)].splitlines()
        out = []
        while a or b:
            src = a if (a and (not b or rnd.random() < 0.5)) else b
            out.append(src.pop(0))
        texts["mix/%02d" % k] = "\n".join(out)
    return texts


def _sha(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode("utf-8")).hexdigest()[:24]


def digest(tp, text, save, kwargs):
    parsed = tp.parse(text, **kwargs)
    stream = [p["id"] for p in tp.iter_packets(text, **kwargs)]
    annotated = tp.annotate(tp.parse(text, **kwargs)["packets"], save)
    return {"parse": _sha(parsed), "stream": _sha(stream), "annotate": _sha(annotated)}


def digests(tp):
    texts = inputs()
    save = texts["capture/el7_iptables_save.txt"]
    return {name: {label: digest(tp, texts[name], save, kwargs) for label, kwargs in SETTINGS} for name in sorted(texts)}


if __name__ == "__main__":
    from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_parse
    json.dump(digests(_trace_parse), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
