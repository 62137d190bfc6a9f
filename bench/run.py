# SPDX-License-Identifier: GPL-3.0-or-later
"""Run every benchmark in bench/ (files named bench_*.py, each with a main()) in one go."""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv):
    only = set(argv[1:])
    failed = 0
    for fname in sorted(os.listdir(HERE)):
        if not (fname.startswith("bench_") and fname.endswith(".py")):
            continue
        name = fname[len("bench_"):-3]
        if only and name not in only:
            continue
        print("=== bench %s" % name, flush=True)
        spec = importlib.util.spec_from_file_location("bench_" + name, os.path.join(HERE, fname))
        mod = importlib.util.module_from_spec(spec)
        sys.path.insert(0, HERE)
        spec.loader.exec_module(mod)
        try:
            mod.main()
        except Exception as exc:  # report and go on with the others
            failed += 1
            print("bench %s failed: %s" % (name, exc))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
