#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# virtlab persona wrapper, installed as the host's tc (persona el10): EMULATION of ONE tc call. libvirt
# >= 10.x's nftables firewall backend adds, for every IPv4 network, a filter "tc filter add dev BR ...
# action csum udp" that fills in the checksum of DHCP replies; this machine's kernel has no act_csum (not
# built in, no modules), so that call fails and the network does not start. Only a call with "action
# csum" is answered "done" here (and logged to /var/log/libvirt/tc-shim.log); every other tc call runs
# the real tc ($VIRTLAB_PERSONA_DIR, default /etc/virtlab, real/tc). DHCP replies through such a network
# carry the checksum they came with.
d=${VIRTLAB_PERSONA_DIR:-/etc/virtlab}
for a in "$@"; do
  if [ "$a" = csum ]; then
    case " $* " in
      *" action csum "*) echo "$(date +%s) shimmed: tc $*" >> /var/log/libvirt/tc-shim.log; exit 0 ;;
    esac
  fi
done
exec "$d/real/tc" "$@"
