#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# virtlab persona wrapper, installed as the host's uname: the persona's kernel release in place of the
# real one (the real kernel is shared by all hosts). Data (written by tests/lab/personas.py) in
# $VIRTLAB_PERSONA_DIR (default /etc/virtlab): osrelease; real/uname, the real program.
d=${VIRTLAB_PERSONA_DIR:-/etc/virtlab}
read -r rel < "$d/osrelease"
real=$("$d/real/uname" -r)
out=$("$d/real/uname" "$@") || exit $?
printf '%s\n' "$out" | sed "s/$real/$rel/"
