# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Domain interface manager behind ``guest_interface`` (PRIVATE: not a public API).

``GuestInterfaceManager(conn, params, check_mode=False, host=None).run()`` plans, then applies,
one interface of one domain and returns the result dict of the module; it raises
``GuestInterfaceError`` (a ``ManagerError``: message for the user, result keys, warnings), the
contract of every manager (``_connection.py``).

Plan first: the persistent (inactive) definition and the live domain are compared separately
with the interface model (``_interface.py``); each gets at most one action (attach, update,
detach). Live actions go first, so that a refused live change with ``on_live_impossible: fail``
leaves nothing changed.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import time

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._connection import (
    LibvirtError, ManagerError,
    VIR_CONNECT_LIST_ALL, VIR_DOMAIN_AFFECT_CONFIG, VIR_DOMAIN_AFFECT_LIVE, VIR_DOMAIN_METADATA_ELEMENT,
    VIR_DOMAIN_XML_INACTIVE, VIR_DOMAIN_XML_SECURE, VIR_ERR_CONFIG_UNSUPPORTED, VIR_ERR_NO_DOMAIN,
    VIR_ERR_NO_NETWORK, VIR_ERR_OPERATION_UNSUPPORTED,
    connection_lost_msg, is_connection_lost, libvirt_error_code, libvirt_error_msg)
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._host import HostView
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._interface import (
    DEFAULT_MODEL,
    READONLY_KEYS,
    find_interface_elements,
    interface_differences,
    interface_from_xml,
    interface_identity,
    interface_to_string,
    interface_to_xml,
    normalize_mac,
    random_mac,
    reindent,
    validate_identity,
    validate_interface,
)

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._xml import ModelError, etree

# Live-only domain metadata where we note MACs whose unplug we requested and the guest has not
# completed yet, so that a second run reports "pending" without asking again (changed: false).
METADATA_URI = 'https://github.com/virtops/virtnet/guest_interface'
METADATA_KEY = 'virtnet'

# What libvirt can change on a running interface (qemuDomainChangeNet).
LIVE_UPDATABLE = frozenset(['link_state', 'bandwidth', 'filterref'])
# ... plus, when old and new are both tap-on-bridge types (network/bridge):
LIVE_UPDATABLE_BRIDGED = frozenset(['type', 'source', 'portgroup', 'virtualport'])
BRIDGED_TYPES = ('network', 'bridge')

_UNPLUG_IN_PROGRESS_RE = re.compile(r'already in the process of unplug|unplug.*(pending|progress)',
                                    re.IGNORECASE)
_LOCAL_URI_RE = re.compile(r'^[A-Za-z0-9+.\-]+://(localhost)?/')


class GuestInterfaceError(ManagerError):
    """Failure with a message meant for the user; ``result`` goes into the failed result."""


_err_code = libvirt_error_code
_err_msg = libvirt_error_msg


def has_shared_memory(domain_root):
    """True when the domain's memory can be shared with a vhost-user backend."""
    if domain_root.find('./memoryBacking/hugepages') is not None:
        return True
    access = domain_root.find('./memoryBacking/access')
    if access is not None and access.get('mode') == 'shared':
        return True
    cells = domain_root.findall('./cpu/numa/cell')
    return bool(cells) and all(c.get('memAccess') == 'shared' for c in cells)


def add_shared_memory(domain_root):
    """Add ``<memoryBacking><access mode='shared'/></memoryBacking>`` (in place)."""
    mb = domain_root.find('memoryBacking')
    if mb is None:
        mb = etree.Element('memoryBacking')
        anchor = None
        for tag in ('currentMemory', 'memory', 'maxMemory'):
            anchor = domain_root.find(tag)
            if anchor is not None:
                break
        if anchor is not None:
            domain_root.insert(domain_root.index(anchor) + 1, mb)
        else:
            domain_root.append(mb)
    access = mb.find('access')
    if access is None:
        access = etree.SubElement(mb, 'access')
    access.set('mode', 'shared')
    return domain_root


def desired_from_params(params):
    """The (partial) interface model asked for by the module parameters."""
    keys = ('type', 'source', 'portgroup', 'path', 'mode', 'reconnect', 'queues', 'virtualport',
            'mac', 'model', 'target_dev', 'mtu', 'link_state', 'boot_order', 'filterref',
            'bandwidth')
    return dict((k, params.get(k)) for k in keys)


class GuestInterfaceManager:
    """Plan and apply one interface of one domain (see module docstring)."""

    def __init__(self, conn, params, check_mode=False, host=None, sleep=time.sleep, clock=time.time, diff=True):
        self.conn = conn
        self.want_diff = diff
        self.params = params
        self.check_mode = check_mode
        self.host = host or HostView()
        self.sleep = sleep
        self.clock = clock
        self.warnings = []
        self.changes = []   # planned changes, in order: {target, action, keys}; public_changes() renders them
        self.mac = None
        self.live = {'active': False, 'status': 'not_running', 'reason': None}
        self.diff = {'before': '', 'after': ''}

    # ------------------------------------------------------------------ helpers
    def _fail(self, msg, **extra):
        raise GuestInterfaceError(msg, **extra)

    def _change(self, target, action, keys=None):
        """Note a change: where (config or live), what (attach, update, detach, memory_backing)."""
        self.changes.append({'target': target, 'action': action, 'keys': keys})

    def public_changes(self):
        """The change records the module returns: ``{what, how}`` like every module of the collection."""
        out = []
        for c in self.changes:
            where = ('running domain %s' if c['target'] == 'live' else 'configuration of domain %s') % self.params['domain']
            if c['action'] == 'memory_backing':
                what = "<memoryBacking><access mode='shared'/> in the %s (applies at next boot)" % where
            else:
                what = 'interface %s in the %s' % (self.mac or '?', where)
                if c['keys']:
                    what += ': %s' % ', '.join(c['keys'])
            out.append({'what': what, 'how': c['action']})
        return out

    def _local(self):
        uri = self.params.get('uri') or 'qemu:///system'
        return bool(_LOCAL_URI_RE.match(uri))

    def _lookup(self, kind, name):
        """The libvirt domain or network ``name``; a clear failure naming those there are when it is not."""
        lookup, list_all, missing, unknown, there = {
            'domain': (self.conn.lookupByName, self.conn.listAllDomains, VIR_ERR_NO_DOMAIN,
                       'domain %s not found', 'defined domains'),
            'network': (self.conn.networkLookupByName, self.conn.listAllNetworks, VIR_ERR_NO_NETWORK,
                        'unknown network %s', 'libvirt networks'),
        }[kind]
        try:
            return lookup(name)
        except LibvirtError as exc:
            if _err_code(exc) == missing or 'not found' in _err_msg(exc).lower():
                names = []
                try:
                    names = sorted(d.name() for d in list_all(VIR_CONNECT_LIST_ALL))
                except LibvirtError:
                    pass
                self._fail((unknown + ' (%s: %s)') % (name, there, ', '.join(names) or 'none'))
            self._fail('cannot look up %s %s: %s' % (kind, name, _err_msg(exc)))

    def _xml(self, dom, inactive):
        flags = VIR_DOMAIN_XML_SECURE | (VIR_DOMAIN_XML_INACTIVE if inactive else 0)
        return etree.fromstring(dom.XMLDesc(flags).encode('utf-8'))

    def _check_mac_unique(self, mac, dom_name):
        try:
            domains = self.conn.listAllDomains(VIR_CONNECT_LIST_ALL)
        except LibvirtError:
            return
        for other in domains:
            if other.name() == dom_name:
                continue
            for flags in (VIR_DOMAIN_XML_INACTIVE, 0):
                try:
                    root = etree.fromstring(other.XMLDesc(flags).encode('utf-8'))
                except LibvirtError:
                    continue  # gone or stopped meanwhile
                for elem in root.findall('./devices/interface/mac'):
                    if (elem.get('address') or '').lower() == mac:
                        self._fail('duplicate MAC address %s: already used by domain %s'
                                   % (mac, other.name()), mac=mac)

    def _check_source(self, desired):
        itype, src = desired['type'], desired.get('source')
        if itype == 'network':
            net = self._lookup('network', src)
            try:
                if not net.isActive():
                    self.warnings.append('network %s is not active: a running guest cannot be '
                                         'plugged into it until it is started' % src)
            except LibvirtError:
                pass  # removed meanwhile: the attach says so
            return
        if not self._local():
            return  # host devices can only be checked on the hypervisor itself
        if itype == 'bridge':
            vport = desired.get('virtualport') or {}
            if vport:
                if not self.host.netdev_exists(src):
                    self._fail('unknown bridge %s: no such network device on the host (Open '
                               'vSwitch bridges must exist in OVS first)' % src)
            elif not self.host.is_linux_bridge(src):
                bridges = [d for d in self.host.host_links() if self.host.is_linux_bridge(d)]
                if self.host.netdev_exists(src):
                    self._fail('%s exists on the host but is not a Linux bridge (for an Open '
                               'vSwitch bridge set virtualport: openvswitch)' % src)
                self._fail('unknown bridge %s (host bridges: %s)'
                           % (src, ', '.join(bridges) or 'none'))
        elif itype == 'direct':
            if not self.host.netdev_exists(src):
                self._fail('macvtap source device %s does not exist on the host (devices: %s)'
                           % (src, ', '.join(self.host.host_links()) or 'none'))

    def _live_policy(self, running):
        live = self.params.get('live') or 'auto'
        if live == 'never':
            return False, 'disabled'
        if not running:
            if live == 'always':
                self._fail("live: always, but domain %s is not running" % self.params['domain'])
            return False, 'not_running'
        return True, None

    def _live_impossible(self, reason):
        """A live change cannot be made: fail, or note it and go on with the config only."""
        if (self.params.get('live') == 'always'
                or (self.params.get('on_live_impossible') or 'config_only') == 'fail'):
            self._fail('cannot apply the change to running domain %s: %s'
                       % (self.params['domain'], reason), live_status='impossible')
        self.live.update(status='impossible', reason=reason)
        self.warnings.append('%s; changed the persistent configuration only (applies at next '
                             'boot of the domain)' % reason)

    @staticmethod
    def live_blockers(before, diffs):
        """Keys of ``diffs`` that libvirt cannot change on a running interface."""
        after_type = before.get('type')
        for d in diffs:
            if d['key'] == 'type':
                after_type = d['after']
        bridged = before.get('type') in BRIDGED_TYPES and after_type in BRIDGED_TYPES
        allowed = LIVE_UPDATABLE | (LIVE_UPDATABLE_BRIDGED if bridged else frozenset())
        return [d['key'] for d in diffs if d['key'] not in allowed]

    # ------------------------------------------------------------------ main
    def run(self):
        """The module's result dict; raises GuestInterfaceError (with the changes made and the warnings)."""
        try:
            result = self._run()
        except ManagerError as err:
            extra = dict((k, v) for k, v in err.result.items() if k != 'changes')
            err.result = dict(extra, changes=self.public_changes())
            err.warnings = self.warnings
            raise
        except LibvirtError as err:
            if not is_connection_lost(err):
                raise
            error = GuestInterfaceError(connection_lost_msg(
                err, 'talking to libvirt about domain %s' % self.params['domain'], [],
                'it does only what is still missing.'), changes=self.public_changes(), changed=bool(self.changes))
            error.warnings = self.warnings
            raise error
        result['changes'] = self.public_changes()
        if not self.want_diff:
            del result['diff']
        return result

    def _run(self):
        params = self.params
        state = params.get('state') or 'present'
        desired = desired_from_params(params)
        try:
            if desired.get('mac'):
                desired['mac'] = normalize_mac(desired['mac'])
            if state == 'present':
                validate_interface(desired)
            elif not desired.get('mac'):
                validate_identity(desired)
        except ModelError as exc:
            self._fail(str(exc))

        dom = self._lookup('domain', params['domain'])
        config_root = self._xml(dom, inactive=True)
        running = bool(dom.isActive())
        self.live['active'] = running
        live_root = self._xml(dom, inactive=False) if running else None
        do_live, why_not = self._live_policy(running)
        if not do_live:
            self.live['status'] = why_not

        matches = find_interface_elements(config_root, desired)
        if len(matches) > 1:
            self._fail('%d interfaces of domain %s match %s (MACs %s): give mac to pick one'
                       % (len(matches), params['domain'], interface_identity(desired),
                          ', '.join(m[1]['mac'] or '?' for m in matches)))
        if state == 'present':
            result = self._present(dom, config_root, live_root, desired, matches, do_live)
        else:
            result = self._absent(dom, config_root, live_root, desired, matches, do_live)
        result.update(changed=bool(self.changes), changes=self.changes, live=self.live,
                      warnings=self.warnings, diff=self.diff)
        return result

    # ------------------------------------------------------------------ present
    def _present(self, dom, config_root, live_root, desired, matches, do_live):
        params = self.params
        self._check_source(desired)
        if desired.get('mac') and not matches:
            # The MAC identifies a new interface; it must not be taken elsewhere.
            taken = [m['mac'] for m in [interface_from_xml(e) for e in config_root.findall('./devices/interface')]]
            if desired['mac'] in taken:  # pragma: no cover - would have matched
                self._fail('duplicate MAC address %s in domain %s' % (desired['mac'], params['domain']))
            self._check_mac_unique(desired['mac'], params['domain'])

        # vhost-user needs guest memory shared with the backend process.
        memory_pending = False
        if desired['type'] == 'vhostuser' and not has_shared_memory(config_root):
            if not params.get('ensure_shared_memory'):
                self._fail('type vhostuser needs shared guest memory, and domain %s has neither '
                           "<memoryBacking><access mode='shared'/></memoryBacking> nor hugepages; "
                           'set ensure_shared_memory: true to add shared access to its '
                           'configuration (applies at next boot)' % params['domain'])
            self._change('config', 'memory_backing')
            memory_pending = True
            self.warnings.append("added shared memory access to domain %s's configuration; it "
                                 "takes effect at the next boot of the domain" % params['domain'])

        if matches:
            old_elem, current = matches[0]
            diffs = interface_differences(desired, current)
            if not diffs:
                new_elem = old_elem
            else:
                new_elem = interface_to_xml(desired, base=old_elem, keys=[d['key'] for d in diffs])
                self._change('config', 'update', [d['key'] for d in diffs])
            self.diff['before'] = interface_to_string(reindent(old_elem))
        else:
            diffs = None
            model = dict(desired)
            if not model.get('mac'):
                taken = set()
                for d in self.conn.listAllDomains(VIR_CONNECT_LIST_ALL):
                    try:
                        root = etree.fromstring(d.XMLDesc(VIR_DOMAIN_XML_INACTIVE).encode('utf-8'))
                    except LibvirtError:
                        continue  # gone meanwhile
                    taken.update((e.get('address') or '').lower()
                                 for e in root.findall('./devices/interface/mac'))
                model['mac'] = random_mac(taken)
            if not model.get('model'):
                model['model'] = DEFAULT_MODEL
            new_elem = interface_to_xml(model)
            old_elem = None
            self._change('config', 'attach')
        new_model = interface_from_xml(new_elem)
        self.diff['after'] = interface_to_string(reindent(new_elem))
        mac = self.mac = new_model['mac']

        # Live side, planned against the live XML.
        live_action = None
        if do_live:
            live_matches = find_interface_elements(live_root, {'mac': mac})
            if not live_matches:
                if desired['type'] == 'vhostuser' and (memory_pending or not has_shared_memory(live_root)):
                    self._live_impossible('the running domain has no shared memory for a '
                                          'vhost-user interface')
                else:
                    live_action = ('attach', new_elem, None)
            elif mac in self._pending_macs(dom):
                self.live.update(status='pending', reason=(
                    'an earlier unplug of %s is still pending in the running domain: the device '
                    'disappears there when the guest releases it; the configuration has it' % mac))
                self.warnings.append(self.live['reason'])
            else:
                live_elem, live_model = live_matches[0]
                live_diffs = interface_differences(desired, live_model)
                if live_diffs:
                    blockers = self.live_blockers(live_model, live_diffs)
                    if blockers:
                        self._live_impossible('libvirt cannot change %s of a running interface'
                                              % ', '.join(sorted(blockers)))
                    else:
                        live_elem_new = interface_to_xml(desired, base=live_elem,
                                                         keys=[d['key'] for d in live_diffs])
                        live_action = ('update', live_elem_new, live_diffs)
                else:
                    self.live['status'] = 'unchanged'
        if live_action:
            self._change('live', live_action[0], [d['key'] for d in live_action[2]] if live_action[2] else None)

        if not self.check_mode:
            if live_action:
                self._apply_live(dom, live_action)
            if memory_pending:
                root = self._xml(dom, inactive=True)
                try:
                    self.conn.defineXML(etree.tostring(add_shared_memory(root)).decode('utf-8'))
                except LibvirtError as exc:
                    self._fail('cannot add shared memory to domain %s: %s'
                               % (params['domain'], _err_msg(exc)))
            self._apply_config(dom, old_elem, new_elem, diffs)
            if self.changes:
                after = find_interface_elements(self._xml(dom, inactive=True), {'mac': mac})
                if after:
                    new_model = after[0][1]
                    self.diff['after'] = interface_to_string(reindent(after[0][0]))
        elif live_action:
            self.live['status'] = 'applied'

        self._warn_direct_only(config_root, old_elem, new_model)
        for key in READONLY_KEYS:
            new_model.pop(key, None)
        return {'interface': new_model}

    def _apply_live(self, dom, action):
        kind, elem, _diffs = action
        xml = interface_to_string(elem)
        try:
            if kind == 'attach':
                dom.attachDeviceFlags(xml, VIR_DOMAIN_AFFECT_LIVE)
            else:
                dom.updateDeviceFlags(xml, VIR_DOMAIN_AFFECT_LIVE)
        except LibvirtError as exc:
            self._lost(exc, '%s the interface on running domain %s'
                       % ('hot-plugging' if kind == 'attach' else 'updating', self.params['domain']))
            code = _err_code(exc)
            if kind == 'update' and code in (VIR_ERR_OPERATION_UNSUPPORTED, VIR_ERR_CONFIG_UNSUPPORTED):
                self.changes[:] = [c for c in self.changes if c['target'] != 'live']
                self._live_impossible('libvirt refused the live change: %s' % _err_msg(exc))
                return
            del self.changes[:]
            self._fail('cannot %s the interface on running domain %s: %s (nothing was changed)'
                       % ('hot-plug' if kind == 'attach' else 'update', self.params['domain'],
                          _err_msg(exc)), libvirt_error=_err_msg(exc))
        self.live['status'] = 'applied'

    def _lost(self, exc, doing):
        """libvirtd went away during a change: say so (its outcome is unknown), never "nothing was changed"."""
        if not is_connection_lost(exc):
            return
        done = ['%s %s' % (c['target'], c['action']) for c in self.changes
                if c['target'] == 'live' and self.live.get('status') == 'applied']
        self._fail(connection_lost_msg(exc, doing, done,
                                       'it compares the live and persistent interfaces with what you declared '
                                       'and does only what is missing (no second device with the same MAC).'),
                   interrupted=doing, changed=True)

    def _apply_config(self, dom, old_elem, new_elem, diffs):
        try:
            if old_elem is None:
                dom.attachDeviceFlags(interface_to_string(new_elem), VIR_DOMAIN_AFFECT_CONFIG)
            elif diffs:
                dom.updateDeviceFlags(interface_to_string(new_elem), VIR_DOMAIN_AFFECT_CONFIG)
        except LibvirtError as exc:
            self._lost(exc, 'writing the interface to the configuration of domain %s' % self.params['domain'])
            self.changes[:] = [c for c in self.changes if c['target'] == 'live' or c['action'] == 'memory_backing']
            self._fail('cannot change the configuration of domain %s: %s'
                       % (self.params['domain'], _err_msg(exc)), changes=self.changes)

    def _warn_direct_only(self, config_root, old_elem, new_model):
        models = [interface_from_xml(e) for e in config_root.findall('./devices/interface')
                  if e is not old_elem]
        models.append(new_model)
        if models and all(m['type'] == 'direct' for m in models):
            self.warnings.append(
                "all interfaces of domain %s are macvtap (type direct): the host itself cannot "
                "reach the guest over them (in bridge mode a macvtap only talks to the outside "
                "network and to other macvtaps on the same device, not to the host's own "
                "address on it); add a network or bridge interface if the host must reach the "
                "guest" % self.params['domain'])

    # ------------------------------------------------------------------ absent
    def _absent(self, dom, config_root, live_root, desired, matches, do_live):
        old_elem, current = matches[0] if matches else (None, None)
        self.mac = current['mac'] if current else None
        live_elem = None
        if do_live:
            ident = {'mac': current['mac']} if current and current.get('mac') else desired
            live_matches = find_interface_elements(live_root, ident)
            if len(live_matches) > 1:
                self._fail('%d live interfaces of domain %s match %s: give mac to pick one'
                           % (len(live_matches), self.params['domain'], interface_identity(desired)))
            if live_matches:
                live_elem = live_matches[0][0]
            else:
                self.live['status'] = 'unchanged'
        if old_elem is not None:
            self._change('config', 'detach')
            self.diff['before'] = interface_to_string(reindent(old_elem))
        elif live_elem is not None:
            self.diff['before'] = interface_to_string(reindent(live_elem))
        already_pending = False
        if live_elem is not None:
            live_mac = self.mac = interface_from_xml(live_elem)['mac']
            if live_mac in self._pending_macs(dom):
                already_pending = True
                self.live.update(status='pending', reason=(
                    'unplug of %s was requested earlier and the guest has not released the '
                    'device yet (it needs the guest OS to answer the ACPI eject); it is gone from '
                    'the configuration' % live_mac))
                self.warnings.append(self.live['reason'])
            else:
                self._change('live', 'detach')
        removed = current if current is not None else (
            interface_from_xml(live_elem) if live_elem is not None else None)
        if removed is not None:
            for key in READONLY_KEYS:
                removed.pop(key, None)

        if already_pending:
            live_elem = None
        if self.check_mode:
            if live_elem is not None:
                self.live['status'] = 'removed'
            return {'interface': removed}

        if live_elem is not None:
            self._detach_live(dom, live_elem)
        if old_elem is not None:
            try:
                dom.detachDeviceFlags(interface_to_string(old_elem), VIR_DOMAIN_AFFECT_CONFIG)
            except LibvirtError as exc:
                self._fail('cannot remove the interface from the configuration of domain %s: %s'
                           % (self.params['domain'], _err_msg(exc)), changes=self.changes)
        if live_elem is not None and self.live['status'] == 'requested':
            self._wait_unplug(dom, interface_from_xml(live_elem)['mac'])
        return {'interface': removed}

    def _detach_live(self, dom, live_elem):
        try:
            dom.detachDeviceFlags(interface_to_string(live_elem), VIR_DOMAIN_AFFECT_LIVE)
        except LibvirtError as exc:
            msg = _err_msg(exc)
            if _UNPLUG_IN_PROGRESS_RE.search(msg):
                # Requested by an earlier run; nothing new to do live.
                self.changes[:] = [c for c in self.changes if c['target'] != 'live']
                self.live.update(status='pending', reason='unplug already requested, the guest '
                                 'has not released the device yet (%s)' % msg)
                return
            del self.changes[:]
            self._fail('cannot unplug the interface from running domain %s: %s (nothing was '
                       'changed)' % (self.params['domain'], msg), libvirt_error=msg)
        self.live['status'] = 'requested'

    def _wait_unplug(self, dom, mac):
        timeout = float(self.params.get('unplug_timeout') or 0)
        deadline = self.clock() + timeout
        while True:
            try:
                still = find_interface_elements(self._xml(dom, inactive=False), {'mac': mac})
            except LibvirtError:
                still = []  # domain stopped meanwhile: the device is gone
            if not still:
                self.live.update(status='removed', reason=None)
                self._note_pending(dom, mac, False)
                return
            if self.clock() >= deadline:
                break
            self.sleep(min(0.5, max(0.05, deadline - self.clock())))
        self.live.update(
            status='pending',
            reason='the guest did not release the device within unplug_timeout=%ss (unplug '
                   'needs the guest OS to answer the ACPI eject); removed from the configuration, '
                   'still present in the running domain until the guest releases it or the '
                   'domain is restarted' % self.params.get('unplug_timeout'))
        self.warnings.append(self.live['reason'])
        self._note_pending(dom, mac, True)

    # ------------------------------------------------------------------ pending unplugs
    def _pending_macs(self, dom):
        try:
            text = dom.metadata(VIR_DOMAIN_METADATA_ELEMENT, METADATA_URI, VIR_DOMAIN_AFFECT_LIVE)
        except LibvirtError:
            return set()  # no metadata of ours (VIR_ERR_NO_DOMAIN_METADATA)
        try:
            root = etree.fromstring(text.encode('utf-8'))
        except etree.XMLSyntaxError:
            return set()
        return set((e.get('address') or '').lower() for e in root.iter('mac'))

    def _note_pending(self, dom, mac, pending):
        """Add or drop ``mac`` in the live metadata of pending unplugs (best effort)."""
        macs = self._pending_macs(dom)
        if pending:
            macs.add(mac)
        else:
            macs.discard(mac)
        root = etree.Element('unplug-pending')
        for item in sorted(macs):
            etree.SubElement(root, 'mac', address=item)
        try:
            if macs:
                dom.setMetadata(VIR_DOMAIN_METADATA_ELEMENT, etree.tostring(root).decode('utf-8'),
                                METADATA_KEY, METADATA_URI, VIR_DOMAIN_AFFECT_LIVE)
            else:
                dom.setMetadata(VIR_DOMAIN_METADATA_ELEMENT, None, None, METADATA_URI,
                                VIR_DOMAIN_AFFECT_LIVE)
        except LibvirtError:
            pass  # best effort: a later run asks the guest again
