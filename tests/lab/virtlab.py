# SPDX-License-Identifier: GPL-3.0-or-later
"""virtlab: hypervisor hosts made of namespaces on one machine (test lab for virtops.virtnet).

The command line and the import everything uses; the parts live beside it (README.md):
``netnslab.py`` the Lab class and the inventory, ``personas.py`` what each persona is and the files its
host's setup reads, ``host/*.sh`` the host setup and the persona wrappers (shell files, fed by
positional parameters and data files), ``nsutil.py`` process, namespace and mount helpers,
``rootfs.py`` / ``pytargets.py`` the real Debian userlands and old target Pythons.

Stdlib only; runs with any Python 3.6+ as root.

CLI:  virtlab.py [--lab NAME] up --hosts N --persona P ... | down | status | inventory
      | exec HOST -- CMD... | uplink -- CMD... | guest add NAME --host H [--network N] [--kind ns|qemu]
      | guest del NAME | guest exec NAME -- CMD...
API:  import virtlab; lab = virtlab.Lab('NAME'); lab.up(personas=[...]); lab.exec(host, argv) ...
"""
from __future__ import print_function

import argparse
import json
import sys

from netnslab import UPLINK_IP, UPLINK_PORT, Lab, render_inventory
from nsutil import LabError, link_mac
from personas import PERSONAS, host_names

# the API other code imports as virtlab.X
__all__ = ["Lab", "LabError", "PERSONAS", "UPLINK_IP", "UPLINK_PORT", "host_names", "link_mac", "main",
           "render_inventory"]


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def _split_cmd(rest):
    if rest and rest[0] == "--":
        rest = rest[1:]
    if not rest:
        raise SystemExit("missing command after --")
    return rest


def _relay(p):
    """A command's output to ours, its rc as ours."""
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    return p.returncode


def main(argv=None):
    ap = argparse.ArgumentParser(prog="virtlab.py", description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--lab", default=None, help="lab name (env VIRTLAB_NAME, default lab)")
    sub = ap.add_subparsers(dest="cmd")
    p = sub.add_parser("up")
    p.add_argument("--hosts", type=int, default=None)
    p.add_argument("--persona", action="append", default=[], choices=sorted(PERSONAS))
    sub.add_parser("down")
    sub.add_parser("status").add_argument("--json", action="store_true")
    sub.add_parser("inventory")
    p = sub.add_parser("exec")
    p.add_argument("host")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p = sub.add_parser("uplink")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p = sub.add_parser("guest")
    gs = p.add_subparsers(dest="gcmd")
    g = gs.add_parser("add")
    g.add_argument("name")
    g.add_argument("--host", required=True)
    g.add_argument("--network", default="default")
    g.add_argument("--kind", default="ns", choices=["ns", "qemu"])
    gs.add_parser("del").add_argument("name")
    g = gs.add_parser("exec")
    g.add_argument("name")
    g.add_argument("rest", nargs=argparse.REMAINDER)
    gs.add_parser("list")
    a = ap.parse_args(argv)
    if a.cmd is None:
        ap.print_help()
        return 2
    lab = Lab(a.lab)

    def log(msg):
        sys.stderr.write(msg + "\n")
    try:
        if a.cmd == "up":
            personas = a.persona or ["debian12"]
            print(lab.up(personas=personas, hosts=a.hosts or len(personas), log=log))
        elif a.cmd == "down":
            lab.down(log=log)
        elif a.cmd == "inventory":
            if not lab.is_up():
                log("lab %s is not up" % lab.name)
                return 1
            print(lab.inventory_path)
        elif a.cmd == "status":
            s = lab.status()
            if a.json:
                print(json.dumps(s, indent=2, sort_keys=True))
            else:
                print("lab %s: %s  inventory %s  uplink listener %s" % (
                    lab.name, "up" if s["up"] else "down", s["inventory"],
                    "alive" if s["uplink_listener"] else "dead"))
                for h, i in s["hosts"].items():
                    print("  %-12s %-8s mgmt %-15s bond0 %-14s %s" % (
                        h, i["persona"], i["mgmt_ip"], i["bond0_ip"],
                        " ".join("%s=%s" % (d, "up" if ok else "DOWN") for d, ok in sorted(i["daemons"].items()))))
                for n, g in sorted(s["guests"].items()):
                    print("  guest %-10s %-4s on %s/%s ip %s mac %s %s" % (
                        n, g["kind"], g["host"], g["network"], g.get("ip"), g.get("mac"),
                        g.get("tap") or g.get("netns")))
        elif a.cmd == "exec":
            return _relay(lab.exec(a.host, _split_cmd(a.rest), check=False, timeout=3600))
        elif a.cmd == "uplink":
            return _relay(lab.uplink_exec(_split_cmd(a.rest), check=False, timeout=3600))
        elif a.cmd == "guest":
            if a.gcmd == "add":
                print(json.dumps(lab.guest_add(a.name, a.host, a.network, a.kind), sort_keys=True))
            elif a.gcmd == "del":
                if not lab.guest_del(a.name):
                    log("no guest %s" % a.name)
                    return 1
            elif a.gcmd == "exec":
                return _relay(lab.guest_exec(a.name, _split_cmd(a.rest), check=False, timeout=3600))
            else:
                print(json.dumps(lab.state()["guests"], indent=2, sort_keys=True))
    except LabError as exc:
        log("virtlab: %s" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
