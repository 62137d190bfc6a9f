# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Converge one libvirt network, and describe networks (PRIVATE: not a public API).

``NetworkManager(module, conn).run()`` returns the module's result dict or raises ``ManagerError``
(the contract of ``_connection.py``; the module reads only ``params``, ``check_mode``, ``_diff`` and
``run_command`` of ``module``). It does, in this order and touching nothing before step 4:

1. read: the persistent definition, the live state, the other networks, host links and routes;
2. check: the declared model on its own (``_network.validate``) and against the host
   (bridge name taken, subnet overlap with another running network or a host route, unknown
   forward device);
3. plan (``_planner.plan_definition``): each difference as live-update / redefine / restart,
   plus start / stop / autostart; refuse when a running network needs a restart and
   ``restart`` is ``never``; check mode returns here;
4. act, then re-read and return the model, XML, changes, diff.

``describe_network(conn, net, ...)`` is what ``network_info`` returns for one network.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import traceback

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._connection import (
    LibvirtError, ManagerError, VIR_CONNECT_LIST_ALL, VIR_NETWORK_XML_INACTIVE,
    VIR_NETWORK_UPDATE_AFFECT_CONFIG, VIR_NETWORK_UPDATE_AFFECT_LIVE,
    connection_lost_msg, is_connection_lost, libvirt_error_msg)
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._network import (
    ModelError, from_xml, to_xml, model_from_params, validate, merge_generated, public_model,
    subnets, MANAGED_BRIDGE_MODES)
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._planner import plan_definition
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._xml import cidr, network_of, overlaps
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._host import (
    HostView, iptables_rules_for, libvirt_firewall_backend, nft_rules_for, nft_tables, relevant_routes, route_range)


def lookup(conn, name):
    for net in conn.listAllNetworks(VIR_CONNECT_LIST_ALL):
        if net.name() == name:
            return net
    return None


def inactive_xml(net):
    return net.XMLDesc(VIR_NETWORK_XML_INACTIVE)


def model_bridge(model):
    return (model.get('bridge') or {}).get('name')


class NetworkManager(object):
    def __init__(self, module, conn, host=None):
        self.module = module
        self.conn = conn
        self.host = host or HostView()
        self.params = module.params
        self.check_mode = module.check_mode
        self.result = {'changed': False, 'changes': []}
        self.warnings = []
        self.applied = []   # what was really done on the host, in order (a failed run reports it)
        self.doing = None   # the libvirt change in flight (its outcome is unknown if libvirtd dies meanwhile)

    def _did(self, what):
        self.applied.append(what)
        self.doing = None

    # ---------------------------------------------------------------------------------------
    def fail(self, msg, **extra):
        raise ManagerError(msg, **extra)

    def _failed_result(self):
        """A failed run says changed only if something was really done, and lists what."""
        res = dict(self.result)
        res['changed'] = bool(self.applied)
        res['applied'] = list(self.applied)
        if self.applied:
            res.pop('diff', None)
        return res

    def run(self):
        try:
            self._run()
        except ManagerError as err:
            res = self._failed_result()
            res.update(err.result)
            res['changed'] = bool(self.applied)
            raise ManagerError(err.msg, **res)
        except ModelError as err:
            raise ManagerError(str(err), **self._failed_result())
        except LibvirtError as err:
            res = self._failed_result()
            if is_connection_lost(err):
                res['changed'] = bool(self.applied or self.doing)
                res['interrupted'] = self.doing
                raise ManagerError(connection_lost_msg(
                    err, self.doing or 'reading the state of the network', self.applied,
                    'it starts from what libvirt has then (the old or the new definition, active or not), '
                    'converges, and puts the running guests\' ports back on the bridge.'), **res)
            msg = 'libvirt error: %s' % libvirt_error_msg(err)
            if self.applied:
                msg += ' (done before the error: %s)' % '; '.join(self.applied)
            else:
                msg += ' (nothing was changed)'
            raise ManagerError(msg, exception=traceback.format_exc(), **res)
        self.result['warnings'] = self.warnings
        return self.result

    def _libvirt_version(self):
        try:
            return self.conn.getLibVersion()
        except (AttributeError, LibvirtError):
            return None

    def _change(self, what, how):
        self.result['changes'].append({'what': what, 'how': how})
        self.result['changed'] = True

    # ---------------------------------------------------------------------------------------
    def _run(self):
        p = self.params
        name = p.get('name')
        if p['state'] == 'absent':
            if not name and p.get('xml'):
                name = from_xml(p['xml']).get('name')
            return self._absent(name)
        desired = model_from_params(p)
        validate(desired)
        name = desired['name']
        net = lookup(self.conn, name)
        current = None
        before_xml = ''
        active = False
        persistent = True
        if net is not None:
            before_xml = inactive_xml(net)
            current = from_xml(before_xml)
            active = bool(net.isActive())
            persistent = bool(net.isPersistent())
        will_be_active = p['active'] if p.get('active') is not None else True

        self._check_host(desired, current, net, will_be_active)

        plan = plan_definition(current, desired, active, will_be_active, self._libvirt_version())
        if net is not None and not persistent:
            plan.redefine = True
            plan.add('persistent definition', 'redefine')
        if plan.restart_reasons and p['restart'] != 'if_needed':
            self.fail("network %s is active and these changes need a restart of the network "
                      "(guests lose connectivity briefly; their taps are put back on the bridge): %s. "
                      "Set restart=if_needed to allow it, or active=false to stop it. Nothing was changed."
                      % (name, ', '.join(plan.restart_reasons)),
                      needs_restart=plan.restart_reasons, changes=plan.changes, changed=False)

        new_model = merge_generated(desired, current)
        after_xml = to_xml(new_model) if plan.changed else before_xml
        for ch in plan.changes:
            self._change(ch['what'], ch['how'])
        if plan.live_ops:
            self.result['live_updates'] = [op.as_dict() for op in plan.live_ops]
        restart = bool(plan.restart_reasons)
        stop = active and not will_be_active
        orphans = []
        if will_be_active and not active:
            self._change('network %s' % name, 'start')
            # running guests whose taps were left off any bridge (the network stopped under them, e.g.
            # libvirtd killed during a restart): put back on the bridge once the network is started
            links = set(self.host.host_links())
            orphans = sorted(p for p in self.host.running_guest_ports(self.conn, name, None) if p in links)
            if orphans:
                self._change('ports of running guests: %s' % ', '.join(orphans), 'reattach')
        if stop:
            self._change('network %s' % name, 'stop')
        autostart = p.get('autostart')
        cur_autostart = bool(net.autostart()) if net is not None else False
        if autostart is not None and autostart != cur_autostart:
            self._change('network %s autostart=%s' % (name, 'yes' if autostart else 'no'), 'autostart')

        if self.module._diff:
            self.result['diff'] = {'before': before_xml, 'after': after_xml,
                                   'before_header': 'network %s (persistent XML)' % name,
                                   'after_header': 'network %s (persistent XML)' % name}
        if self.check_mode:
            self.result['network'] = public_model(from_xml(after_xml) if after_xml else new_model)
            self.result['xml'] = after_xml
            self.result['active'] = will_be_active
            self.result['autostart'] = cur_autostart if autostart is None else autostart
            return

        # ---- act ---------------------------------------------------------------------------
        if restart:
            net = self._restart(net, after_xml, name, before_xml)
        else:
            for op in plan.live_ops:
                try:
                    self.doing = 'live update: %s' % op.what
                    net.update(op.command, op.section, op.parent_index, op.xml,
                               VIR_NETWORK_UPDATE_AFFECT_LIVE | VIR_NETWORK_UPDATE_AFFECT_CONFIG)
                except LibvirtError as err:
                    if is_connection_lost(err):
                        raise
                    self.fail('live update failed (%s): %s' % (op.what, libvirt_error_msg(err)),
                              failed_update=op.as_dict())
                self._did('live update: %s' % op.what)
            created = False
            if plan.redefine:
                created = net is None
                self.doing = 'defining network %s' % name
                net = self.conn.networkDefineXML(after_xml)
                self._did('defined network %s' % name if created else 'redefined network %s' % name)
            if stop:
                self.doing = 'stopping network %s' % name
                net.destroy()
                self._did('stopped network %s' % name)
            elif will_be_active and not active:
                self._start(net, name, created)
                if orphans:
                    self._reattach_orphans(net, orphans)
        if autostart is not None and autostart != cur_autostart:
            self.doing = 'setting autostart of %s' % name
            net.setAutostart(1 if autostart else 0)
            self._did('autostart %s' % ('on' if autostart else 'off'))
        self._finish(net)

    def _start(self, net, name, created):
        """Start; a network this run defined and libvirt cannot start is undefined again (nothing left)."""
        self.doing = 'starting network %s' % name
        try:
            net.create()
        except LibvirtError as err:
            if not created or is_connection_lost(err):
                raise
            try:
                net.undefine()
            except LibvirtError as err2:
                self.fail('libvirt could not start new network %s (%s) and the definition could not be removed '
                          'either (%s): remove it with virsh net-undefine %s'
                          % (name, libvirt_error_msg(err), libvirt_error_msg(err2), name))
            self.applied.pop()
            self.fail('libvirt could not start new network %s: %s. Its definition was removed again: nothing was '
                      'changed' % (name, libvirt_error_msg(err)))
        self._did('started network %s' % name)

    def _reattach_orphans(self, net, ports):
        bridge = model_bridge(from_xml(net.XMLDesc(0)))
        on_bridge = set(self.host.bridge_ports(bridge))
        done = [port for port in ports if port not in on_bridge and bridge and self._put_back(port, bridge)]
        if done:
            self._did('put %s back on bridge %s' % (', '.join(done), bridge))
        self.result['reattached'] = done

    def _finish(self, net):
        xml = inactive_xml(net)
        self.result['xml'] = xml
        self.result['network'] = public_model(from_xml(xml))
        self.result['active'] = bool(net.isActive())
        self.result['autostart'] = bool(net.autostart())

    # ---------------------------------------------------------------------------------------
    def _restart(self, net, new_xml, name, old_xml):
        """destroy + define + create, then put every port the bridge had back on it.  If the new
        definition cannot start, the old one is defined and started again (and its ports put back)."""
        live = from_xml(net.XMLDesc(0))
        old_bridge = model_bridge(live)
        guests = self.host.running_guest_ports(self.conn, name, old_bridge)
        before = self.host.bridge_ports(old_bridge)
        self.doing = 'stopping network %s for the restart' % name
        net.destroy()
        self._did('stopped network %s for the restart' % name)
        self.doing = 'redefining network %s' % name
        net = self.conn.networkDefineXML(new_xml)
        self._did('redefined network %s' % name)
        self.doing = 'starting network %s with the new definition' % name
        try:
            net.create()
        except LibvirtError as err:
            if is_connection_lost(err):
                raise
            reason = libvirt_error_msg(err)
            net = self.conn.networkDefineXML(old_xml)
            self._did('restored the previous definition of %s' % name)
            net.create()
            self._did('started %s again with its previous definition' % name)
            self._reattach(net, before, guests, old_bridge)
            self.fail('libvirt could not start network %s with the new definition: %s. The previous definition '
                      'was restored and started again, its ports put back: %s'
                      % (name, reason, ', '.join(self.result['restart']['reattached']) or 'none'))
        self._did('started network %s' % name)
        return self._reattach(net, before, guests, old_bridge)

    def _put_back(self, port, bridge):
        """Enslave a guest's tap to the bridge again and bring it up; warn and say False when ip refuses."""
        rc, _out, err = self.module.run_command(['ip', 'link', 'set', 'dev', port, 'master', bridge])
        if rc != 0:
            self.warnings.append('could not put %s back on bridge %s: %s' % (port, bridge, err.strip()))
            return False
        self.module.run_command(['ip', 'link', 'set', 'dev', port, 'up'])
        return True

    def _reattach(self, net, before, guests, old_bridge=None):
        new_bridge = model_bridge(from_xml(net.XMLDesc(0)))
        after_start = self.host.bridge_ports(new_bridge)
        links = set(self.host.host_links())
        reattached = [port for port in sorted(set(before) | set(guests))
                      if port not in after_start and port in links and new_bridge and self._put_back(port, new_bridge)]
        final = self.host.bridge_ports(new_bridge)
        lost = sorted(p for p in before if p not in final and p in links)
        if lost:
            self.warnings.append('ports not on bridge %s after the restart: %s' % (new_bridge, ', '.join(lost)))
        self.result['restart'] = {
            'bridge_before': old_bridge, 'bridge_after': new_bridge,
            'ports_before': before, 'ports_after_start': after_start, 'ports_after': final,
            'reattached': reattached, 'lost': lost,
            'guests': dict((k, v) for k, v in guests.items()),
        }
        return net

    # ---------------------------------------------------------------------------------------
    def _absent(self, name):
        if not name:
            self.fail('state=absent needs name (or xml with <name>)')
        net = lookup(self.conn, name)
        if net is None:
            self.result['network'] = None
            return
        before = inactive_xml(net)
        if self.module._diff:
            self.result['diff'] = {'before': before, 'after': ''}
        if net.isActive():
            self._change('network %s' % name, 'stop')
        if net.isPersistent():
            self._change('network %s' % name, 'undefine')
        if self.check_mode:
            return
        if net.isActive():
            net.destroy()
        try:
            if net.isPersistent():
                net.undefine()
        except LibvirtError:
            pass  # a transient network vanishes with destroy
        self.result['network'] = None

    # ---------------------------------------------------------------------------------------
    def _check_host(self, desired, current, net, will_be_active):
        """Conflicts with the host and the other networks: raise before anything is touched."""
        name = desired['name']
        mode = desired.get('forward') or 'nat'
        others = []
        for other in self.conn.listAllNetworks(VIR_CONNECT_LIST_ALL):
            if other.name() == name:
                continue
            try:
                oxml = other.XMLDesc(0) if other.isActive() else inactive_xml(other)
                others.append((other.name(), bool(other.isActive()), from_xml(oxml)))
            except LibvirtError:  # a network vanishing meanwhile is not our conflict
                pass
        bridge = model_bridge(desired)
        cur_bridge = model_bridge(current) if current else None
        live_bridge = None
        if net is not None and net.isActive():
            live_bridge = model_bridge(from_xml(net.XMLDesc(0)))
        links = self.host.host_links()
        if bridge and mode in MANAGED_BRIDGE_MODES:
            for oname, _act, omodel in others:
                if model_bridge(omodel) == bridge and (omodel.get('forward') or 'nat') in MANAGED_BRIDGE_MODES:
                    self.fail("bridge name %s is already used by network %s. Nothing was changed." % (bridge, oname),
                              conflict='bridge_in_use')
            if will_be_active and bridge in links and bridge not in (cur_bridge, live_bridge):
                self.fail("bridge name %s: a device with that name already exists on the host "
                          "(not created by this network). Nothing was changed." % bridge,
                          conflict='bridge_exists')
        if mode == 'bridge' and bridge and will_be_active and bridge not in links:
            self.fail("forward mode bridge: host bridge %s does not exist (host links: %s). "
                      "Nothing was changed." % (bridge, ', '.join(links)), conflict='unknown_device')
        devs = [d for d in [desired.get('forward_dev')] + list(desired.get('forward_interfaces') or []) if d]
        if desired.get('forward_pf'):
            devs.append(desired['forward_pf'])
        missing = sorted(set(d for d in devs if d not in links))
        if missing:
            msg = ("unknown forward device %s: not found in /sys/class/net on the host (host links: %s)"
                   % (', '.join(missing), ', '.join(links)))
            if will_be_active:
                self.fail(msg + '. Nothing was changed.', conflict='unknown_device')
            self.warnings.append(msg + '; defined anyway because active=false')
        mine = subnets(desired)
        for fam, first, last, text in mine:
            for oname, oactive, omodel in others:
                for ofam, ofirst, olast, otext in subnets(omodel):
                    if overlaps((fam, first, last), (ofam, ofirst, olast)):
                        msg = "subnet %s overlaps %s of network %s" % (text, otext, oname)
                        if will_be_active and oactive:
                            self.fail(msg + ' (which is active). Nothing was changed.', conflict='subnet_overlap')
                        self.warnings.append(msg + '; both cannot be active at the same time')
            if not will_be_active:
                continue
            other_bridges = set(model_bridge(o[2]) for o in others if o[1])
            for rt in relevant_routes(self.host.host_routes(), own_bridge=live_bridge):
                if rt['dev'] in other_bridges:
                    continue  # reported above with the network's name
                if overlaps((fam, first, last), route_range(rt)):
                    self.fail("subnet %s overlaps the host route %s dev %s. Nothing was changed."
                              % (text, rt['cidr'], rt['dev']), conflict='route_overlap')


# ============================================================================================
# network_info
def describe_network(conn, net, host, firewall=True, firewall_text=None):
    """Everything network_info reports about one network."""
    name = net.name()
    active = bool(net.isActive())
    persistent = bool(net.isPersistent())
    xml = inactive_xml(net) if persistent else net.XMLDesc(0)
    model = public_model(from_xml(xml))
    live = from_xml(net.XMLDesc(0)) if active else None
    bridge = model_bridge(live or model)
    info = {
        'name': name,
        'uuid': model.get('uuid'),
        'model': model,
        'active': active,
        'persistent': persistent,
        'autostart': bool(net.autostart()),
        'xml': xml,
        'bridge': bridge,
        'ports': [],
        'leases': [],
        'firewall': {'iptables': [], 'nftables': [], 'backend': None, 'backend_source': None},
    }
    if active:
        guests = host.running_guest_ports(conn, name, bridge)
        for port in host.bridge_ports(bridge):
            entry = {'port': port, 'mac': host.link_mac(port), 'domain': None, 'guest_mac': None}
            if port in guests:
                entry['domain'] = guests[port]['domain']
                entry['guest_mac'] = guests[port]['mac']
            info['ports'].append(entry)
        try:
            for lease in net.DHCPLeases() or []:
                info['leases'].append(dict((k, lease.get(k)) for k in (
                    'mac', 'ipaddr', 'prefix', 'hostname', 'clientid', 'iaid', 'expirytime', 'type', 'iface')))
        except LibvirtError:
            pass
    if active and firewall and firewall_text:
        cidrs = [s[3] for s in subnets(live or model)]
        cidrs = [_network_cidr(c) for c in cidrs]
        ipt = firewall_text.get('iptables') or []
        if not isinstance(ipt, list):  # one text, as older callers give it
            ipt = [('ipv4', ipt)]
        for family, text in ipt:
            info['firewall']['iptables'] += iptables_rules_for(text, bridge, cidrs, family)
        nft = firewall_text.get('nftables', '')
        info['firewall']['nftables'] = nft_rules_for(nft, bridge, cidrs) if nft else []
        fw = info['firewall']
        if firewall_text.get('backend'):
            fw['backend'], fw['backend_source'] = firewall_text['backend'], 'network.conf'
        elif fw['nftables'] and not any(r['chain'].startswith('LIBVIRT_') for r in fw['iptables']):
            fw['backend'], fw['backend_source'] = 'nftables', 'rules'
        elif any(r['chain'].startswith('LIBVIRT_') for r in fw['iptables']):
            fw['backend'], fw['backend_source'] = 'iptables', 'rules'
    return info


def _network_cidr(text):
    addr, prefix = text.split('/')
    fam, first, _last = network_of(addr, int(prefix))
    return cidr(fam, first, int(prefix))


def read_firewall(module):
    """What network_info reports about libvirt's firewall: ``iptables-save -c`` per family, the libvirt nft
    tables (``nft -a list table``), and ``firewall_backend`` of /etc/libvirt/network.conf (empty or None
    when a tool or the file is missing)."""
    out = {'iptables': [], 'nftables': '', 'backend': None}
    for family, tool in (('ipv4', 'iptables-save'), ('ipv6', 'ip6tables-save')):
        path = module.get_bin_path(tool)
        if path:
            rc, stdout, _err = module.run_command([path, '-c'], environ_update={'LC_ALL': 'C'})
            if rc == 0:
                out['iptables'].append((family, stdout))
    nft = module.get_bin_path('nft')
    if nft:
        rc, stdout, _err = module.run_command([nft, 'list', 'tables'], environ_update={'LC_ALL': 'C'})
        if rc == 0:
            chunks = []
            for table in nft_tables(stdout):
                fam, tname = table.split()
                rc2, text, _e = module.run_command([nft, '-a', 'list', 'table', fam, tname],
                                                   environ_update={'LC_ALL': 'C'})
                if rc2 == 0:
                    chunks.append(text)
            out['nftables'] = '\n'.join(chunks)
    try:
        with open('/etc/libvirt/network.conf') as conf:
            out['backend'] = libvirt_firewall_backend(conf.read())
    except (IOError, OSError):
        pass
    return out


class NetworkInfo(object):
    """network_info: describe all networks or one (returns the result dict, raises ManagerError)."""

    def __init__(self, module, conn, host=None):
        self.module = module
        self.conn = conn
        self.host = host or HostView()

    def run(self):
        name = self.module.params.get('name')
        try:
            nets = self.conn.listAllNetworks(VIR_CONNECT_LIST_ALL)
            if name:
                nets = [n for n in nets if n.name() == name]
                if not nets:
                    raise ManagerError('network %s not found' % name, networks=[])
            fw = read_firewall(self.module) if self.module.params.get('firewall') else None
            out = [describe_network(self.conn, n, self.host, firewall=bool(fw), firewall_text=fw)
                   for n in sorted(nets, key=lambda n: n.name())]
        except ModelError as err:
            raise ManagerError(str(err))
        except LibvirtError as err:
            raise ManagerError('libvirt error: %s' % libvirt_error_msg(err), exception=traceback.format_exc())
        return {'changed': False, 'networks': out}


__all__ = ['NetworkInfo', 'NetworkManager', 'describe_network', 'read_firewall', 'lookup']
