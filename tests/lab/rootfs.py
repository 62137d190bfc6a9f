# SPDX-License-Identifier: GPL-3.0-or-later
"""Real Debian root filesystems for virtlab hosts (personas debian11, debian13, el10).

A root filesystem is built once from Debian's registry with ``mmdebstrap`` (minbase + the
packages below) and cached outside the work tree in
``/var/cache/virtlab/rootfs/<suite>-<hash>``; the hash covers the suite, the package list, the
mirror and this builder's version, so a changed list builds a new tree (older trees of that suite
are removed). A lab host backed by a rootfs mounts an overlay of the cached tree (upper layer in
the lab's state dir) as its own ``/`` inside its private mount namespace and ``pivot_root``s into
it (host/setup.sh), so its libvirtd, virtlogd, dnsmasq, sshd, iptables, nft, tc and python3 are that
release's. The personas that run on a tree (debian11, debian13, el10) are defined in personas.py.

Stdlib only; runs with any Python 3.6+ as root.

CLI:  rootfs.py build [SUITE...]     build (or reuse) the cached trees, print their paths
      rootfs.py path SUITE          print the cached tree's path (exit 1 if not built)
      rootfs.py versions SUITE      print the versions of the key packages in that tree
"""
from __future__ import print_function

import argparse
import fcntl
import glob
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

CACHE = os.environ.get("VIRTLAB_ROOTFS_CACHE", "/var/cache/virtlab/rootfs")
BUILDER_VERSION = "1"  # bump when the way a tree is made changes (not only its package list)
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# What a lab hypervisor needs, from the issue (libvirt, qemu, the modules' Python bindings, both
# firewall front ends, dnsmasq, sshd, ip/tc, sysctl/ps, modprobe) plus what the lab and the
# netfilter action plugins run on a host: virsh (libvirt-clients), sftp-server
# (openssh-server), dmesg/setsid (util-linux), logger (bsdutils), timeout/nohup/stdbuf
# (coreutils), awk (mawk), xtables-monitor (iptables), ss (iproute2).
PACKAGES = sorted([
    "libvirt-daemon-system", "libvirt-clients", "qemu-system-x86", "python3", "python3-libvirt",
    "python3-lxml", "iptables", "nftables", "dnsmasq-base", "openssh-server", "iproute2", "procps",
    "kmod", "util-linux", "bsdutils", "mawk",
])

# suite -> what it is (the versions are read from the tree, these are only what the issue expects)
SUITES = {
    "bullseye": "Debian 11 (libvirt 7.0, qemu 5.2, iptables 1.8.7, Python 3.9)",
    "trixie": "Debian 13 (libvirt 11.3, qemu 10.0, nft 1.1.3, iptables 1.8.11, Python 3.13)",
}


class RootfsError(RuntimeError):
    pass


def apt_mirror(sources=("/etc/apt/sources.list", "/etc/apt/sources.list.d")):
    """The Debian archive this machine's apt uses (its main archive, not -security): the URI of the
    first deb822 stanza or one-line entry whose path ends in /debian. $VIRTLAB_DEBIAN_MIRROR wins."""
    env = os.environ.get("VIRTLAB_DEBIAN_MIRROR")
    if env:
        return env.rstrip("/")
    files = []
    for s in sources:
        if os.path.isdir(s):
            files += sorted(glob.glob(os.path.join(s, "*.sources")) + glob.glob(os.path.join(s, "*.list")))
        elif os.path.isfile(s):
            files.append(s)
    for path in files:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        for m in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.M):
            uri = m.group(1).rstrip("/")
            if uri.startswith(("http://", "https://")) and uri.endswith("/debian"):
                return uri
    return DEFAULT_MIRROR


def tree_id(suite, packages=PACKAGES, mirror=None):
    mirror = mirror or apt_mirror()
    h = hashlib.sha256("\n".join([BUILDER_VERSION, suite, mirror] + sorted(packages)).encode()).hexdigest()
    return "%s-%s" % (suite, h[:12])


def path(suite, packages=PACKAGES, mirror=None):
    """Path of the cached tree for suite (whether or not it is built)."""
    return os.path.join(CACHE, tree_id(suite, packages, mirror))


def is_built(tree):
    return os.path.exists(os.path.join(tree, ".virtlab-rootfs"))


def build(suite, packages=PACKAGES, mirror=None, log=None):
    """Build the tree for suite unless the cache has it; returns its path.

    Safe against concurrent callers (xdist workers, two labs): one builds under a lock, the
    others wait for it and reuse the result."""
    if suite not in SUITES:
        raise RootfsError("unknown suite %r (known: %s)" % (suite, ", ".join(sorted(SUITES))))
    mirror = mirror or apt_mirror()
    tree = path(suite, packages, mirror)
    if is_built(tree):
        return tree
    if not shutil.which("mmdebstrap"):
        raise RootfsError("mmdebstrap is missing (run `make apt`: apt-get install mmdebstrap)")
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".lock-%s" % suite), "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if is_built(tree):
            return tree
        t0 = time.time()
        tmp = tree + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        argv = ["mmdebstrap", "--quiet", "--mode=root", "--variant=minbase", "--format=directory",
                "--include=" + ",".join(packages),
                # no daemon may start while the tree is being made (postinst of libvirt/ssh)
                "--customize-hook=rm -f \"$1\"/etc/ssh/ssh_host_*_key*",
                suite, tmp, mirror]
        if log:
            log("rootfs: building %s from %s (%s)" % (suite, mirror, " ".join(map(shlex.quote, argv))))
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                           check=False)
        if p.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RootfsError("mmdebstrap %s failed (rc=%d):\n%s" % (suite, p.returncode, p.stdout[-4000:]))
        with open(os.path.join(tmp, ".virtlab-rootfs"), "w") as f:
            f.write("suite=%s\nmirror=%s\npackages=%s\nbuilt=%s\nseconds=%.1f\n"
                    % (suite, mirror, ",".join(packages), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       time.time() - t0))
        os.rename(tmp, tree)
        # trees of this suite made from an older package list are garbage now
        for old in glob.glob(os.path.join(CACHE, "%s-*" % suite)):
            if old != tree and os.path.isdir(old):
                shutil.rmtree(old, ignore_errors=True)
        if log:
            log("rootfs: %s built in %.1fs -> %s" % (suite, time.time() - t0, tree))
    return tree


def versions(tree):
    """Versions of the key packages in a tree (from its dpkg status file, no chroot needed)."""
    want = {"libvirt-daemon", "libvirt-daemon-system", "qemu-system-x86", "iptables", "nftables",
            "python3", "dnsmasq-base", "openssh-server", "iproute2"}
    out = {}
    with open(os.path.join(tree, "var/lib/dpkg/status")) as f:
        for stanza in f.read().split("\n\n"):
            m = re.search(r"^Package: (\S+)", stanza, re.M)
            v = re.search(r"^Version: (\S+)", stanza, re.M)
            if m and v and m.group(1) in want:
                out[m.group(1)] = v.group(1)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="rootfs.py", description=__doc__.split("\n", maxsplit=1)[0])
    sub = ap.add_subparsers(dest="cmd")
    sub.add_parser("build").add_argument("suite", nargs="*")
    sub.add_parser("path").add_argument("suite")
    sub.add_parser("versions").add_argument("suite")
    a = ap.parse_args(argv)

    def log(msg):
        sys.stderr.write(msg + "\n")
    try:
        if a.cmd == "build":
            for suite in a.suite or sorted(SUITES):
                print(build(suite, log=log))
        elif a.cmd == "path":
            tree = path(a.suite)
            print(tree)
            return 0 if is_built(tree) else 1
        elif a.cmd == "versions":
            tree = path(a.suite)
            if not is_built(tree):
                log("rootfs %s is not built (rootfs.py build %s)" % (a.suite, a.suite))
                return 1
            for k, v in sorted(versions(tree).items()):
                print("%s %s" % (k, v))
        else:
            ap.print_help()
            return 2
    except RootfsError as exc:
        log("rootfs: %s" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
