# SPDX-License-Identifier: GPL-3.0-or-later
"""virtlab helpers: run commands, write files, namespaces, processes and mounts of the machine.

Stdlib only; runs with any Python 3.6+ (as root for anything that touches namespaces)."""
import os
import re
import shlex
import signal
import subprocess
import time


class LabError(RuntimeError):
    pass


def _run(argv, check=True, input=None, timeout=120, **kw):
    p = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout, check=False, **kw)
    if check and p.returncode != 0:
        raise LabError("command failed (rc=%d): %s\n%s%s"
                       % (p.returncode, " ".join(map(shlex.quote, argv)), p.stdout, p.stderr))
    return p


def _write(path, text, mode=0o644):
    d = os.path.dirname(path)
    if d and not os.path.isdir(d):
        os.makedirs(d)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _ns_inode(path):
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _pids_in(inodes, kind="net"):
    """PIDs whose /proc/PID/ns/<kind> is one of the given nsfs inodes."""
    out = []
    if not inodes:
        return out
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ino = os.stat("/proc/%s/ns/%s" % (d, kind)).st_ino
        except OSError:
            continue
        if ino in inodes and int(d) != os.getpid():
            out.append(int(d))
    return out


def _kill_all(pids, grace=3.0):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.time() + grace
    while time.time() < deadline:
        alive = [p for p in pids if os.path.exists("/proc/%d" % p) and not _zombie(p)]
        if not alive:
            return
        time.sleep(0.05)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _is_mountpoint(path):
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


def _alive(pidfile):
    try:
        with open(pidfile) as f:
            pid = int(f.read().split()[0])
        os.kill(pid, 0)
        return not _zombie(pid)
    except (OSError, ValueError, IndexError):
        return False


def link_mac(netns, dev):
    """MAC address of an interface inside a network namespace."""
    out = _run(["ip", "-n", netns, "-o", "link", "show", dev]).stdout
    m = re.search(r"link/ether ([0-9a-f:]{17})", out)
    if not m:
        raise LabError("no MAC for %s in %s: %s" % (dev, netns, out))
    return m.group(1)
