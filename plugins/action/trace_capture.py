# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin for virtops.virtnet.trace_capture (POSIX shell on the host, no Python needed)."""

from __future__ import annotations

import ipaddress
import os
import re
import time

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _capture as cap
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _ruleset as rs
from ansible_collections.virtops.virtnet.plugins.plugin_utils._action_module import ActionModuleBase
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._probe import ProbeError, iptables_commands, probe

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

NAME_RE = re.compile(r'^[A-Za-z0-9_.@+-]{1,64}$')
PORT_RE = re.compile(r'^\d{1,5}(:\d{1,5})?$')


def _trace_parse(module):
    """The parser shared with the nf_trace filter."""
    try:
        from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_parse as tp
    except ImportError as e:
        module.fail_json(msg='the trace parser of this collection cannot be imported: %s' % e)
    return tp


def _annotate(tp, packets, snapshots):
    """Resolve rule numbers to rule text from the snapshots (the parser mutates and returns)."""
    if not packets or not snapshots:
        return packets
    done = tp.annotate(packets, snapshots.get('ipv4') or '', snapshots.get('ipv6'))
    return done if isinstance(done, list) else packets


class ActionModule(ActionModuleBase):
    ARGUMENT_SPEC = dict(
        action=dict(type='str', default='oneshot', choices=['oneshot', 'start', 'stop']),
        capture_id=dict(type='str'),
        source=dict(type='str', default='auto', choices=['auto', 'kernel_log', 'nfnetlink']),
        kernel_log_reader=dict(type='str', default='auto', choices=['auto', 'dmesg', 'journalctl', 'syslog']),
        syslog_file=dict(type='path'),
        monitor=dict(type='str', default='auto', choices=['auto', 'xtables-monitor', 'nft']),
        duration=dict(type='float', default=5.0),
        lifetime=dict(type='int', default=3600),
        probe=dict(type='dict', options=PROBE_SPEC),
        match=dict(type='dict', options=MATCH_SPEC),
        host_filter=dict(type='bool', default=True),
        max_lines=dict(type='int', default=20000),
        return_lines=dict(type='bool', default=False),
        report_path=dict(type='path'),
        report_format=dict(type='str', default='html', choices=['html', 'text']),
        diagnose_drops=dict(type='bool', default=True),
        **rs.BACKEND_SPEC
    )
    REQUIRED_IF = [('action', 'stop', ['capture_id'])]

    # ------------------------------------------------------------------ validation
    def _validate(self, module):
        p = module.params
        if p['capture_id'] is not None:
            try:
                cap.check_capture_id(p['capture_id'])
            except cap.CaptureError as e:
                module.fail_json(msg=str(e))
        if p['action'] != 'oneshot' and p['probe']:
            module.fail_json(msg='probe is only used with action=oneshot (with start/stop, send the traffic between '
                                 'the two tasks)')
        if not 0 < p['duration'] <= 3600:
            module.fail_json(msg='duration must be more than 0 and at most 3600 seconds')
        if not 10 <= p['lifetime'] <= 7 * 86400:
            module.fail_json(msg='lifetime must be between 10 seconds and 7 days')
        if not 1 <= p['max_lines'] <= 1000000:
            module.fail_json(msg='max_lines must be between 1 and 1000000')
        if p['syslog_file'] is not None and not p['syslog_file'].startswith('/'):
            module.fail_json(msg='syslog_file must be an absolute path')
        match = p['match'] or {}
        if match.get('protocol') is not None:
            try:
                rs.check_protocol(match['protocol'], None)
            except rs.RuleError as e:
                module.fail_json(msg='match.%s' % e)
        for key in ('source', 'destination'):
            if match.get(key) is not None:
                try:
                    ipaddress.ip_network(match[key], strict=False)
                except ValueError:
                    module.fail_json(msg='match.%s: %r is not an IP address or network' % (key, match[key]))
        ports = ([match['source_port']] if match.get('source_port') else []) + list(match.get('destination_port') or [])
        for port in ports:
            lo_hi = [int(x) for x in port.split(':')] if PORT_RE.match(port) else None
            if not lo_hi or any(x > 65535 for x in lo_hi) or (len(lo_hi) == 2 and lo_hi[0] > lo_hi[1]):
                module.fail_json(msg='match: bad port or port range %r (N or LOW:HIGH, 0-65535)' % port)
        if match.get('in_interface') is not None and not re.match(r'^[A-Za-z0-9_.@:+-]{1,15}$', match['in_interface']):
            module.fail_json(msg='match.in_interface: %r is not an interface name' % match['in_interface'])
        pr = p['probe']
        if pr:
            if not pr['command']:
                module.fail_json(msg='probe.command must not be empty')
            if pr.get('netns') is not None and not NAME_RE.match(pr['netns']):
                module.fail_json(msg='probe.netns: %r is not a network namespace name' % pr['netns'])
            if not 1 <= pr['timeout'] <= 3600:
                module.fail_json(msg='probe.timeout must be between 1 and 3600 seconds')
            if pr.get('host') not in (None, module.host):
                hostvars = module.task_vars.get('hostvars') or {}
                if pr['host'] not in hostvars:
                    module.fail_json(msg='probe.host: %r is not an inventory host' % pr['host'])
                if pr.get('netns'):
                    module.fail_json(msg='probe.netns can only be used when the probe runs on the traced host')

    # ------------------------------------------------------------------ entry
    def run_module(self, module):
        self._validate(module)
        p = module.params
        facts = probe(module)
        if p['action'] == 'stop':
            return self._stop(module, facts, p['capture_id'])
        plan = self._plan(module, facts)
        if module.check_mode:
            what = 'start capturing from %s (%s)' % (plan['source'], plan['tool'])
            if p['action'] == 'oneshot':
                what += ' for %ss' % p['duration'] + (', running the probe' if p['probe'] else '')
            return dict(changed=p['action'] == 'start', source_used=plan['source'], tool=plan['tool'],
                        msg='check mode: would ' + what, packets=[], stats={})
        if p['action'] == 'start':
            state = self._start(module, plan)
            return dict(changed=True, capture_id=state['id'], source_used=plan['source'], tool=plan['tool'],
                        state=state, msg='capturing from %s (%s); stop with action=stop capture_id=%s'
                        % (plan['source'], plan['tool'], state['id']))
        # oneshot: start, probe, wait, stop - the capture is always stopped
        state = self._start(module, plan)
        t0 = time.time()
        probe_result = None
        try:
            if p['probe']:
                time.sleep(0.2)
                probe_result = self._run_probe(module, p['probe'])
            remaining = p['duration'] - (time.time() - t0)
            time.sleep(max(remaining, 0.3))
        finally:
            result = self._stop(module, facts, state['id'], probe_result=probe_result)
        result['changed'] = False
        if probe_result is not None:
            result['probe_result'] = probe_result
        return result

    # ------------------------------------------------------------------ plan / start
    def _plan(self, module, facts):
        p = module.params
        source = cap.choose_source(facts, p['source'], p['backend'])
        native = None
        if source == 'nfnetlink' and p['monitor'] == 'auto' and 'nft' in (facts.get('tools') or {}):
            # read-only: which tables are native nft ones (libvirt's libvirt_network, firewalld...)
            res = module.run(['nft', 'list', 'tables'], check_rc=False)
            native = cap.native_nft_tables(res.stdout) if res.rc == 0 else None
        try:
            if source == 'nfnetlink':
                tool = cap.choose_monitor(facts, p['monitor'], native)
            else:
                tool = cap.choose_reader(facts, p['kernel_log_reader'])
        except cap.CaptureError as e:
            module.fail_json(msg=str(e))
        tools = facts.get('tools') or {}
        if tool in ('dmesg', 'journalctl', 'xtables-monitor', 'nft') and tool not in tools:
            module.fail_json(msg='%s is not available on %s (source %s)' % (tool, module.host, source))
        if source == 'kernel_log' and tool == 'syslog' and p['syslog_file'] is None:
            syslog = 'auto'
        else:
            syslog = p['syslog_file'] or ''
        return dict(source=source, tool=tool, file=syslog)

    def _start(self, module, plan):
        cid = cap.new_capture_id()
        p = module.params
        if p['action'] == 'oneshot':
            lifetime = int(p['duration']) + (p['probe']['timeout'] if p['probe'] else 0) + 120
        else:
            lifetime = p['lifetime']
        res = module.run_script(cap.START_SCRIPT, args=[cid, plan['source'], plan['tool'], plan['file'] or 'auto',
                                                        lifetime], what='Starting the capture')
        sections = cap.parse_sections(res.stdout)
        for warning in cap.leftover_warnings(sections.get('leftover', [])):
            module.warn(warning)
        state = cap.parse_state(sections.get('state', []))
        if state.get('id') != cid:
            module.fail_json(msg='the capture did not start: unexpected output', stdout=res.stdout, stderr=res.stderr)
        return state

    # ------------------------------------------------------------------ probe
    def _run_probe(self, module, pr):
        argv = [str(w) for w in pr['command']]
        if pr.get('host') in (None, module.host):
            res = module.run_script(cap.PROBE_CMD_SCRIPT, args=[pr['timeout'], pr.get('netns') or ''] + argv,
                                    check_rc=False)
            rc, out, err = res.rc, res.stdout, res.stderr
            where = module.host + ((' netns %s' % pr['netns']) if pr.get('netns') else '')
        else:
            rc, out, err = self._run_on_other_host(module, pr['host'], pr['timeout'], argv)
            where = pr['host']
        if rc != 0:
            module.warn('the probe command %s on %s exited with rc=%s%s' % (
                ' '.join(argv), where, rc, ' (killed by timeout)' if rc == 124 else ''))
        return dict(rc=rc, stdout=out[-4000:], stderr=err[-4000:], host=where, command=argv)

    def _run_on_other_host(self, module, host, timeout, argv):
        """Run ``argv`` on another inventory host through its own connection (like delegate_to)."""
        hostvars = module.task_vars['hostvars'][host]
        variables = dict(hostvars)
        variables.setdefault('inventory_hostname', host)
        try:
            pc = self._play_context.set_task_and_variable_override(
                task=self._task, variables=variables, templar=self._templar)
            conn_type = self._templar.template(variables.get('ansible_connection', pc.connection or 'ssh'))
            if conn_type in ('smart', None):
                conn_type = 'ssh'
            conn = self._shared_loader_obj.connection_loader.get(conn_type, pc, '/dev/null')
            if conn is None:
                raise AnsibleError('connection plugin %r not found' % conn_type)
            opts = {}
            for var in C.config.get_plugin_vars('connection', conn._load_name):
                if var in variables:
                    opts[var] = self._templar.template(variables[var])
            if 'ansible_host' not in opts:
                opts['ansible_host'] = self._templar.template(variables.get('ansible_host', host))
            conn.set_options(var_options=opts)
            words = ['env', 'LC_ALL=C', 'sh', '-c', cap.PROBE_CMD_SCRIPT, 'virtnet', str(timeout), ''] + argv
            cmd = ' '.join(conn._shell.quote(w) for w in words)
            module.commands.append('[%s] %s' % (host, cmd))
            try:
                rc, out, err = conn.exec_command(cmd, sudoable=False)
            finally:
                conn.close()
        except AnsibleError as e:
            module.fail_json(msg='probe on %s failed to run: %s' % (host, to_text(e)))
        return rc, to_text(out), to_text(err)

    # ------------------------------------------------------------------ stop and analysis
    def _stop(self, module, facts, cid, probe_result=None):
        p = module.params
        if module.check_mode:
            return dict(changed=True, capture_id=cid, msg='check mode: would stop capture %s and collect it' % cid,
                        packets=[], stats={})
        res = module.run_script(cap.STOP_SCRIPT, args=[cid, p['max_lines']], what='Stopping the capture')
        sec = cap.parse_sections(res.stdout)
        if 'end' not in sec:
            module.fail_json(msg='the capture output is incomplete', stdout=res.stdout[-2000:], stderr=res.stderr)
        state = cap.parse_state(sec.get('state', []))
        source = state.get('source')
        cut = cap.parse_state(sec.get('cut', []))
        cut = dict(start=cut.get('start') == '1', stop=cut.get('stop') == '1',
                   kept=int(cut['kept']) if cut.get('kept', '').isdigit() else 0, alive=cut.get('alive'))
        raw_lines = sec.get('lines', [])
        ifaces = cap.parse_ifaces(sec.get('ifaces', []))
        addrs = cap.parse_addrs(sec.get('addrs', []))
        for w in cap.loss_warnings(raw_lines + sec.get('loss', [])):
            module.warn(w)
        if cut['kept'] > p['max_lines']:
            module.warn('the capture had %d lines; only the first %d were read (max_lines)' % (cut['kept'], p['max_lines']))
        if source == 'kernel_log' and not cut['start']:
            module.warn('the start marker of capture %s is no longer in the kernel log (%s): the log wrapped '
                        'during the capture; nothing is returned' % (cid, state.get('tool')))
        if source == 'nfnetlink' and cut['alive'] == '0':
            module.warn('%s had exited before the capture was stopped; its output: %s' % (
                state.get('tool'), ' | '.join(x for x in raw_lines if 'TRACE' not in x and 'trace id' not in x)[:500]))
        lines = raw_lines
        foreign = 0
        if source == 'kernel_log' and p['host_filter']:
            lines, foreign = cap.host_line_filter(raw_lines, ifaces, addrs)
        tp = _trace_parse(module)
        parsed = tp.parse(lines, with_unparsed=True)
        packets = list(parsed.get('packets') or [])
        stats = dict(parsed.get('stats') or {})
        unparsed = cap.unparsed_summary(parsed.get('unparsed') or [], stats.get('malformed') or 0)
        if unparsed['count']:
            module.warn(unparsed['warning'])
        captured = len(packets)
        orphans = 0
        if source == 'kernel_log' and p['host_filter'] and foreign:
            packets, orphans = cap.drop_orphans(packets)
        packets, flow_dropped = cap.filter_packets(packets, p['match'] or {},
                                                   (p['match'] or {}).get('both_directions', True))
        stats.update(capture_lines=len(raw_lines), foreign_lines=foreign, orphan_packets=orphans,
                     captured_packets=captured, flow_dropped_packets=flow_dropped, returned_packets=len(packets))
        snapshots = self._snapshot(module, facts, packets)
        packets = _annotate(tp, packets, snapshots)
        cap.add_nat_notes(packets)
        result = dict(changed=True, capture_id=cid, source_used=source, tool=state.get('tool'), packets=packets,
                      stats=stats, rules_snapshot={k: v.splitlines() for k, v in snapshots.items()},
                      marker_found=cut['start'] if source == 'kernel_log' else None,
                      unparsed={'count': unparsed['count'], 'lines': unparsed['lines']})
        if p['return_lines']:
            result['lines'] = raw_lines
        if not packets:
            family = 'ipv6' if any(':' in str((p['match'] or {}).get(k) or '') for k in ('source', 'destination')) \
                else 'ipv4'
            causes = cap.diagnose_empty(source, facts, snapshots, cut=cut, raw_count=len(raw_lines), foreign=foreign,
                                        flow_dropped=flow_dropped, family=family, probe_result=probe_result)
            result['diagnosis'] = causes
            module.warn('nothing was captured on %s; likely cause: %s' % (module.host, causes[0]))
        from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_report as rep
        findings = None
        if p['diagnose_drops'] and rep.needs_diagnosis(packets):
            findings = self._findings(module)
        told = rep.explain(packets, findings)
        result['explanation'] = told['lines']
        result['culprits'] = told['culprits']
        if p['report_path']:
            result['report_path'] = self._write_report(module, packets, stats, snapshots, parsed.get('unparsed'),
                                                       told['lines'])
        return result

    def _findings(self, module):
        """firewall_info's findings (read-only, one round trip), to name the culprit of a drop."""
        from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _firewall as fw
        from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._probe import PROBE_SCRIPT
        res = module.run_script(PROBE_SCRIPT + fw.FIREWALL_SCRIPT, check_rc=False, what='Firewall read')
        try:
            return fw.diagnose(fw.parse(res.stdout), module.host).get('findings') or []
        except (fw.FirewallError, ProbeError) as e:
            module.warn('a packet was dropped, but the firewall diagnosis failed: %s' % e)
            return None

    def _snapshot(self, module, facts, packets):
        p = module.params
        families = set((x.get('family') or 'ipv4') for x in packets) or {'ipv4'}
        match = p['match'] or {}
        if any(':' in str(match.get(k) or '') for k in ('source', 'destination')):
            families.add('ipv6')
        out = {}
        for family in sorted(families):
            try:
                cmds = iptables_commands(facts, family, p['backend'])
            except ProbeError as e:
                module.warn('no %s rules snapshot: %s' % (family, e))
                continue
            res = module.run(cmds['save'], check_rc=False)
            if res.rc != 0:
                module.warn('%s failed (rc=%s): %s' % (' '.join(cmds['save']), res.rc, res.stderr.strip()[:300]))
                continue
            out[family] = res.stdout
        return out

    def _write_report(self, module, packets, stats, snapshots, unparsed=None, explanation=None):
        from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_report as rep
        p = module.params
        path = p['report_path']
        title = 'trace capture on %s' % module.host
        if p['report_format'] == 'html':
            text = rep.render_html(packets, title=title, unparsed=unparsed, unparsed_total=stats.get('malformed'),
                                   explanation=explanation)
        else:
            text = rep.render_text(packets, unparsed=unparsed, unparsed_total=stats.get('malformed'),
                                   explanation=explanation)
        directory = os.path.dirname(path) or '.'
        if not os.path.isdir(directory):
            module.fail_json(msg='report_path: directory %s does not exist on the controller' % directory)
        tmp = '%s.tmp%d' % (path, os.getpid())
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
        os.replace(tmp, path)
        return path
