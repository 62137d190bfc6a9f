#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: trace_capture
short_description: Capture netfilter TRACE output on a host and return the path of every packet
version_added: 1.0.0
description:
  - Collects the output of netfilter C(TRACE) rules (see M(virtops.virtnet.trace_rule)) on a host and returns it
    parsed into packets, each with its hops through the tables and chains, the rule that matched at each hop (from an
    C(iptables-save) snapshot taken at capture time), and the address translations on the way.
  - Two sources. V(kernel_log) reads the kernel log (legacy iptables, C(nf_log)) through C(dmesg), C(journalctl -k) or
    a syslog file, only from a unique marker line written to C(/dev/kmsg) when the capture starts, never the whole
    history; the window is cut on the host so only it is transferred. V(nfnetlink) runs C(xtables-monitor --trace)
    (iptables-nft) or C(nft monitor trace) in the background on the host and stops it by its PID.
  - All network namespaces of a machine (containers, namespace-based hosts) share one kernel log. With
    O(host_filter=true) kernel log lines that name interfaces or MAC addresses the host does not have are dropped, so
    other hosts' traffic does not pollute the result.
  - Warns when log lines were lost (kernel C(callbacks suppressed), rsyslog and journald rate limiting, nfnetlink
    buffer overruns) and, when nothing was captured, says what is the likely cause (no logger bound, no TRACE rule of
    ours or expired, C(nf_log_all_netns) off, wrong backend for the source...).
  - Runs on the host with POSIX shell commands only; no Python is needed on the host. Parsing happens on the
    controller. Use C(become) when not connecting as root.
author:
  - virtops.virtnet contributors (@virtops)
options:
  action:
    description:
      - V(oneshot) starts a capture, runs O(probe) if given, waits O(duration) seconds, stops and returns the packets.
      - V(start) starts a capture in the background and returns its RV(capture_id); V(stop) with that O(capture_id)
        ends it and returns the packets. Send the traffic between the two tasks.
    type: str
    choices: [oneshot, start, stop]
    default: oneshot
  capture_id:
    description:
      - The RV(capture_id) returned by O(action=start). Required with O(action=stop).
    type: str
  source:
    description:
      - Where to read TRACE output. V(auto) picks V(nfnetlink) when the host's iptables uses the nf_tables backend and
        C(xtables-monitor) or C(nft) exists, else V(kernel_log).
    type: str
    choices: [auto, kernel_log, nfnetlink]
    default: auto
  kernel_log_reader:
    description:
      - How to read the kernel log. V(auto) uses C(dmesg) when present, else C(journalctl -k) on systemd hosts, else
        the syslog file.
    type: str
    choices: [auto, dmesg, journalctl, syslog]
    default: auto
  syslog_file:
    description:
      - Syslog file for O(kernel_log_reader=syslog). Default the first readable of C(/var/log/messages),
        C(/var/log/kern.log) and C(/var/log/syslog).
    type: path
  monitor:
    description:
      - nfnetlink monitor. V(auto) uses C(nft monitor trace) when native nftables tables exist on the host (read
        with C(nft list tables); for example libvirt's C(table ip libvirt_network) with its nftables firewall backend,
        whose rules xtables-monitor cannot print), else prefers C(xtables-monitor --trace) (prints iptables rule
        text), else C(nft monitor trace).
    type: str
    choices: [auto, xtables-monitor, nft]
    default: auto
  backend:
    # choices and default: virtops.virtnet.netfilter.BACKEND
    description:
      - iptables backend for the source choice and the rules snapshot. V(auto) uses the one C(iptables --version)
        reports.
  duration:
    description:
      - With O(action=oneshot), how long to capture, in seconds (more than 0, at most 3600). The probe runs at the
        start; the capture lasts at least until the probe returns.
    type: float
    default: 5.0
  lifetime:
    description:
      - With O(action=start) and O(source=nfnetlink), the background monitor ends by itself after this many seconds
        (10 to 604800) if O(action=stop) never comes, for example because the controller went away (needs
        C(timeout) on the host). With O(action=oneshot) the lifetime is O(duration) plus the probe's timeout plus two
        minutes.
    type: int
    default: 3600
  probe:
    description:
      - With O(action=oneshot), a command run while capturing, to make the traffic to trace.
    type: dict
    suboptions:
      command:
        description:
          - The command as a list of words (never a shell string).
        type: list
        elements: str
        required: true
      host:
        description:
          - The traced host (its inventory name), the only host the probe runs on; any other host fails with a
            message saying what to do instead.
          - To send the traffic from another inventory host, run the capture as O(action=start), the probe command
            as its own task with C(delegate_to), then O(action=stop) with O(probe_result) (see the EXAMPLES; the
            C(virtops.virtnet.trace) role does this for C(trace_probe.host)).
        type: str
      netns:
        description:
          - Network namespace (as listed by C(ip netns)) to run the command in, on the traced host
            (C(ip netns exec)).
        type: str
      timeout:
        description:
          - Seconds after which the command is killed (with C(timeout) where the host has it).
        type: int
        default: 10
  probe_result:
    description:
      - With O(action=stop), the registered result of the probe task run between O(action=start) and
        O(action=stop) (for example an C(ansible.builtin.command) task with C(delegate_to)). C(rc), C(stdout),
        C(stderr), C(host) and C(command) (else C(cmd)) are taken when present. A result without C(rc) (a task that
        could not run its command) is warned about; the capture is stopped in any case.
      - Returned as RV(probe_result); a non-zero C(rc) is warned about and, when nothing was captured, counted among
        the likely causes in RV(diagnosis), as for O(probe) with O(action=oneshot).
    type: dict
    version_added: 1.0.0
  match:
    description:
      - Keep only the packets of this flow (like the matches of M(virtops.virtnet.trace_rule)). A packet matches when
        any of its hops matches, before or after address translation.
    type: dict
    suboptions:
      protocol:
        description: Protocol name (V(tcp), V(udp), V(icmp)...) or number.
        type: str
      source:
        description: Source address or network.
        type: str
      destination:
        description: Destination address or network.
        type: str
      source_port:
        description: Source port or range V(LOW:HIGH).
        type: str
      destination_port:
        description: Destination ports or ranges.
        type: list
        elements: str
      in_interface:
        description: Input interface (V(+) suffix as wildcard). Not checked for replies.
        type: str
      both_directions:
        description:
          - Also keep the replies (source and destination swapped), for example to see the de-NAT of a connection.
        type: bool
        default: true
  host_filter:
    description:
      - For the kernel log, drop lines of other network namespaces sharing the kernel (interfaces, MAC addresses and,
        for locally generated packets, source addresses the host does not have), and packets whose first hop is not
        in the raw table once such lines were seen.
    type: bool
    default: true
  max_lines:
    description:
      - At most this many trace lines are transferred from the host (1 to 1000000); a warning says when there were
        more.
    type: int
    default: 20000
  return_lines:
    description:
      - Also return the raw lines of the capture window in RV(lines).
    type: bool
    default: false
  report_path:
    description:
      - Write a report of the packets to this path on the controller.
    type: path
  report_format:
    description:
      - Format of O(report_path). V(html) is one self-contained page with a diagram of the netfilter hooks.
    type: str
    choices: [html, text]
    default: html
  diagnose_drops:
    description:
      - When a traced packet was dropped or rejected, read the host's firewall like M(virtops.virtnet.firewall_info)
        (read-only, one more round trip) and link the finding about the table and chain that dropped it in
        RV(culprits) and RV(explanation).
    type: bool
    default: true
    version_added: 1.0.0
extends_documentation_fragment:
  - virtops.virtnet.attributes
  - virtops.virtnet.attributes.ACTIONGROUP_SHELL
  - virtops.virtnet.netfilter.BACKEND
attributes:
  check_mode:
    support: full
    details:
      - Probes the host and says which source and tool would be used; nothing is started or stopped.
  diff_mode:
    support: none
notes:
  - O(action=start) and O(action=stop) report C(changed=true) (a background monitor or a marker and a state file
    are created or removed on the host). O(action=oneshot) reports C(changed=false), because it leaves nothing behind,
    even when it fails; the probe command is not judged.
  - A capture's state is kept on the host in C(/run/virtnet-capture-<id>.state) (or C(/tmp)); the nfnetlink monitor
    writes to C(/tmp/virtnet-capture-<id>.log). O(action=stop) removes both.
  - O(action=start) and O(action=oneshot) warn about what earlier captures left on the host. A monitor still
    running ends by itself after its O(lifetime); a capture never stopped whose monitor has ended is collected by
    O(action=stop) with its id; the files of a start that was cut off (the SSH connection lost before the state
    file was written) are removed once its monitor has ended.
  - The kernel log source needs a bound logger (M(virtops.virtnet.nf_log)); in a non-initial network namespace the
    machine also needs C(net.netfilter.nf_log_all_netns=1).
  - The kernel log has no packet ids; lines are grouped into packets by the parser (same protocol and IP ID, hook
    order). Locally generated packets of other namespaces can only be told apart by their source address.
seealso:
  - module: virtops.virtnet.trace_rule
  - module: virtops.virtnet.nf_log
'''

EXAMPLES = r'''
- name: Trace guest connections to the proxy (both directions), 10 minutes at most
  virtops.virtnet.trace_rule:
    name: proxy
    protocol: tcp
    destination_port: [3128]
    expires: 600

- name: Capture while a guest namespace on the host connects to the proxy
  virtops.virtnet.trace_capture:
    duration: 3
    probe:
      netns: guest1
      command: [nc, -z, -w, "2", 10.44.32.217, "3128"]
    match:
      protocol: tcp
      destination: 10.44.32.217
      destination_port: [3128]
    report_path: /tmp/trace-proxy.html
  register: trace

- name: Show where each packet went
  ansible.builtin.debug:
    msg: "{{ trace.packets | map(attribute='summary') | list }}"

# The probe on another inventory host: start, the probe as its own delegated task, stop (always).
- name: Capture while another inventory host connects to the proxy
  block:
    - name: Start a capture
      virtops.virtnet.trace_capture:
        action: start
      register: capture

    - name: Traffic from another inventory host
      ansible.builtin.command:
        argv: [timeout, "10", curl, -sS, -m, "2", "http://10.44.32.217:3128/"]
      delegate_to: guest1
      register: probe_run
      changed_when: false
      failed_when: false
      ignore_unreachable: true
  always:
    - name: Collect
      virtops.virtnet.trace_capture:
        action: stop
        capture_id: "{{ capture.capture_id }}"
        probe_result: "{{ probe_run | combine({'host': 'guest1'}) }}"
        match:
          protocol: tcp
          destination_port: [3128]
      register: trace
      when: capture.capture_id is defined
'''

RETURN = r'''
capture_id:
  description: Identity of the capture (pass it to O(action=stop)).
  returned: always, except in check mode for start and oneshot
  type: str
  sample: 3f9a0c12be77
source_used:
  description: The source used, V(kernel_log) or V(nfnetlink).
  returned: success
  type: str
  sample: kernel_log
tool:
  description: The reader or monitor used (C(dmesg), C(journalctl), C(syslog), C(xtables-monitor), C(nft)).
  returned: success
  type: str
  sample: dmesg
packets:
  description:
    - The traced packets of the flow, in order of first appearance, as returned by the C(nf_trace) parser, with
      each hop's C(rule) resolved from the rules snapshot.
    - C(nat) lists the packet's address translations, decided by the parser alone (the report, RV(explanation) and
      the C(virtops.virtnet.trace) role render it). Each entry has C(hop) (index in C(hops)), C(field) (V(src),
      V(dst), V(sport), V(dport)), C(before), C(after) and C(implied), true when the matched rule implies it, then
      with its C(target) (V(MASQUERADE), V(SNAT), V(DNAT), V(REDIRECT), V(NETMAP)).
  returned: with action stop and oneshot
  type: list
  elements: dict
  sample:
    - family: ipv4
      proto: tcp
      src: 192.168.122.200
      dst: 10.44.32.217
      sport: 39126
      dport: 3128
      summary: raw:PREROUTING policy -> ... -> nat:LIBVIRT_PRT rule 3
      hops:
        - table: nat
          chain: LIBVIRT_PRT
          kind: rule
          rulenum: 3
          rule: -A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -p tcp -j MASQUERADE --to-ports 1024-65535
      nat:
        - hop: 14
          field: src
          before: 192.168.122.200
          after: address of bond0 ports 1024-65535
          implied: true
          target: MASQUERADE
explanation:
  description:
    - The connection's path in a few lines, computed from RV(packets) (the report shows the same lines).
    - C(IN) where the first packet entered; C(FORWARD) every base chain's rule that accepted it on the forward hook
      (iptables' C(filter) table, libvirt's nftables C(libvirt_network) C(guest_output)...), with its backend;
      C(NAT) the translation and its rule (C(masquerade to :1024-65535) in C(guest_nat), C(MASQUERADE) in
      C(LIBVIRT_PRT)); C(REPLY) the reply's de-NAT; C(DROP) per dropped packet, see RV(culprits).
  returned: with action stop and oneshot
  type: list
  elements: str
  sample:
    - "IN      tcp 192.168.122.200:59850 → 10.44.32.217:3128 enters the host on virbr0 at raw:PREROUTING"
    - "DROP    192.168.122.200:59850 → 10.44.32.217:3128 dropped by the FORWARD policy DROP of iptables-nft's filter
      table (ipv4, hook FORWARD); firewall_info docker-forward-drop@iptables-nft:ip:filter:FORWARD: ...; fix:
      iptables -I DOCKER-USER -s 192.168.122.0/24 -j ACCEPT; ..."
culprits:
  description:
    - One entry per dropped or rejected packet, saying who dropped it.
    - C(backend) (V(iptables-legacy), V(iptables-nft) or V(nftables), as M(virtops.virtnet.firewall_info) names them),
      C(family), C(table), C(chain), C(hook), C(kind) (V(policy) or V(rule)), C(rule), C(verdict), C(packet);
      C(finding) is the firewall_info finding's C(ref) about that table and chain (or hook) and C(fix) its first
      fix, both V(null) when none applies or O(diagnose_drops=false); C(text) is the sentence of RV(explanation).
  returned: with action stop and oneshot
  type: list
  elements: dict
  sample:
    - backend: iptables-nft
      family: ipv4
      table: filter
      chain: FORWARD
      hook: FORWARD
      kind: policy
      verdict: drop
      finding: docker-forward-drop@iptables-nft:ip:filter:FORWARD
      fix: iptables -I DOCKER-USER -s 192.168.122.0/24 -j ACCEPT
stats:
  description: Parser statistics plus what the capture dropped (C(capture_lines), C(foreign_lines),
    C(orphan_packets), C(captured_packets), C(flow_dropped_packets), C(returned_packets)).
  returned: with action stop and oneshot
  type: dict
lines:
  description: Raw lines of the capture window (kernel log lines as filtered on the host, or the monitor's output).
  returned: when O(return_lines=true)
  type: list
  elements: str
unparsed:
  description:
    - Trace-looking lines of the capture that could not be read into a packet (a warning names the first
      few). C(count) counts them all (as C(stats.malformed) does); C(lines) holds the first five, each with
      C(line) (its number among the capture lines parsed, from 1), C(text) and C(reason).
    - Lines with odd blanks or glued fields are read (nothing is reported for them); lines that carry
      addresses but no IP ID or protocol become packets marked C(approximate).
  returned: with action stop and oneshot
  type: dict
  sample:
    count: 1
    lines:
      - line: 7
        text: "[  525.720481] TRACE: filter:F"
        reason: "TRACE line: head 'filter:F' is not table:chain:type:rulenum"
rules_snapshot:
  description: C(iptables-save) output per family (V(ipv4), V(ipv6)) taken when the capture stopped.
  returned: with action stop and oneshot
  type: dict
marker_found:
  description: Whether the start marker was still in the kernel log (null for nfnetlink).
  returned: with action stop and oneshot
  type: bool
diagnosis:
  description: Likely causes, most likely first, when nothing was captured.
  returned: when no packet was captured
  type: list
  elements: str
  sample:
    - "no kernel logger is bound to net.netfilter.nf_log.2: TRACE prints nothing (run virtops.virtnet.nf_log)"
probe_result:
  description: The probe command's C(rc), C(stdout), C(stderr) (last 4000 characters), C(host) and C(command).
  returned: with action oneshot and O(probe), with action stop and O(probe_result)
  type: dict
report_path:
  description: The report written on the controller.
  returned: when O(report_path) is set
  type: str
state:
  description: The capture's state on the host (source, tool, start time, monitor PID).
  returned: with action start
  type: dict
'''
