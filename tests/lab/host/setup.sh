#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# virtlab: make a lab host of the current mount + UTS namespaces, fresh and private. The Lab class
# (tests/lab/netnslab.py) runs it inside the host's network namespace as
#   unshare --mount=... --uts=... --propagation private /bin/sh setup.sh H LABDIR HOST [ROOTFS]
#   H       the host's state dir (LABDIR/hosts/HOST): overlay upper layers, libvirt state, persona/
#   LABDIR  the lab's state dir (/run/virtnet-NAME), bound back into the host's private /run
#   HOST    the host name
#   ROOTFS  a Debian tree (tests/lab/rootfs.py) to make the host's root, or empty: the machine's own
#           /, with overlays of /etc, /usr/bin and /usr/sbin
# What makes the host its persona is in $H/persona (tests/lab/personas.py writes it): release files
# (files/), paths to remove (hide), wrappers to install (install: "NAME DEST", NAME in bin/), the
# persona kernel's release (osrelease), libvirt's firewall backend (firewall_backend).
set -e
H=$1
LABDIR=$2
HOST=$3
ROOTFS=${4:-}
LAB_BASE=${LABDIR##*/}
P=$H/persona

if [ -n "$ROOTFS" ]; then
  # `/` becomes an overlay of the tree (writes go to $H/ovl/root/u), with this netns' sysfs, a fresh
  # procfs, the machine's /dev, a private tmpfs /run with the lab's state dir bound back in (the host's
  # sshd_config, keys and pid files live there), private /tmp; the machine's tree is detached.
  R=$H/rootmnt
  mkdir -p "$H/ovl/root/u" "$H/ovl/root/w" "$R"
  mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$H/ovl/root/u,workdir=$H/ovl/root/w" "$R"
  mount -t proc proc "$R/proc"
  mount -t sysfs sysfs "$R/sys"
  mount --rbind /dev "$R/dev"
  mount -t tmpfs -o mode=755,size=64m tmpfs "$R/run"
  mkdir -p "$R/run/$LAB_BASE" "$R/run/sshd" "$R/run/lock" "$R/run/libvirt" "$R/run/user" "$R/run/mount" \
    "$R/run/netns"
  mount --bind "$LABDIR" "$R/run/$LAB_BASE"
  mount --bind "$H/tmp" "$R/tmp"
  mount --bind "$H/root" "$R/root"
  mkdir -p "$R/var/log/libvirt" "$R/var/cache/libvirt" "$R/var/lib/libvirt"
  mount --bind "$H/var-lib-libvirt" "$R/var/lib/libvirt"
  mount --bind "$H/var-log-libvirt" "$R/var/log/libvirt"
  mount --bind "$H/var-cache-libvirt" "$R/var/cache/libvirt"
  mkdir -p "$R/.oldroot"
  cd "$R"
  pivot_root . .oldroot
  cd /
  # from here on every binary is the rootfs's; the machine's tree goes away for this host
  umount -l /.oldroot
  rmdir /.oldroot 2>/dev/null || true
  hostname "$HOST"
else
  # this netns' sysfs (libvirt reads /sys/class/net), hostname
  mount -t sysfs sysfs /sys
  hostname "$HOST"
  # drop references to other namespaces' files copied into this mount namespace
  umount -l /run/netns 2>/dev/null || true
  for d in /run/virtnet-*/ns; do umount -l "$d" 2>/dev/null || true; done
  # writable views of /etc, /usr/bin, /usr/sbin private to this host (overlayfs)
  mount -t overlay overlay -o "lowerdir=/etc,upperdir=$H/ovl/etc/u,workdir=$H/ovl/etc/w" /etc
  mount -t overlay overlay -o "lowerdir=/usr/bin,upperdir=$H/ovl/bin/u,workdir=$H/ovl/bin/w" /usr/bin
  mount -t overlay overlay -o "lowerdir=/usr/sbin,upperdir=$H/ovl/sbin/u,workdir=$H/ovl/sbin/w" /usr/sbin
  # private /run (keeps the lab dir), /tmp, /root, libvirt state
  mkdir -p "$H/newrun" && mount -t tmpfs -o mode=755,size=64m tmpfs "$H/newrun"
  mkdir -p "$H/newrun/$LAB_BASE" "$H/newrun/sshd" "$H/newrun/lock" "$H/newrun/libvirt" "$H/newrun/user" \
    "$H/newrun/mount"
  mount --bind "$LABDIR" "$H/newrun/$LAB_BASE"
  mount --move "$H/newrun" /run
  mount --bind "$H/tmp" /tmp
  mount --bind "$H/root" /root
  mount --bind "$H/var-lib-libvirt" /var/lib/libvirt
  mkdir -p /var/log/libvirt /var/cache/libvirt 2>/dev/null || true
  mount --bind "$H/var-log-libvirt" /var/log/libvirt
  if [ -d /var/cache/libvirt ]; then mount --bind "$H/var-cache-libvirt" /var/cache/libvirt; fi
fi

# libvirt config: default network defined + autostart, qemu as root without cgroups/namespaces
mkdir -p /etc/libvirt/qemu/networks/autostart
[ -f /etc/libvirt/qemu/networks/default.xml ] ||
  cp /usr/share/libvirt/networks/default.xml /etc/libvirt/qemu/networks/default.xml
ln -sf /etc/libvirt/qemu/networks/default.xml /etc/libvirt/qemu/networks/autostart/default.xml
cat >> /etc/libvirt/qemu.conf <<'CONF'
# virtlab
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
cgroup_controllers = [ ]
namespaces = [ ]
security_driver = "none"
CONF
cat >> /etc/libvirt/libvirtd.conf <<'CONF'
# virtlab
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
CONF
printf '%s\n' "$HOST" > /etc/hostname
# resolvable own name (libvirt resolves it on every domain start; DNS would time out here)
printf '127.0.1.1\t%s\n' "$HOST" >> /etc/hosts

# the persona: its data where the wrappers read it, removed paths, release files, wrappers
ln -sfn "$P" /etc/virtlab
while IFS= read -r path; do rm -f "$path"; done < "$P/hide"
if [ -d "$P/files" ]; then
  (cd "$P/files" && find . -type f) | while IFS= read -r f; do
    rm -f "/${f#./}"
    cp "$P/files/$f" "/${f#./}"
  done
fi
while read -r name dest; do
  rm -f "$dest"
  cp "$P/bin/$name" "$dest"
  chmod 755 "$dest"
done < "$P/install"
if [ -f "$P/osrelease" ]; then mount --bind "$P/osrelease" /proc/sys/kernel/osrelease; fi
if [ -f "$P/firewall_backend" ]; then
  read -r backend < "$P/firewall_backend"
  printf '# virtlab persona\nfirewall_backend = "%s"\n' "$backend" >> /etc/libvirt/network.conf
fi
