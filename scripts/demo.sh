#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# `make demo`: the seed's trace reproduced on a lab hypervisor, in under 3 minutes.
#   1. a lab hypervisor (network + mount namespaces with real libvirtd, sshd) and its uplink 10.44.32.217:3128
#   2. nat_network: libvirt's default NAT network (virbr0, 192.168.122.0/24) declared
#   3. a guest namespace on virbr0
#   4. the trace role: nf_log + expiring TRACE rules, capture while the guest connects, report, rules removed
#   5. each packet's path explained; the HTML report's path printed
# DEMO_ARGS: more ansible-playbook arguments (e.g. -v).
# KEEP=1 keeps the lab up afterwards (take it down with: python3 tests/lab/virtlab.py --lab demo down).
# DEMO_PERSONA=el7 (default: legacy iptables, TRACE lines in dmesg as in the seed), el6, el8, debian11, debian12
# (iptables-nft, xtables-monitor), debian13, or el10 (libvirt's nftables backend: table ip libvirt_network, read with
# `nft monitor trace`; the explanation names its guest_output accept and guest_nat masquerade).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LAB=${DEMO_LAB:-demo}
PERSONA=${DEMO_PERSONA:-el7}
KEEP=${KEEP:-0}
REPORT_DIR=${DEMO_REPORT_DIR:-$ROOT/build/demo}
VENV=${VENV:-$ROOT/.venv}
export PATH="$VENV/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$ROOT/build/collections}
export ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_DISPLAY_SKIPPED_HOSTS=False ANSIBLE_NOCOLOR=${ANSIBLE_NOCOLOR:-1}
export ANSIBLE_CALLBACK_RESULT_FORMAT=yaml
T0=$(date +%s)

step() { printf '\n\033[1m[%3ss] %s\033[0m\n' "$(( $(date +%s) - T0 ))" "$*"; }

teardown() {
  rc=$?
  if [ "$KEEP" = "1" ]; then
    step "KEEP=1: lab '$LAB' stays up (inventory /run/virtnet-$LAB/inventory.yml; down: python3 tests/lab/virtlab.py --lab $LAB down)"
  else
    step "tearing lab '$LAB' down"
    python3 tests/lab/virtlab.py --lab "$LAB" down >/dev/null 2>&1 || true
  fi
  if [ "$rc" -ne 0 ]; then echo "demo FAILED (rc=$rc)" >&2; fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# collection link for ANSIBLE_COLLECTIONS_PATH (make deps does it too)
mkdir -p "$ROOT/build/collections/ansible_collections/virtops"
[ -e "$ROOT/build/collections/ansible_collections/virtops/virtnet" ] || ln -s "$ROOT" "$ROOT/build/collections/ansible_collections/virtops/virtnet"
mkdir -p "$REPORT_DIR"
rm -f "$REPORT_DIR"/explain-*.txt "$REPORT_DIR"/trace-*.html   # an earlier run's (other persona's) files

step "1/4 lab '$LAB': one $PERSONA hypervisor with libvirtd, sshd, and an uplink 10.44.32.217:3128"
python3 tests/lab/virtlab.py --lab "$LAB" up --hosts 1 --persona "$PERSONA"

NET_ARGS=()
if [ "$PERSONA" = el6 ]; then
  NET_ARGS=(-e demo_declare_network=false)
  step "el6 has no Python: nat_network (a module) is skipped, libvirt's default network is traced as it is"
fi
step "2/4 ansible: nat_network, a guest on virbr0, the trace role (nf_log, expiring TRACE rules, capture, cleanup)"
# DEMO_ARGS: extra ansible-playbook words, split on purpose
# shellcheck disable=SC2086
ansible-playbook -i "/run/virtnet-$LAB/inventory.yml" playbooks/demo.yml \
  -e demo_lab="$LAB" -e demo_report_dir="$REPORT_DIR" -e demo_quiet=true "${NET_ARGS[@]}" ${DEMO_ARGS:-}

step "3/4 the path of the guest's connection, explained"
cat "$REPORT_DIR"/explain-*.txt

left=$(python3 tests/lab/virtlab.py --lab "$LAB" exec "$PERSONA-1" -- sh -c 'iptables-save -t raw | grep -c "virtnet:" || true')
echo "TRACE rules of ours left on the host after the run: $left"

step "4/4 report"
for f in "$REPORT_DIR"/trace-*.html; do if [ -e "$f" ]; then echo "HTML report: $f"; fi; done
step "done in $(( $(date +%s) - T0 ))s"
