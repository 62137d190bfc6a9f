#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# virtlab persona wrapper, installed as the host's sysctl: logger names of the persona's kernel. EMULATION:
# this kernel registers nf_log_ipv4/nf_log_ipv6 where 2.6.32 registers ipt_LOG/ip6t_LOG; values of
# net.netfilter.nf_log.* are translated both ways. /proc/sys and /proc/net/netfilter/nf_log show the real
# names. Data (written by tests/lab/personas.py) in $VIRTLAB_PERSONA_DIR (default /etc/virtlab):
# sysctl_map, lines "PERSONA_NAME KERNEL_NAME"; real/sysctl, the real program.
d=${VIRTLAB_PERSONA_DIR:-/etc/virtlab}
map="$d/sysctl_map"
# to the kernel's names: an argument NAME=VALUE or "NAME = VALUE" whose VALUE is a persona name
for a do
  shift
  set -- "$@" "$(VIRTLAB_ARG=$a awk '
    BEGIN { arg = ENVIRON["VIRTLAB_ARG"] }
    { n = length($1); pre = substr(arg, 1, length(arg) - n)
      if (length(arg) > n && substr(arg, length(arg) - n + 1) == $1 && pre ~ /= ?$/) { print pre $2; hit = 1; exit } }
    END { if (!hit) print arg }' "$map")"
done
out=$("$d/real/sysctl" "$@"); rc=$?
# back to the persona's names: "net.netfilter.nf_log.N = VALUE" lines and bare values (sysctl -n)
[ -n "$out" ] && printf '%s\n' "$out" | awk '
  FILENAME == ARGV[1] { name[$2] = $1; next }
  { line = $0
    if (line in name) line = name[line]
    else if (match(line, /^net[.\/]netfilter[.\/]nf_log[.\/][0-9]* = /)) {
      v = substr(line, RLENGTH + 1)
      if (v in name) line = substr(line, 1, RLENGTH) name[v]
    }
    print line }' "$map" -
exit $rc
