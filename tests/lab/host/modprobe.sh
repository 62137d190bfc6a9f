#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# virtlab persona wrapper, installed as the host's modprobe: it knows only the persona kernel's module
# names. Every known module is built into this machine's kernel, so "loading" one is a no-op.
# Data (written by tests/lab/personas.py): $VIRTLAB_PERSONA_DIR (default /etc/virtlab)/modules, one
# name a line, and modprobe_fatal, the persona's "not found" message with %s for the module name.
d=${VIRTLAB_PERSONA_DIR:-/etc/virtlab}
quiet=0; remove=0; mods=""
for a in "$@"; do
  case "$a" in
    -q|--quiet) quiet=1 ;;
    -r|--remove) remove=1 ;;
    -V|--version) echo "kmod version 20"; exit 0 ;;
    -*) ;;
    *=*) ;;
    *) if [ -z "$mods" ]; then mods="$a"; elif [ "$remove" = 1 ]; then mods="$mods $a"; fi ;;
  esac
done
[ -z "$mods" ] && { echo "Usage: modprobe [options] modulename" >&2; exit 1; }
for m in $mods; do
  n=$(printf '%s' "$m" | tr '-' '_')
  if ! grep -qxF -e "$n" "$d/modules"; then
    if [ "$quiet" != 1 ]; then
      IFS= read -r fatal < "$d/modprobe_fatal"
      printf '%s%s%s\n' "${fatal%%%s*}" "$m" "${fatal#*%s}" >&2
    fi
    exit 1
  fi
done
exit 0
