# SPDX-License-Identifier: GPL-3.0-or-later
"""virtlab's Lab: hypervisor hosts made of namespaces on one machine (see README.md beside this file).

Each lab host is a network namespace plus a persistent private mount + UTS namespace, in which the lab
runs the real virtlogd, libvirtd and sshd; ``host/setup.sh`` makes the mount namespace a host of its
persona (``personas.py``). The controller reaches hosts over SSH through a management namespace
(ProxyCommand: relay.py). An uplink namespace stands for the outside network (its listener:
uplink_listener.py). Guests are namespaces plugged into a libvirt bridge (kind=ns) or diskless qemu/TCG
domains (kind=qemu).

Stdlib only; runs with any Python 3.6+ as root.
"""
import contextlib
import fcntl
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time

import pytargets  # tests/lab/pytargets.py: real CPython 2.7 / 3.6 targets (personas el7, el8)
import rootfs  # tests/lab/rootfs.py: the real Debian 11/13 userlands (personas debian11, debian13, el10)
from nsutil import LabError, _alive, _is_mountpoint, _kill_all, _ns_inode, _pids_in, _run, _write, _zombie, link_mac
from personas import PERSONAS, host_names, write_persona_dir

HERE = os.path.dirname(os.path.abspath(__file__))
RELAY = os.path.join(HERE, "relay.py")
UPLINK_LISTENER = os.path.join(HERE, "uplink_listener.py")
HOST_SETUP = os.path.join(HERE, "host", "setup.sh")
SYS_PYTHON = "/usr/bin/python3"  # Debian's python: relay + uplink listener run with it
UPLINK_GW = "10.44.32.1"
UPLINK_IP = "10.44.32.217"  # the seed's destination
UPLINK_PORT = 3128
UPLINK_NET = "10.44.32"
MGMT_NET = "172.31.255"
MGMT_GW = MGMT_NET + ".1"
SYSCTL_ALL_NETNS = "/proc/sys/net/netfilter/nf_log_all_netns"
SYSCTL_ORIG = "/run/virtnet.nf_log_all_netns.orig"  # shared by all labs: value before the first up
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,11}$")
OWN_NETNS_RE = re.compile(r"^(mgmt|uplink|g-[a-z0-9-]+|[a-z0-9]+-[0-9]+)$")  # after "vn-<lab>-"


def render_inventory(lab, hosts, key_path, mgmt_ns, relay=RELAY, state_dir=None):
    """Inventory YAML text. hosts: list of dicts(name, persona, mgmt_ip, netns)."""
    def q(s):
        return json.dumps(str(s))
    proxy = "nsenter --net=/run/netns/%s %s %s %%h 22" % (mgmt_ns, SYS_PYTHON, relay)
    common = "-o %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR" % (
        shlex.quote("ProxyCommand=" + proxy))
    lines = ["# virtlab inventory for lab %s (generated; do not edit)" % lab, "all:", "  children:",
             "    hypervisors:", "      hosts:"]
    for h in hosts:
        lines.append("        %s:" % h["name"])
        hv = [
            ("ansible_host", h["mgmt_ip"]),
            ("ansible_user", "root"),
            ("ansible_ssh_private_key_file", key_path),
            ("ansible_ssh_common_args", common),
        ] + pytargets.python_hostvars(h["persona"], PERSONAS[h["persona"]]["python"]) + [
            ("virtlab_lab", lab),
            ("virtlab_persona", h["persona"]),
            ("virtlab_netns", h["netns"]),
            ("virtlab_uplink_ip", UPLINK_IP),
            ("virtlab_uplink_port", UPLINK_PORT),
            ("virtlab_bond0_ip", h.get("bond0_ip", "")),
        ]
        if state_dir:
            hv.append(("ansible_control_path_dir", os.path.join(state_dir, "cp")))
        for k, v in hv:
            lines.append("          %s: %s" % (k, v if isinstance(v, int) else q(v)))
    by_persona = {}
    for h in hosts:
        by_persona.setdefault(h["persona"], []).append(h["name"])
    for p in sorted(by_persona):
        lines += ["    %s:" % p, "      hosts:"]
        lines += ["        %s: {}" % n for n in by_persona[p]]
    return "\n".join(lines) + "\n"


class Lab(object):
    def __init__(self, name=None):
        name = name or os.environ.get("VIRTLAB_NAME") or "lab"
        if not NAME_RE.match(name):
            raise LabError("lab name must match %s" % NAME_RE.pattern)
        self.name = name
        self.dir = "/run/virtnet-%s" % name
        self.state_path = os.path.join(self.dir, "state.json")
        self.inventory_path = os.path.join(self.dir, "inventory.yml")
        self.key_path = os.path.join(self.dir, "id_ed25519")
        self.nsdir = os.path.join(self.dir, "ns")
        self.mgmt_ns = "vn-%s-mgmt" % name
        self.uplink_ns = "vn-%s-uplink" % name
        self.uplink_log = os.path.join(self.dir, "uplink-%d.log" % UPLINK_PORT)
        self._lock = threading.Lock()

    # ---- state -----------------------------------------------------------------------------
    def state(self):
        try:
            with open(self.state_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"lab": self.name, "hosts": {}, "guests": {}}

    def _save(self, st):
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f, indent=2, sort_keys=True)
        os.rename(tmp, self.state_path)

    def is_up(self):
        return os.path.exists(self.state_path)

    @property
    def hosts(self):
        return sorted(self.state()["hosts"], key=lambda h: self.state()["hosts"][h]["index"])

    def host_netns(self, host):
        return "vn-%s-%s" % (self.name, host)

    def _host(self, host):
        st = self.state()
        if host not in st["hosts"]:
            raise LabError("lab %s has no host %r (hosts: %s)" % (self.name, host, ", ".join(sorted(st["hosts"]))))
        return st["hosts"][host]

    def _nsenter(self, host):
        ns = self.host_netns(host)
        return ["nsenter", "--net=/run/netns/%s" % ns, "--mount=%s/%s.mnt" % (self.nsdir, host),
                "--uts=%s/%s.uts" % (self.nsdir, host), "--"]

    # ---- exec ------------------------------------------------------------------------------
    def exec(self, host, argv, check=True, input=None, timeout=120):
        """Run argv inside the host's net+mount+uts namespaces; returns CompletedProcess (text)."""
        self._host(host)
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        return _run(self._nsenter(host) + list(argv), check=check, input=input, timeout=timeout, cwd="/")

    def uplink_exec(self, argv, check=True, input=None, timeout=120):
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        return _run(["nsenter", "--net=/run/netns/%s" % self.uplink_ns, "--"] + list(argv),
                    check=check, input=input, timeout=timeout)

    def mgmt_exec(self, argv, check=True, timeout=120):
        return _run(["nsenter", "--net=/run/netns/%s" % self.mgmt_ns, "--"] + list(argv),
                    check=check, timeout=timeout)

    def virsh(self, host, *args, **kw):
        return self.exec(host, ["virsh", "-q", "-c", "qemu:///system"] + list(args), **kw)

    def uplink_connections(self, since=None, at_least=0, timeout=5.0):
        """Connections the uplink listener accepted: list of dict(time, src, sport, dst, dport).

        ``since``: only those logged at or after that time. ``at_least``: wait up to ``timeout``
        seconds until that many are logged -- the listener writes a line after ``accept()``, and a
        client that connects and closes at once (``nc -z``) can be done before that."""
        deadline = time.time() + timeout
        while True:
            out = []
            try:
                with open(self.uplink_log) as f:
                    for line in f:
                        t, src, sport, dst, dport = line.split()
                        if since is None or float(t) >= since:
                            out.append({"time": float(t), "src": src, "sport": int(sport), "dst": dst,
                                        "dport": int(dport)})
            except OSError:
                pass
            if len(out) >= at_least or time.time() >= deadline:
                return out
            time.sleep(0.05)

    @contextlib.contextmanager
    def _locked(self, create=True):
        """Serialise up/down/guest changes of one lab between processes (flock on its state dir)."""
        while True:
            if create:
                os.makedirs(self.dir, 0o755, exist_ok=True)
            try:
                fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                if create:
                    continue
                yield False
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.dir).st_ino
                except OSError:
                    same = False
                if not same:  # removed by a concurrent down while we waited
                    continue
                yield True
                return
            finally:
                os.close(fd)

    # ---- up --------------------------------------------------------------------------------
    def up(self, personas=("debian12", "el7", "el6"), hosts=None, log=None):
        """Bring the lab up (idempotent). Returns the inventory path."""
        with self._locked():
            return self._up(personas, hosts, log)

    def _up(self, personas, hosts, log):
        t0 = time.time()
        wanted = host_names(personas, hosts)
        self._base_up()
        st = self.state()
        for name, persona in wanted:
            if name in st["hosts"] and st["hosts"][name]["persona"] != persona:
                raise LabError("host %s exists with persona %s" % (name, st["hosts"][name]["persona"]))
        errors = []
        threads = []
        for name, persona in wanted:
            if name not in st["hosts"]:
                used = set(h["index"] for h in st["hosts"].values())
                idx = min(set(range(0, 200)) - used)
                st["hosts"][name] = {"name": name, "persona": persona, "index": idx,
                                     "netns": self.host_netns(name),
                                     "mgmt_ip": "%s.%d" % (MGMT_NET, 10 + idx),
                                     "bond0_ip": "%s.%d" % (UPLINK_NET, 10 + idx)}
        self._save(st)
        for name, dummy in wanted:
            if self._host_healthy(name):
                continue

            def work(n=name):
                try:
                    self._host_up(n)
                except Exception as exc:  # report all hosts' failures together
                    errors.append("%s: %s" % (n, exc))
            t = threading.Thread(target=work)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        self._write_inventory()
        if errors:
            raise LabError("lab %s: host set-up failed:\n%s" % (self.name, "\n".join(errors)))
        if log:
            log("lab %s up in %.1fs" % (self.name, time.time() - t0))
        return self.inventory_path

    def _base_up(self):
        for tool in ("libvirtd", "virtlogd", "sshd", "dnsmasq", "qemu-system-x86_64"):
            if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin")):
                raise LabError("%s is missing (run `make apt`)" % tool)
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir, 0o755)
        os.makedirs(self.nsdir, exist_ok=True)
        os.makedirs(os.path.join(self.dir, "cp"), exist_ok=True)
        if not _is_mountpoint(self.nsdir):
            _run(["mount", "--bind", self.nsdir, self.nsdir])
            _run(["mount", "--make-private", self.nsdir])
        if not os.path.exists(self.key_path):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "virtlab-%s" % self.name,
                  "-f", self.key_path])
        shutil.copyfile(self.key_path + ".pub", os.path.join(self.dir, "authorized_keys"))
        # kernel log lines from every netns reach dmesg (value before the first lab kept aside)
        with self._lock:
            if not os.path.exists(SYSCTL_ORIG):
                with open(SYSCTL_ALL_NETNS) as f:
                    _write(SYSCTL_ORIG, f.read())
            with open(SYSCTL_ALL_NETNS, "w") as f:
                f.write("1\n")
        if not os.path.exists(self.state_path):
            self._save({"lab": self.name, "hosts": {}, "guests": {}})
        for ns in (self.mgmt_ns, self.uplink_ns):
            if not os.path.exists("/run/netns/%s" % ns):
                _run(["ip", "netns", "add", ns])
        m = ["ip", "-n", self.mgmt_ns]
        if _run(m + ["link", "show", "br0"], check=False).returncode != 0:
            _run(m + ["link", "set", "lo", "up"])
            _run(m + ["link", "add", "br0", "type", "bridge"])
            _run(m + ["addr", "add", MGMT_GW + "/24", "dev", "br0"])
            _run(m + ["link", "set", "br0", "up"])
        u = ["ip", "-n", self.uplink_ns]
        if _run(u + ["link", "show", "br0"], check=False).returncode != 0:
            _run(u + ["link", "set", "lo", "up"])
            _run(u + ["link", "add", "br0", "type", "bridge"])
            _run(u + ["addr", "add", UPLINK_GW + "/24", "dev", "br0"])
            _run(u + ["addr", "add", UPLINK_IP + "/24", "dev", "br0"])
            _run(u + ["link", "set", "br0", "up"])
        pidf = os.path.join(self.dir, "uplink-listener.pid")
        if not _alive(pidf):
            with open(os.path.join(self.dir, "uplink-listener.err"), "a") as err:
                p = subprocess.Popen(["nsenter", "--net=/run/netns/%s" % self.uplink_ns, SYS_PYTHON,
                                      UPLINK_LISTENER, str(UPLINK_PORT), self.uplink_log], stdin=subprocess.DEVNULL,
                                     stdout=err, stderr=err, start_new_session=True, close_fds=True)
            _write(pidf, "%d\n" % p.pid)

    def _host_healthy(self, host):
        h = os.path.join(self.dir, "hosts", host)
        return (os.path.exists(os.path.join(h, "up.done"))
                and os.path.exists("/run/netns/%s" % self.host_netns(host))
                and all(_alive(os.path.join(h, "pids", d + ".pid")) for d in ("virtlogd", "libvirtd", "sshd")))

    def _host_up(self, host):
        info = self._host(host)
        persona = info["persona"]
        ns = self.host_netns(host)
        hdir = os.path.join(self.dir, "hosts", host)
        done = os.path.join(hdir, "up.done")
        if os.path.exists(done):
            os.unlink(done)
        for sub in ("ovl/etc/u", "ovl/etc/w", "ovl/bin/u", "ovl/bin/w", "ovl/sbin/u", "ovl/sbin/w",
                    "var-lib-libvirt", "var-log-libvirt/qemu", "var-cache-libvirt", "root/.ssh", "tmp",
                    "pids"):
            os.makedirs(os.path.join(hdir, sub), exist_ok=True)
        os.chmod(os.path.join(hdir, "tmp"), 0o1777)
        os.chmod(os.path.join(hdir, "root"), 0o700)
        for sub in ("qemu", "dnsmasq", "network", "images", "boot", "sanlock", "swtpm", "filesystems"):
            os.makedirs(os.path.join(hdir, "var-lib-libvirt", sub), exist_ok=True)
        # ---- network namespace and links (never in the root namespace) ----
        if not os.path.exists("/run/netns/%s" % ns):
            _run(["ip", "netns", "add", ns])
        hn = ["ip", "-n", ns]
        mlink, ulink = "m-%s" % host[:12], "u-%s" % host[:12]
        if _run(hn + ["link", "show", "eth0"], check=False).returncode != 0:
            _run(["ip", "-n", self.mgmt_ns, "link", "del", mlink], check=False)
            _run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", mlink,
                  "netns", self.mgmt_ns])
            _run(["ip", "-n", self.mgmt_ns, "link", "set", mlink, "master", "br0", "up"])
            _run(hn + ["link", "set", "lo", "up"])
            _run(hn + ["addr", "add", "%s/24" % info["mgmt_ip"], "dev", "eth0"])
            _run(hn + ["link", "set", "eth0", "up"])
        if _run(hn + ["link", "show", "bond0"], check=False).returncode != 0:
            _run(["ip", "-n", self.uplink_ns, "link", "del", ulink], check=False)
            _run(["ip", "link", "add", "bond0", "netns", ns, "type", "veth", "peer", "name", ulink,
                  "netns", self.uplink_ns])
            _run(["ip", "-n", self.uplink_ns, "link", "set", ulink, "master", "br0", "up"])
            _run(hn + ["addr", "add", "%s/24" % info["bond0_ip"], "dev", "bond0"])
            _run(hn + ["link", "set", "bond0", "up"])
            _run(hn + ["route", "replace", "default", "via", UPLINK_GW, "dev", "bond0"])
        _run(["nsenter", "--net=/run/netns/%s" % ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        # ---- persistent mount + uts namespace ----
        mnt, uts = os.path.join(self.nsdir, host + ".mnt"), os.path.join(self.nsdir, host + ".uts")
        if not (_is_mountpoint(mnt) and _is_mountpoint(uts)):
            for f in (mnt, uts):
                if _is_mountpoint(f):
                    _run(["umount", f])
                _write(f, "")
            self._write_sshd_config(host, hdir)
            tree = PERSONAS[persona].get("rootfs")
            tree = rootfs.build(tree) if tree else ""
            write_persona_dir(persona, os.path.join(hdir, "persona"), root=tree or "/")
            _run(["nsenter", "--net=/run/netns/%s" % ns, "unshare", "--mount=%s" % mnt, "--uts=%s" % uts,
                  "--propagation", "private", "/bin/sh", HOST_SETUP, hdir, self.dir, host, tree], cwd="/")
        # ---- daemons ----
        pids = os.path.join(hdir, "pids")
        if not _alive(os.path.join(pids, "virtlogd.pid")):
            self.exec(host, ["virtlogd", "-d", "-p", os.path.join(pids, "virtlogd.pid")])
        if not _alive(os.path.join(pids, "libvirtd.pid")):
            self.exec(host, ["libvirtd", "-d", "-p", os.path.join(pids, "libvirtd.pid")])
        if not _alive(os.path.join(pids, "sshd.pid")):
            self.exec(host, ["/usr/sbin/sshd", "-f", os.path.join(hdir, "sshd_config")])
        deadline = time.time() + 60
        last = ""
        while time.time() < deadline:
            p = self.virsh(host, "net-list", "--name", check=False, timeout=20)
            last = p.stdout + p.stderr
            if p.returncode == 0 and "default" in p.stdout.split():
                break
            time.sleep(0.2)
        else:
            raise LabError("libvirtd on %s: default network not active: %s" % (host, last))
        _write(done, "%f\n" % time.time())

    def restart_daemon(self, host, daemon="libvirtd"):
        """Start ``daemon`` (virtlogd, libvirtd or sshd) of ``host`` again as ``up`` starts it, killing
        it first (SIGKILL) if it still runs: what systemd's Restart= does after a crash. For libvirtd,
        waits (60 s at most) until it answers ``virsh list``. Returns the new pid."""
        cmds = {"virtlogd": lambda pf: ["virtlogd", "-d", "-p", pf],
                "libvirtd": lambda pf: ["libvirtd", "-d", "-p", pf],
                "sshd": lambda pf: ["/usr/sbin/sshd", "-f", os.path.join(self.dir, "hosts", host, "sshd_config")]}
        if daemon not in cmds:
            raise LabError("restart_daemon: daemon must be one of %s" % ", ".join(sorted(cmds)))
        self._host(host)
        pidfile = os.path.join(self.dir, "hosts", host, "pids", daemon + ".pid")
        if _alive(pidfile):
            with open(pidfile) as f:
                pid = int(f.read().split()[0])
            os.kill(pid, signal.SIGKILL)
            deadline = time.time() + 10
            while os.path.exists("/proc/%d" % pid) and not _zombie(pid) and time.time() < deadline:
                time.sleep(0.05)
        self.exec(host, cmds[daemon](pidfile))
        deadline = time.time() + 60
        last = ""
        while time.time() < deadline:
            if daemon != "libvirtd" and _alive(pidfile):
                break
            if daemon == "libvirtd":
                p = self.virsh(host, "list", "--all", check=False, timeout=20)
                last = p.stdout + p.stderr
                if p.returncode == 0:
                    break
            time.sleep(0.1)
        else:
            raise LabError("%s on %s did not come back within 60 s: %s" % (daemon, host, last))
        with open(pidfile) as f:
            return int(f.read().split()[0])

    def _write_sshd_config(self, host, hdir):
        """The host's sshd: listens on the mgmt address only, root by the lab key only."""
        info = self._host(host)
        hostkey = os.path.join(hdir, "ssh_host_ed25519_key")
        if not os.path.exists(hostkey):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host, "-f", hostkey])
        _write(os.path.join(hdir, "sshd_config"), "\n".join([
            "# virtlab %s/%s" % (self.name, host),
            "ListenAddress %s" % info["mgmt_ip"],
            "HostKey %s" % hostkey,
            "PidFile %s" % os.path.join(hdir, "pids", "sshd.pid"),
            "PermitRootLogin prohibit-password",
            "AuthorizedKeysFile %s" % os.path.join(self.dir, "authorized_keys"),
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "AcceptEnv LANG LC_*",
            "MaxSessions 50",
            "MaxStartups 50:30:100",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
            "",
        ]))

    def _write_inventory(self):
        st = self.state()
        hosts = sorted(st["hosts"].values(), key=lambda h: h["index"])
        _write(self.inventory_path, render_inventory(self.name, hosts, self.key_path, self.mgmt_ns,
                                                     state_dir=self.dir))

    # ---- guests ----------------------------------------------------------------------------
    def _network(self, host, network):
        xml = self.virsh(host, "net-dumpxml", network).stdout
        br = re.search(r"<bridge name='([^']+)'", xml)
        ip = re.search(r"<ip address='([0-9.]+)' (?:netmask='([0-9.]+)'|prefix='(\d+)')", xml)
        res = {"bridge": br.group(1) if br else None}
        if ip:
            if ip.group(2):
                prefix = sum(bin(int(o)).count("1") for o in ip.group(2).split("."))
            else:
                prefix = int(ip.group(3))
            res.update(gateway=ip.group(1), prefix=prefix)
        return res

    def guest_add(self, name, host, network="default", kind="ns"):
        """Add a guest (idempotent by name); returns its record."""
        with self._locked(create=False) as ok:
            if not ok:
                raise LabError("lab %s is not up" % self.name)
            return self._guest_add(name, host, network, kind)

    def _guest_add(self, name, host, network, kind):
        if not NAME_RE.match(name):
            raise LabError("guest name must match %s" % NAME_RE.pattern)
        st = self.state()
        if name in st["guests"]:
            return st["guests"][name]
        self._host(host)
        net = self._network(host, network)
        g = {"name": name, "host": host, "network": network, "kind": kind, "bridge": net["bridge"]}
        if kind == "ns":
            if not net["bridge"]:
                raise LabError("network %s on %s has no bridge to plug a namespace guest into (use kind=qemu)"
                               % (network, host))
            ip = None
            if "gateway" in net:  # static address .200+ (outside what tests hand out), else no address
                base = net["gateway"].rsplit(".", 1)[0]
                used = set(x.get("ip") for x in st["guests"].values()
                           if x["host"] == host and x.get("bridge") == net["bridge"])
                ip = next("%s.%d" % (base, i) for i in range(200, 250) if "%s.%d" % (base, i) not in used)
            gns = "vn-%s-g-%s" % (self.name, name)
            veth = "vg-%s" % name
            _run(["ip", "netns", "add", gns])
            try:
                _run(["ip", "link", "add", "eth0", "netns", gns, "type", "veth", "peer", "name", veth,
                      "netns", self.host_netns(host)])
                self.exec(host, ["ip", "link", "set", veth, "master", net["bridge"], "up"])
                gi = ["ip", "-n", gns]
                _run(gi + ["link", "set", "lo", "up"])
                if ip:
                    _run(gi + ["addr", "add", "%s/%d" % (ip, net["prefix"]), "dev", "eth0"])
                _run(gi + ["link", "set", "eth0", "up"])
                if ip:
                    _run(gi + ["route", "add", "default", "via", net["gateway"]])
                mac = link_mac(gns, "eth0")
                self._wait_forwarding(host, veth)
            except Exception:
                _run(["ip", "netns", "del", gns], check=False)
                raise
            g.update(ip=ip, mac=mac, netns=gns, veth=veth, gateway=net.get("gateway"))
        elif kind == "qemu":
            xml = """<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='network'><source network='%s'/><model type='e1000'/><rom enabled='no'/></interface>
    <memballoon model='none'/>
  </devices>
</domain>
""" % (name, network)
            path = os.path.join(self.dir, "hosts", host, "domain-%s.xml" % name)
            _write(path, xml)
            self.virsh(host, "define", path)
            try:
                self.virsh(host, "start", name, timeout=60)
            except LabError:
                self.virsh(host, "undefine", name, check=False)
                raise
            iface = self.virsh(host, "domiflist", name).stdout.split()
            # Interface Type Source Model MAC (no wait for STP forwarding: nothing runs inside)
            g.update(tap=iface[0], mac=iface[4], netns=self.host_netns(host), ip=None, domain=name)
        else:
            raise LabError("kind must be ns or qemu")
        st = self.state()
        st["guests"][name] = g
        self._save(st)
        return g

    def _wait_forwarding(self, host, port, timeout=15):
        """A new bridge port passes traffic only after STP listening/learning (kernel minimum 2 s
        each when STP is on, as in libvirt's default network): wait for state 3 (forwarding)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            p = self.exec(host, ["cat", "/sys/class/net/%s/brport/state" % port], check=False)
            if p.returncode != 0 or p.stdout.strip() == "3":
                return
            time.sleep(0.2)

    def guest_exec(self, name, argv, check=True, input=None, timeout=120):
        g = self.state()["guests"].get(name)
        if not g:
            raise LabError("no guest %r" % name)
        if g["kind"] != "ns":
            raise LabError("guest %s is a diskless qemu domain: nothing runs inside it" % name)
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        return _run(["nsenter", "--net=/run/netns/%s" % g["netns"], "--"] + list(argv),
                    check=check, input=input, timeout=timeout)

    def guest_del(self, name):
        with self._locked(create=False) as ok:
            return ok and self._guest_del(name)

    def _guest_del(self, name):
        st = self.state()
        g = st["guests"].get(name)
        if not g:
            return False
        if g["kind"] == "ns":
            ino = _ns_inode("/run/netns/%s" % g["netns"])
            _kill_all(_pids_in({ino} - {None}))
            _run(["ip", "netns", "del", g["netns"]], check=False)
        else:
            self.virsh(g["host"], "destroy", name, check=False)
            self.virsh(g["host"], "undefine", name, check=False)
        st = self.state()
        st["guests"].pop(name, None)
        self._save(st)
        return True

    # ---- status / down ---------------------------------------------------------------------
    def status(self):
        st = self.state()
        out = {"lab": self.name, "up": self.is_up(), "inventory": self.inventory_path, "hosts": {},
               "guests": st["guests"],
               "uplink_listener": _alive(os.path.join(self.dir, "uplink-listener.pid"))}
        for h, info in sorted(st["hosts"].items(), key=lambda kv: kv[1]["index"]):
            pd = os.path.join(self.dir, "hosts", h, "pids")
            out["hosts"][h] = dict(info, daemons={d: _alive(os.path.join(pd, d + ".pid"))
                                                  for d in ("virtlogd", "libvirtd", "sshd")},
                                   ready=self._host_healthy(h))
        return out

    def _our_netns(self):
        """Names of this lab's namespaces (exact names; other labs' names may share a prefix)."""
        names = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
        st = self.state()
        ours = {self.mgmt_ns, self.uplink_ns}
        hosts = set(st["hosts"])
        if os.path.isdir(os.path.join(self.dir, "hosts")):
            hosts.update(os.listdir(os.path.join(self.dir, "hosts")))
        ours.update(self.host_netns(h) for h in hosts)
        ours.update(g["netns"] for g in st["guests"].values() if g["kind"] == "ns")
        # leftovers of a crashed run whose state is gone: our naming scheme, not another lab's
        pref = "vn-%s-" % self.name
        others = [d[len("/run/virtnet-"):] for d in glob.glob("/run/virtnet-*")
                  if os.path.isdir(d) and d != self.dir]
        for n in names:
            rest = n[len(pref):] if n.startswith(pref) else None
            if rest is None or not OWN_NETNS_RE.match(rest):
                continue
            if any(len(o) > len(self.name) and n.startswith("vn-%s-" % o) for o in others):
                continue
            ours.add(n)
        return sorted(n for n in names if n in ours)

    def down(self, log=None):
        """Remove everything the lab made (also after a partial up or a crash)."""
        with self._locked(create=False):
            self._down(log)

    def _down(self, log):
        t0 = time.time()
        netns = self._our_netns()
        st = self.state()
        # qemu domains first (clean libvirt shutdown of their taps)
        for g in list(st["guests"].values()):
            if g["kind"] == "qemu":
                try:
                    self.virsh(g["host"], "destroy", g["name"], check=False, timeout=20)
                except Exception:
                    pass
        inodes = set(i for i in (_ns_inode("/run/netns/%s" % n) for n in netns) if i)
        mnt_inodes = set(i for i in (_ns_inode(f) for f in glob.glob(os.path.join(self.nsdir, "*.mnt"))) if i)
        mnt_inodes.discard(_ns_inode("/proc/self/ns/mnt"))
        for dummy in range(3):
            pids = sorted(set(_pids_in(inodes, "net")) | set(_pids_in(mnt_inodes, "mnt")))
            if not pids:
                break
            _kill_all(pids)
        pidf = os.path.join(self.dir, "uplink-listener.pid")
        if _alive(pidf):
            with open(pidf) as f:
                _kill_all([int(f.read().split()[0])])
        for f in sorted(glob.glob(os.path.join(self.nsdir, "*"))):
            if _is_mountpoint(f):
                _run(["umount", f], check=False)
        if _is_mountpoint(self.nsdir):
            _run(["umount", self.nsdir], check=False)
        for n in netns:
            _run(["ip", "netns", "del", n], check=False)
        if os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)
        with self._lock:
            others = glob.glob("/run/virtnet-*/state.json")
            if not others and os.path.exists(SYSCTL_ORIG):
                with open(SYSCTL_ORIG) as f:
                    old = f.read().strip() or "0"
                with open(SYSCTL_ALL_NETNS, "w") as f:
                    f.write(old + "\n")
                os.unlink(SYSCTL_ORIG)
        if log:
            log("lab %s down in %.1fs" % (self.name, time.time() - t0))
