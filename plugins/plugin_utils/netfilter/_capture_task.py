# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The run of virtops.virtnet.trace_capture (controller side): what its action plugin does.

THIS IS PRIVATE TO virtops.virtnet; the API may change without notice outside the collection.

``CAPTURE_SPEC``, ``CAPTURE_REQUIRED_IF``   the argument spec (the module stub documents it)
``CaptureTask(module).run() -> dict``      validate, probe the host, plan (source and tool), then
    ``start`` / ``stop`` / ``oneshot`` (start, the probe command on the traced host, wait, stop);
    the stop reads the window through the wire (``_wire``), filters it (host and flow), parses it
    (``_trace_parse``: packets, hops, the NAT), takes a rules snapshot to name the rules, explains
    (``_trace_report``: lines, culprits, with ``firewall_info``'s findings when a packet was dropped)
    and writes the report.

The probe runs on the traced host only: a probe on another host is the playbook's own task with
``delegate_to`` between ``action: start`` and ``action: stop`` (the trace role does that), whose
registered result ``action: stop`` takes as ``probe_result``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _capture as cap
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _firewall as fw
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _ruleset as rs
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_parse as tp
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_report as rep
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _wire as wire
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._probe import (
    PROBE_SCRIPT, ProbeError, iptables_commands, probe)

__all__ = ['CAPTURE_SPEC', 'CAPTURE_REQUIRED_IF', 'CaptureTask']

# The flow filter takes the rule matches that can be checked on a traced packet.
MATCH_SPEC = dict(
    [(key, rs.MATCH_SPEC[key]) for key in
     ('protocol', 'source', 'destination', 'source_port', 'destination_port', 'in_interface')],
    both_directions=dict(type='bool', default=True),
)

PROBE_SPEC = dict(
    command=dict(type='list', elements='str', required=True),
    host=dict(type='str'),
    netns=dict(type='str'),
    timeout=dict(type='int', default=10),
)

CAPTURE_SPEC = dict(
    action=dict(type='str', default='oneshot', choices=['oneshot', 'start', 'stop']),
    capture_id=dict(type='str'),
    source=dict(type='str', default='auto', choices=['auto', 'kernel_log', 'nfnetlink']),
    kernel_log_reader=dict(type='str', default='auto', choices=['auto', 'dmesg', 'journalctl', 'syslog']),
    syslog_file=dict(type='path'),
    monitor=dict(type='str', default='auto', choices=['auto', 'xtables-monitor', 'nft']),
    duration=dict(type='float', default=5.0),
    lifetime=dict(type='int', default=3600),
    probe=dict(type='dict', options=PROBE_SPEC),
    probe_result=dict(type='dict'),
    match=dict(type='dict', options=MATCH_SPEC),
    host_filter=dict(type='bool', default=True),
    max_lines=dict(type='int', default=20000),
    return_lines=dict(type='bool', default=False),
    report_path=dict(type='path'),
    report_format=dict(type='str', default='html', choices=['html', 'text']),
    diagnose_drops=dict(type='bool', default=True),
    **rs.BACKEND_SPEC
)
CAPTURE_REQUIRED_IF = [('action', 'stop', ['capture_id'])]

NAME_RE = re.compile(r'^[A-Za-z0-9_.@+-]{1,64}$')
PORT_RE = re.compile(r'^\d{1,5}(:\d{1,5})?$')
OUTPUT_KEPT = 4000      # characters of the probe's stdout and stderr returned


def probe_record(rc, stdout, stderr, host, command):
    """What trace_capture returns as ``probe_result`` (and warns when ``rc`` is not 0)."""
    return dict(rc=rc, stdout=(stdout or '')[-OUTPUT_KEPT:], stderr=(stderr or '')[-OUTPUT_KEPT:], host=host,
                command=[str(w) for w in command or []])


def probe_warning(probe_result):
    rc = probe_result.get('rc')
    if rc in (0, None):
        return None
    return 'the probe command %s on %s exited with rc=%s%s' % (
        ' '.join(probe_result.get('command') or []), probe_result.get('host'), rc,
        ' (killed by timeout)' if rc == 124 else '')


class CaptureTask:
    """The trace_capture run for one host (``module``: the action plugin's ``HostModule``)."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.match = module.params['match'] or {}

    # ------------------------------------------------------------------ validation
    def validate(self):
        m, p, match = self.module, self.params, self.match
        if p['capture_id'] is not None:
            try:
                cap.check_capture_id(p['capture_id'])
            except cap.CaptureError as e:
                m.fail_json(msg=str(e))
        if p['action'] != 'oneshot' and p['probe']:
            m.fail_json(msg='probe is only used with action=oneshot (with start/stop, send the traffic between '
                            'the two tasks)')
        if p['probe_result'] is not None and p['action'] != 'stop':
            m.fail_json(msg='probe_result is only used with action=stop (the registered result of the probe task '
                            'run between action=start and action=stop)')
        if not 0 < p['duration'] <= 3600:
            m.fail_json(msg='duration must be more than 0 and at most 3600 seconds')
        if not 10 <= p['lifetime'] <= 7 * 86400:
            m.fail_json(msg='lifetime must be between 10 seconds and 7 days')
        if not 1 <= p['max_lines'] <= 1000000:
            m.fail_json(msg='max_lines must be between 1 and 1000000')
        if p['syslog_file'] is not None and not p['syslog_file'].startswith('/'):
            m.fail_json(msg='syslog_file must be an absolute path')
        if match.get('protocol') is not None:
            try:
                rs.check_protocol(match['protocol'], None)
            except rs.RuleError as e:
                m.fail_json(msg='match.%s' % e)
        for key in ('source', 'destination'):
            if match.get(key) is not None:
                try:
                    ipaddress.ip_network(match[key], strict=False)
                except ValueError:
                    m.fail_json(msg='match.%s: %r is not an IP address or network' % (key, match[key]))
        ports = ([match['source_port']] if match.get('source_port') else []) + list(match.get('destination_port') or [])
        for port in ports:
            lo_hi = [int(x) for x in port.split(':')] if PORT_RE.match(port) else None
            if not lo_hi or any(x > 65535 for x in lo_hi) or (len(lo_hi) == 2 and lo_hi[0] > lo_hi[1]):
                m.fail_json(msg='match: bad port or port range %r (N or LOW:HIGH, 0-65535)' % port)
        if match.get('in_interface') is not None and not rs.IFACE_RE.match(match['in_interface']):
            m.fail_json(msg='match.in_interface: %r is not an interface name' % match['in_interface'])
        pr = p['probe']
        if pr:
            if not pr['command']:
                m.fail_json(msg='probe.command must not be empty')
            if pr.get('netns') is not None and not NAME_RE.match(pr['netns']):
                m.fail_json(msg='probe.netns: %r is not a network namespace name' % pr['netns'])
            if not 1 <= pr['timeout'] <= 3600:
                m.fail_json(msg='probe.timeout must be between 1 and 3600 seconds')
            if pr.get('host') not in (None, m.host):
                m.fail_json(msg='probe.host: %r is not the traced host %r; trace_capture runs the probe on the traced '
                                'host only. To send the traffic from another host, use three tasks: action=start, the '
                                'probe command as its own task with delegate_to: %s, then action=stop with the '
                                'start\'s capture_id (and probe_result: the probe task\'s registered result); the '
                                'trace role does this for trace_probe.host' % (pr['host'], m.host, pr['host']))

    # ------------------------------------------------------------------ entry
    def run(self):
        self.validate()
        m, p = self.module, self.params
        facts = probe(m)
        if p['action'] == 'stop':
            return self.stop(facts, p['capture_id'], probe_result=self._given_probe_result())
        plan = self.plan(facts)
        if m.check_mode:
            what = 'start capturing from %s (%s)' % (plan['source'], plan['tool'])
            if p['action'] == 'oneshot':
                what += ' for %ss' % p['duration'] + (', running the probe' if p['probe'] else '')
            return dict(changed=p['action'] == 'start', source_used=plan['source'], tool=plan['tool'],
                        msg='check mode: would ' + what, packets=[], stats={})
        if p['action'] == 'start':
            state = self.start(plan)
            return dict(changed=True, capture_id=state['id'], source_used=plan['source'], tool=plan['tool'],
                        state=state, msg='capturing from %s (%s); stop with action=stop capture_id=%s'
                        % (plan['source'], plan['tool'], state['id']))
        # oneshot: start, probe, wait, stop - the capture is always stopped
        state = self.start(plan)
        t0 = time.time()
        probe_result = None
        try:
            if p['probe']:
                time.sleep(0.2)
                probe_result = self.run_probe(p['probe'])
            remaining = p['duration'] - (time.time() - t0)
            time.sleep(max(remaining, 0.3))
        finally:
            result = self.stop(facts, state['id'], probe_result=probe_result)
        result['changed'] = False
        return result

    # ------------------------------------------------------------------ plan / start / probe
    def plan(self, facts):
        m, p = self.module, self.params
        source = cap.choose_source(facts, p['source'], p['backend'])
        native = None
        if source == 'nfnetlink' and p['monitor'] == 'auto' and 'nft' in (facts.get('tools') or {}):
            # read-only: which tables are native nft ones (libvirt's libvirt_network, firewalld...)
            res = m.run(['nft', 'list', 'tables'], check_rc=False)
            native = cap.native_nft_tables(res.stdout) if res.rc == 0 else None
        try:
            if source == 'nfnetlink':
                tool = cap.choose_monitor(facts, p['monitor'], native)
            else:
                tool = cap.choose_reader(facts, p['kernel_log_reader'])
        except cap.CaptureError as e:
            m.fail_json(msg=str(e))
        if tool in ('dmesg', 'journalctl', 'xtables-monitor', 'nft') and tool not in (facts.get('tools') or {}):
            m.fail_json(msg='%s is not available on %s (source %s)' % (tool, m.host, source))
        if source == 'kernel_log' and tool == 'syslog' and p['syslog_file'] is None:
            syslog = 'auto'
        else:
            syslog = p['syslog_file'] or ''
        return dict(source=source, tool=tool, file=syslog)

    def start(self, plan):
        m, p = self.module, self.params
        cid = cap.new_capture_id()
        if p['action'] == 'oneshot':
            lifetime = int(p['duration']) + (p['probe']['timeout'] if p['probe'] else 0) + 120
        else:
            lifetime = p['lifetime']
        args = [cid, plan['source'], plan['tool'], plan['file'] or 'auto', lifetime]
        res, sections = wire.run(m, cap.START_SCRIPT, args=args, what='Starting the capture')
        for warning in cap.leftover_warnings(sections.get('leftover', [])):
            m.warn(warning)
        state = wire.parse_kv(sections.get('state', []))
        if state.get('id') != cid:
            m.fail_json(msg='the capture did not start: unexpected output', stdout=res.stdout, stderr=res.stderr)
        return state

    def run_probe(self, pr):
        """The probe command on the traced host (in ``netns`` when given), killed after its timeout."""
        m = self.module
        argv = [str(w) for w in pr['command']]
        res = m.run_script(cap.PROBE_CMD_SCRIPT, args=[pr['timeout'], pr.get('netns') or ''] + argv, check_rc=False)
        where = m.host + ((' netns %s' % pr['netns']) if pr.get('netns') else '')
        out = probe_record(res.rc, res.stdout, res.stderr, where, argv)
        warning = probe_warning(out)
        if warning:
            m.warn(warning)
        return out

    def _given_probe_result(self):
        """``probe_result`` (a registered command result) -> the record a oneshot probe returns.  Never fails:
        the stop must run whatever happened to the probe task."""
        given = self.params['probe_result']
        if given is None:
            return None
        rc = given.get('rc')
        if not isinstance(rc, int) or isinstance(rc, bool):
            self.module.warn('probe_result has no rc: the probe task did not run its command (%s)'
                             % (given.get('msg') or 'no message'))
            rc = None
        command = given.get('command') or given.get('cmd') or []
        out = probe_record(rc, given.get('stdout'), given.get('stderr'), given.get('host') or '?',
                           command if isinstance(command, list) else str(command).split())
        warning = probe_warning(out)
        if warning:
            self.module.warn(warning)
        return out

    # ------------------------------------------------------------------ stop and analysis
    def stop(self, facts, cid, probe_result=None):
        m, p, match = self.module, self.params, self.match
        if m.check_mode:
            return dict(changed=True, capture_id=cid, msg='check mode: would stop capture %s and collect it' % cid,
                        packets=[], stats={})
        res, sec = wire.run(m, cap.STOP_SCRIPT, args=[cid, p['max_lines']], what='Stopping the capture')
        if not sec.ended:
            m.fail_json(msg='the capture output is incomplete', stdout=res.stdout[-2000:], stderr=res.stderr)
        state = wire.parse_kv(sec.get('state', []))
        source = state.get('source')
        cut = wire.parse_kv(sec.get('cut', []))
        cut = dict(start=cut.get('start') == '1', stop=cut.get('stop') == '1',
                   kept=int(cut['kept']) if cut.get('kept', '').isdigit() else 0, alive=cut.get('alive'))
        raw_lines = sec.get('lines', [])
        for w in cap.loss_warnings(raw_lines + sec.get('loss', [])):
            m.warn(w)
        if cut['kept'] > p['max_lines']:
            m.warn('the capture had %d lines; only the first %d were read (max_lines)' % (cut['kept'], p['max_lines']))
        if source == 'kernel_log' and not cut['start']:
            m.warn('the start marker of capture %s is no longer in the kernel log (%s): the log wrapped '
                   'during the capture; nothing is returned' % (cid, state.get('tool')))
        if source == 'nfnetlink' and cut['alive'] == '0':
            m.warn('%s had exited before the capture was stopped; its output: %s' % (
                state.get('tool'), ' | '.join(x for x in raw_lines if 'TRACE' not in x and 'trace id' not in x)[:500]))
        lines, foreign = raw_lines, 0
        if source == 'kernel_log' and p['host_filter']:
            lines, foreign = cap.host_line_filter(raw_lines, cap.parse_ifaces(sec.get('ifaces', [])),
                                                  cap.parse_addrs(sec.get('addrs', [])))
        parsed = tp.parse(lines, with_unparsed=True)
        packets = list(parsed.get('packets') or [])
        stats = dict(parsed.get('stats') or {})
        unparsed = cap.unparsed_summary(parsed.get('unparsed') or [], stats.get('malformed') or 0)
        if unparsed['count']:
            m.warn(unparsed['warning'])
        captured, orphans = len(packets), 0
        if source == 'kernel_log' and p['host_filter'] and foreign:
            packets, orphans = cap.drop_orphans(packets)
        packets, flow_dropped = cap.filter_packets(packets, match, match.get('both_directions', True))
        stats.update(capture_lines=len(raw_lines), foreign_lines=foreign, orphan_packets=orphans,
                     captured_packets=captured, flow_dropped_packets=flow_dropped, returned_packets=len(packets))
        snapshots = self.snapshot(facts, packets)
        if packets and snapshots:
            # rule numbers -> rule text; the parser then adds the NAT the rules imply (packet['nat'])
            tp.annotate(packets, snapshots.get('ipv4') or '', snapshots.get('ipv6'))
        result = dict(changed=True, capture_id=cid, source_used=source, tool=state.get('tool'), packets=packets,
                      stats=stats, rules_snapshot={k: v.splitlines() for k, v in snapshots.items()},
                      marker_found=cut['start'] if source == 'kernel_log' else None,
                      unparsed={'count': unparsed['count'], 'lines': unparsed['lines']})
        if p['return_lines']:
            result['lines'] = raw_lines
        if probe_result is not None:
            result['probe_result'] = probe_result
        if not packets:
            causes = cap.diagnose_empty(source, facts, snapshots, cut=cut, raw_count=len(raw_lines), foreign=foreign,
                                        flow_dropped=flow_dropped, family=self._family(), probe_result=probe_result)
            result['diagnosis'] = causes
            m.warn('nothing was captured on %s; likely cause: %s' % (m.host, causes[0]))
        findings = self.findings() if p['diagnose_drops'] and rep.needs_diagnosis(packets) else None
        told = rep.explain(packets, findings)
        result['explanation'] = told['lines']
        result['culprits'] = told['culprits']
        if p['report_path']:
            result['report_path'] = self.write_report(packets, stats, parsed.get('unparsed'), told['lines'])
        return result

    def _family(self):
        """ipv6 when the flow filter names an IPv6 address, else ipv4."""
        return 'ipv6' if any(':' in str(self.match.get(k) or '') for k in ('source', 'destination')) else 'ipv4'

    def findings(self):
        """firewall_info's findings (read-only, one round trip), to name the culprit of a drop."""
        m = self.module
        res = m.run_script(PROBE_SCRIPT + fw.FIREWALL_SCRIPT, check_rc=False, what='Firewall read')
        try:
            return fw.diagnose(fw.parse(res.stdout), m.host).get('findings') or []
        except (fw.FirewallError, ProbeError) as e:
            m.warn('a packet was dropped, but the firewall diagnosis failed: %s' % e)
            return None

    def snapshot(self, facts, packets):
        """{family: iptables-save text} for the families of ``packets`` (and of the flow filter)."""
        m, p = self.module, self.params
        families = set((x.get('family') or 'ipv4') for x in packets) or {'ipv4'}
        if self._family() == 'ipv6':
            families.add('ipv6')
        out = {}
        for family in sorted(families):
            try:
                cmds = iptables_commands(facts, family, p['backend'])
            except ProbeError as e:
                m.warn('no %s rules snapshot: %s' % (family, e))
                continue
            res = m.run(cmds['save'], check_rc=False)
            if res.rc != 0:
                m.warn('%s failed (rc=%s): %s' % (' '.join(cmds['save']), res.rc, res.stderr.strip()[:300]))
                continue
            out[family] = res.stdout
        return out

    def write_report(self, packets, stats, unparsed, explanation):
        """The report file on the controller (written whole, then renamed into place)."""
        m, p = self.module, self.params
        path = p['report_path']
        kwargs = dict(unparsed=unparsed, unparsed_total=stats.get('malformed'), explanation=explanation)
        if p['report_format'] == 'html':
            text = rep.render_html(packets, title='trace capture on %s' % m.host, **kwargs)
        else:
            text = rep.render_text(packets, **kwargs)
        directory = os.path.dirname(path) or '.'
        if not os.path.isdir(directory):
            m.fail_json(msg='report_path: directory %s does not exist on the controller' % directory)
        tmp = '%s.tmp%d' % (path, os.getpid())
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
        os.replace(tmp, path)
        return path
