# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The libvirt network model (PRIVATE: not a public API of this collection).

One model, used both ways::

    params -> model -> XML      (model_from_params, to_xml)
    XML -> model                (from_xml)
    canonical(model)            what two models are compared on

The model is a plain dict whose keys are exactly the options of the ``network`` module
(``name``, ``forward``, ``bridge``, ``ips``...), so ``network_info``'s output is valid input.
``None`` means "not declared". Values libvirt generates (uuid, MAC, bridge name) are only
compared when declared; libvirt's defaults (stp on, delay 0, NAT ports 1024-65535, forward dev
copied into the interface list...) are filled in by ``canonical`` so they never cause a change.

No libvirt import here: the model is pure Python (+ lxml for XML).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import re

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._port import (
    bandwidth_element, bandwidth_from_xml, norm_bandwidth, norm_virtualport, virtualport_element,
    virtualport_from_xml)
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._xml import (
    ModelError, parse_xml, to_string, sub, yesno, to_int, norm_mac, norm_ip,
    family_of, ip_to_int, int_to_ip, netmask_to_prefix, prefix_to_netmask, in_subnet, network_of, etree)

FORWARD_MODES = ('nat', 'route', 'open', 'isolated', 'bridge', 'private', 'vepa', 'passthrough', 'hostdev')
# modes where libvirt creates and manages the bridge itself
MANAGED_BRIDGE_MODES = ('nat', 'route', 'open', 'isolated')
# macvtap / hostdev pool modes: no bridge, no IP
POOL_MODES = ('private', 'vepa', 'passthrough', 'hostdev')

DNSMASQ_NS = 'http://libvirt.org/schemas/network/dnsmasq/1.0'
MAX_IFNAME = 15

# Keys of the model (= options of the network module), in XML order.
MODEL_KEYS = ('name', 'uuid', 'ipv6', 'trust_guest_rx_filters', 'forward', 'forward_dev',
              'forward_interfaces', 'forward_pf', 'forward_addresses', 'forward_managed',
              'forward_driver', 'nat', 'bridge', 'mtu', 'mac', 'domain', 'dns', 'ips', 'routes',
              'virtualport', 'vlan', 'bandwidth', 'port_isolated', 'portgroups', 'metadata',
              'dnsmasq_options', 'extra_xml')
_KNOWN_TOP = ('name', 'uuid', 'forward', 'bridge', 'mtu', 'mac', 'domain', 'dns', 'ip', 'route',
              'virtualport', 'vlan', 'bandwidth', 'port', 'portgroup', 'metadata')


def empty_model():
    return dict((k, None) for k in MODEL_KEYS)


# ============================================================================================
# XML -> model
def from_xml(text):
    """Parse libvirt network XML (text or element) into a model dict."""
    root = parse_xml(text) if not hasattr(text, 'tag') else text
    if root.tag != 'network':
        raise ModelError('network XML must have <network> as root element, not <%s>' % root.tag)
    m = empty_model()
    m['ipv6'] = yesno(root.get('ipv6'), 'network ipv6')
    m['trust_guest_rx_filters'] = yesno(root.get('trustGuestRxFilters'), 'trustGuestRxFilters')
    m['name'] = _text(root.find('name'))
    m['uuid'] = _text(root.find('uuid'))
    m['forward'] = 'isolated'
    extra = []
    for child in root:
        if not isinstance(child.tag, str):
            continue
        tag = child.tag
        if tag == 'forward':
            _forward_from(child, m)
        elif tag == 'bridge':
            m['bridge'] = _drop_none({
                'name': child.get('name'),
                'stp': yesno(child.get('stp'), 'bridge stp'),
                'delay': to_int(child.get('delay'), 'bridge delay'),
                'mac_table_manager': child.get('macTableManager'),
                'zone': child.get('zone'),
            })
        elif tag == 'mtu':
            m['mtu'] = to_int(child.get('size'), 'mtu size')
        elif tag == 'mac':
            m['mac'] = child.get('address')
        elif tag == 'domain':
            m['domain'] = _drop_none({
                'name': child.get('name'),
                'local_only': yesno(child.get('localOnly'), 'domain localOnly'),
                'register': yesno(child.get('register'), 'domain register'),
            })
        elif tag == 'dns':
            m['dns'] = _dns_from(child)
        elif tag == 'ip':
            m['ips'] = (m['ips'] or []) + [_ip_from(child)]
        elif tag == 'route':
            m['routes'] = (m['routes'] or []) + [_drop_none({
                'family': child.get('family'),
                'address': child.get('address'),
                'prefix': _prefix_attr(child),
                'gateway': child.get('gateway'),
                'metric': to_int(child.get('metric'), 'route metric'),
            })]
        elif tag == 'virtualport':
            m['virtualport'] = virtualport_from_xml(child)
        elif tag == 'vlan':
            m['vlan'] = _vlan_from(child)
        elif tag == 'bandwidth':
            m['bandwidth'] = bandwidth_from_xml(child)
        elif tag == 'port':
            m['port_isolated'] = yesno(child.get('isolated'), 'port isolated')
        elif tag == 'portgroup':
            m['portgroups'] = (m['portgroups'] or []) + [_portgroup_from(child)]
        elif tag == 'metadata':
            m['metadata'] = ''.join(_c14n(c) for c in child if isinstance(c.tag, str)) or None
        elif tag == '{%s}options' % DNSMASQ_NS:
            m['dnsmasq_options'] = [o.get('value') for o in child
                                    if o.tag == '{%s}option' % DNSMASQ_NS]
        elif tag in ('name', 'uuid'):
            continue
        else:
            extra.append(_c14n(child))
    if extra:
        m['extra_xml'] = extra
    return m


def _c14n(elem):
    """Canonical XML (C14N) of an element we do not model: stable text, namespaces kept."""
    text = etree.tostring(elem, method='c14n')
    return text.decode('utf-8') if isinstance(text, bytes) else text


def _text(elem):
    if elem is None or elem.text is None:
        return None
    return elem.text.strip()


def _drop_none(d):
    return dict((k, v) for k, v in d.items() if v is not None)


def _prefix_attr(elem):
    prefix = to_int(elem.get('prefix'), 'prefix')
    if prefix is None and elem.get('netmask'):
        prefix = netmask_to_prefix(elem.get('netmask'))
    return prefix


def _forward_from(elem, m):
    mode = elem.get('mode') or 'nat'
    m['forward'] = mode
    m['forward_dev'] = elem.get('dev')
    m['forward_managed'] = yesno(elem.get('managed'), 'forward managed')
    ifaces = []
    addrs = []
    for child in elem:
        if child.tag == 'interface':
            ifaces.append(child.get('dev'))
        elif child.tag == 'pf':
            m['forward_pf'] = child.get('dev')
        elif child.tag == 'address':
            addrs.append(_drop_none(dict((k, child.get(k)) for k in ('type', 'domain', 'bus', 'slot', 'function'))))
        elif child.tag == 'driver':
            m['forward_driver'] = child.get('name')
        elif child.tag == 'nat':
            nat = {'ipv6': yesno(child.get('ipv6'), 'nat ipv6')}
            for sub_el in child:
                if sub_el.tag == 'address':
                    nat['address_start'] = sub_el.get('start')
                    nat['address_end'] = sub_el.get('end')
                elif sub_el.tag == 'port':
                    nat['port_start'] = to_int(sub_el.get('start'), 'nat port start')
                    nat['port_end'] = to_int(sub_el.get('end'), 'nat port end')
            m['nat'] = _drop_none(nat) or None
    if ifaces:
        m['forward_interfaces'] = ifaces
    if addrs:
        m['forward_addresses'] = addrs


def _lease_from(parent, target):
    lease = parent.find('lease')
    if lease is not None:
        target['lease_expiry'] = to_int(lease.get('expiry'), 'lease expiry')
        target['lease_unit'] = lease.get('unit')


def _ip_from(elem):
    ip = {
        'address': elem.get('address'),
        'family': elem.get('family'),
        'prefix': _prefix_attr(elem),
        'local_ptr': yesno(elem.get('localPtr'), 'ip localPtr'),
    }
    tftp = elem.find('tftp')
    if tftp is not None:
        ip['tftp_root'] = tftp.get('root')
    dhcp = elem.find('dhcp')
    if dhcp is not None:
        ranges = []
        hosts = []
        for child in dhcp:
            if child.tag == 'range':
                rng = {'start': child.get('start'), 'end': child.get('end')}
                _lease_from(child, rng)
                ranges.append(_drop_none(rng))
            elif child.tag == 'host':
                host = dict((k, child.get(k)) for k in ('mac', 'id', 'name', 'ip'))
                _lease_from(child, host)
                hosts.append(_drop_none(host))
            elif child.tag == 'bootp':
                ip['bootp_file'] = child.get('file')
                ip['bootp_server'] = child.get('server')
        ip['ranges'] = ranges
        ip['hosts'] = hosts
        ip['dhcp'] = True
    return _drop_none(ip)


def _dns_from(elem):
    dns = {
        'enable': yesno(elem.get('enable'), 'dns enable'),
        'forward_plain_names': yesno(elem.get('forwardPlainNames'), 'dns forwardPlainNames'),
    }
    fwd, hosts, txts, srvs = [], [], [], []
    for child in elem:
        if child.tag == 'forwarder':
            fwd.append(_drop_none({'addr': child.get('addr'), 'domain': child.get('domain')}))
        elif child.tag == 'host':
            hosts.append({'ip': child.get('ip'),
                          'hostnames': [_text(h) for h in child if h.tag == 'hostname']})
        elif child.tag == 'txt':
            txts.append(_drop_none({'name': child.get('name'), 'value': child.get('value')}))
        elif child.tag == 'srv':
            srv = dict((k, child.get(k)) for k in ('service', 'protocol', 'domain', 'target'))
            for k in ('port', 'priority', 'weight'):
                srv[k] = to_int(child.get(k), 'dns srv %s' % k)
            srvs.append(_drop_none(srv))
    dns.update({'forwarders': fwd, 'hosts': hosts, 'txt': txts, 'srv': srvs})
    return _drop_none(dns)


def _vlan_from(elem):
    return _drop_none({
        'trunk': yesno(elem.get('trunk'), 'vlan trunk'),
        'tags': [_drop_none({'id': to_int(t.get('id'), 'vlan tag id'), 'native_mode': t.get('nativeMode')})
                 for t in elem if t.tag == 'tag'],
    })


def _portgroup_from(elem):
    pg = {
        'name': elem.get('name'),
        'default': yesno(elem.get('default'), 'portgroup default'),
        'trust_guest_rx_filters': yesno(elem.get('trustGuestRxFilters'), 'portgroup trustGuestRxFilters'),
    }
    for child in elem:
        if child.tag == 'vlan':
            pg['vlan'] = _vlan_from(child)
        elif child.tag == 'virtualport':
            pg['virtualport'] = virtualport_from_xml(child)
        elif child.tag == 'bandwidth':
            pg['bandwidth'] = bandwidth_from_xml(child)
    return _drop_none(pg)


# ============================================================================================
# model -> XML
def to_element(model):
    m = model
    nsmap = {'dnsmasq': DNSMASQ_NS} if m.get('dnsmasq_options') else None
    root = etree.Element('network', nsmap=nsmap)
    if m.get('ipv6') is not None:
        root.set('ipv6', 'yes' if m['ipv6'] else 'no')
    if m.get('trust_guest_rx_filters') is not None:
        root.set('trustGuestRxFilters', 'yes' if m['trust_guest_rx_filters'] else 'no')
    sub(root, 'name', text=m.get('name'))
    if m.get('uuid'):
        sub(root, 'uuid', text=m['uuid'])
    if m.get('metadata'):
        meta = sub(root, 'metadata')
        holder = parse_xml('<metadata>%s</metadata>' % m['metadata'])
        for child in holder:
            meta.append(child)
    mode = m.get('forward') or 'nat'
    if mode != 'isolated':
        fwd = sub(root, 'forward', [('dev', m.get('forward_dev')), ('mode', mode),
                                    ('managed', m.get('forward_managed'))])
        if m.get('forward_driver'):
            sub(fwd, 'driver', [('name', m['forward_driver'])])
        if m.get('forward_pf'):
            sub(fwd, 'pf', [('dev', m['forward_pf'])])
        for dev in m.get('forward_interfaces') or []:
            sub(fwd, 'interface', [('dev', dev)])
        for addr in m.get('forward_addresses') or []:
            sub(fwd, 'address', [(k, addr.get(k)) for k in ('type', 'domain', 'bus', 'slot', 'function')])
        nat = m.get('nat')
        if nat:
            nat_el = sub(fwd, 'nat', [('ipv6', nat.get('ipv6'))])
            if nat.get('address_start') or nat.get('address_end'):
                sub(nat_el, 'address', [('start', nat.get('address_start')), ('end', nat.get('address_end'))])
            if nat.get('port_start') is not None or nat.get('port_end') is not None:
                sub(nat_el, 'port', [('start', nat.get('port_start')), ('end', nat.get('port_end'))])
    br = m.get('bridge')
    if br:
        stp = br.get('stp')
        sub(root, 'bridge', [('name', br.get('name')),
                             ('stp', None if stp is None else ('on' if stp else 'off')),
                             ('delay', br.get('delay')),
                             ('macTableManager', br.get('mac_table_manager')),
                             ('zone', br.get('zone'))])
    if m.get('mtu') is not None:
        sub(root, 'mtu', [('size', m['mtu'])])
    if m.get('mac'):
        sub(root, 'mac', [('address', m['mac'])])
    dom = m.get('domain')
    if dom:
        sub(root, 'domain', [('name', dom.get('name')), ('localOnly', dom.get('local_only')),
                             ('register', dom.get('register'))])
    if m.get('dns'):
        _dns_to(root, m['dns'])
    if m.get('virtualport'):
        root.append(virtualport_element(m['virtualport']))
    if m.get('vlan'):
        _vlan_to(root, m['vlan'])
    if m.get('bandwidth'):
        root.append(bandwidth_element(m['bandwidth']))
    if m.get('port_isolated') is not None:
        sub(root, 'port', [('isolated', m['port_isolated'])])
    for ip in m.get('ips') or []:
        _ip_to(root, ip)
    for rt in m.get('routes') or []:
        rfam = rt.get('family')
        if rfam is None and family_of(rt.get('address')) == 'ipv6':
            rfam = 'ipv6'
        rprefix = rt.get('prefix')
        if rprefix is None and rt.get('netmask'):
            rprefix = netmask_to_prefix(rt['netmask'])
        sub(root, 'route', [('family', rfam), ('address', rt.get('address')),
                            ('prefix', rprefix), ('gateway', rt.get('gateway')),
                            ('metric', rt.get('metric'))])
    for pg in m.get('portgroups') or []:
        portgroup_to(root, pg)
    if m.get('dnsmasq_options'):
        opts = etree.SubElement(root, '{%s}options' % DNSMASQ_NS)
        for value in m['dnsmasq_options']:
            etree.SubElement(opts, '{%s}option' % DNSMASQ_NS).set('value', value)
    for frag in m.get('extra_xml') or []:
        root.append(parse_xml(frag))
    return root


def to_xml(model):
    return to_string(to_element(model))


def _lease_to(parent, item):
    if item.get('lease_expiry') is not None or item.get('lease_unit'):
        sub(parent, 'lease', [('expiry', item.get('lease_expiry')), ('unit', item.get('lease_unit'))])


def dhcp_host_element(host):
    elem = etree.Element('host')
    for k in ('mac', 'id', 'name', 'ip'):
        if host.get(k) is not None:
            elem.set(k, '%s' % host[k])
    _lease_to(elem, host)
    return elem


def dhcp_range_element(rng):
    elem = etree.Element('range')
    elem.set('start', rng['start'])
    elem.set('end', rng['end'])
    _lease_to(elem, rng)
    return elem


def _ip_to(root, ip):
    fam = ip.get('family')
    if fam is None and family_of(ip.get('address')) == 'ipv6':
        fam = 'ipv6'  # libvirt needs the family for non-IPv4 addresses
    attrs = [('family', fam), ('address', ip.get('address'))]
    prefix = ip.get('prefix')
    if prefix is None and ip.get('netmask'):
        prefix = netmask_to_prefix(ip['netmask'])
    if fam != 'ipv6' and family_of(ip.get('address')) == 'ipv4' and prefix is not None:
        attrs.append(('netmask', prefix_to_netmask(prefix)))
    else:
        attrs.append(('prefix', prefix))
    attrs.append(('localPtr', ip.get('local_ptr')))
    elem = sub(root, 'ip', attrs)
    if ip.get('tftp_root'):
        sub(elem, 'tftp', [('root', ip['tftp_root'])])
    if ip.get('dhcp') or ip.get('ranges') or ip.get('hosts') or ip.get('bootp_file'):
        dhcp = sub(elem, 'dhcp')
        for rng in ip.get('ranges') or []:
            dhcp.append(dhcp_range_element(rng))
        for host in ip.get('hosts') or []:
            dhcp.append(dhcp_host_element(host))
        if ip.get('bootp_file'):
            sub(dhcp, 'bootp', [('file', ip['bootp_file']), ('server', ip.get('bootp_server'))])


def dns_host_element(host):
    elem = etree.Element('host')
    elem.set('ip', host['ip'])
    for name in host.get('hostnames') or []:
        sub(elem, 'hostname', text=name)
    return elem


def dns_txt_element(txt):
    elem = etree.Element('txt')
    for k in ('name', 'value'):
        if txt.get(k) is not None:
            elem.set(k, txt[k])
    return elem


def dns_srv_element(srv):
    elem = etree.Element('srv')
    for k in ('service', 'protocol', 'domain', 'target', 'port', 'priority', 'weight'):
        if srv.get(k) is not None:
            elem.set(k, '%s' % srv[k])
    return elem


def _dns_to(root, dns):
    elem = sub(root, 'dns', [('enable', dns.get('enable')),
                             ('forwardPlainNames', dns.get('forward_plain_names'))])
    for f in dns.get('forwarders') or []:
        sub(elem, 'forwarder', [('domain', f.get('domain')), ('addr', f.get('addr'))])
    for txt in dns.get('txt') or []:
        elem.append(dns_txt_element(txt))
    for host in dns.get('hosts') or []:
        elem.append(dns_host_element(host))
    for srv in dns.get('srv') or []:
        elem.append(dns_srv_element(srv))


def _vlan_to(parent, vlan):
    elem = sub(parent, 'vlan', [('trunk', vlan.get('trunk'))])
    for tag in vlan.get('tags') or []:
        sub(elem, 'tag', [('id', tag.get('id')), ('nativeMode', tag.get('native_mode'))])


def portgroup_element(pg):
    elem = etree.Element('portgroup')
    elem.set('name', pg['name'])
    if pg.get('default') is not None:
        elem.set('default', 'yes' if pg['default'] else 'no')
    if pg.get('trust_guest_rx_filters') is not None:
        elem.set('trustGuestRxFilters', 'yes' if pg['trust_guest_rx_filters'] else 'no')
    if pg.get('vlan'):
        _vlan_to(elem, pg['vlan'])
    if pg.get('virtualport'):
        elem.append(virtualport_element(pg['virtualport']))
    if pg.get('bandwidth'):
        elem.append(bandwidth_element(pg['bandwidth']))
    return elem


def portgroup_to(root, pg):
    root.append(portgroup_element(pg))


def element_text(elem):
    return to_string(elem, pretty=False)


# ============================================================================================
# params -> model
def model_from_params(params):
    """Build a model from the module's parameters (structured form or ``xml``)."""
    if params.get('xml'):
        m = from_xml(params['xml'])
        if params.get('name') and m.get('name') and params['name'] != m['name']:
            raise ModelError("name %r differs from the <name> in xml (%r)" % (params['name'], m['name']))
        m['name'] = m.get('name') or params.get('name')
        return m
    m = empty_model()
    for key in MODEL_KEYS:
        if key in params and params[key] is not None:
            m[key] = copy.deepcopy(params[key])
    m['forward'] = m.get('forward') or 'nat'
    return dict((k, _strip_nones(v)) for k, v in m.items())


def _strip_nones(value):
    """Remove None values from nested dicts (module suboptions fill every key with None)."""
    if isinstance(value, dict):
        return dict((k, _strip_nones(v)) for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return [_strip_nones(v) for v in value]
    return value


# ============================================================================================
# canonical form (what is compared) and validation
def canonical(model, declared=None):
    """Return a normalised deep copy of ``model``.

    ``declared``: when given (the desired model), keys libvirt generates (uuid, mac, bridge
    name) that are not declared there are dropped so they never cause a difference.
    """
    m = empty_model()
    for key in MODEL_KEYS:
        if model.get(key) is not None:
            m[key] = copy.deepcopy(model[key])
    mode = m['forward'] or 'nat'
    m['forward'] = mode
    m['uuid'] = None
    if m['mac']:
        m['mac'] = norm_mac(m['mac'], 'mac')
    ifaces = list(m['forward_interfaces'] or [])
    if m['forward_dev'] and not ifaces and mode not in ('hostdev',) and not m['forward_pf']:
        ifaces = [m['forward_dev']]
    if ifaces and not m['forward_dev'] and mode in ('bridge', 'private', 'vepa', 'passthrough'):
        m['forward_dev'] = ifaces[0]
    m['forward_interfaces'] = ifaces or None
    for key, default in (('ipv6', False), ('trust_guest_rx_filters', False), ('port_isolated', None)):
        if m[key] is None:
            m[key] = default
    nat = dict(m['nat'] or {})
    if nat.get('port_start') == 1024 and nat.get('port_end') == 65535:
        nat.pop('port_start')
        nat.pop('port_end')
    if nat.get('ipv6') is False:
        nat.pop('ipv6')
    if nat.get('address_start'):
        nat['address_start'] = norm_ip(nat['address_start'], 'nat address start')
        nat['address_end'] = norm_ip(nat.get('address_end') or nat['address_start'], 'nat address end')
    m['nat'] = _drop_none(nat) or None
    if mode != 'nat':
        m['nat'] = None
    br = dict(m['bridge'] or {})
    if mode in MANAGED_BRIDGE_MODES:
        if br.get('stp') is None:
            br['stp'] = True
        if br.get('delay') is None:
            br['delay'] = 0
    m['bridge'] = _drop_none(br) or None
    dom = dict(m['domain'] or {})
    for k in ('local_only', 'register'):
        if dom.get(k) is False:
            dom.pop(k)
    m['domain'] = _drop_none(dom) or None
    m['dns'] = _canon_dns(m['dns'])
    m['ips'] = [_canon_ip(ip) for ip in m['ips'] or []] or None
    m['routes'] = sorted((_canon_route(r) for r in m['routes'] or []), key=_sort_key) or None
    m['portgroups'] = sorted((_canon_portgroup(pg) for pg in m['portgroups'] or []),
                             key=lambda p: p.get('name') or '') or None
    m['virtualport'] = norm_virtualport(m['virtualport']) or None
    m['bandwidth'] = norm_bandwidth(m['bandwidth']) or None
    m['vlan'] = _canon_generic(m['vlan'])
    if m['dnsmasq_options'] == []:
        m['dnsmasq_options'] = None
    if m['extra_xml'] == []:
        m['extra_xml'] = None
    if m['metadata'] is not None and not m['metadata'].strip():
        m['metadata'] = None
    if declared is not None:
        if not declared.get('mac'):
            m['mac'] = None
        dbr = declared.get('bridge') or {}
        if m['bridge'] and not dbr.get('name'):
            m['bridge'].pop('name', None)
            m['bridge'] = m['bridge'] or None
    return m


def _sort_key(item):
    return repr(sorted(item.items())) if isinstance(item, dict) else repr(item)


def _canon_generic(value):
    if isinstance(value, dict):
        out = dict((k, _canon_generic(v)) for k, v in value.items() if v is not None)
        return out or None
    if isinstance(value, list):
        return [_canon_generic(v) for v in value]
    return value


def _canon_lease(item):
    if item.get('lease_unit') is None and item.get('lease_expiry') is not None:
        item['lease_unit'] = 'minutes'
    return item


def ip_prefix(ip):
    """The prefix of an ``ips`` entry: ``prefix``, else ``netmask``, else libvirt's default when neither is
    given (classful for IPv4: 8, 16 or 24 by the first octet; 64 for IPv6). The one place that computes it."""
    if ip.get('prefix') is not None:
        return ip['prefix']
    if ip.get('netmask'):
        return netmask_to_prefix(ip['netmask'])
    addr = ip.get('address')
    if (ip.get('family') or family_of(addr)) == 'ipv4':
        first = ip_to_int(addr)[1] >> 24
        return 8 if first < 128 else (16 if first < 192 else 24)
    return 64


def _canon_ip(ip):
    ip = _canon_generic(dict(ip)) or {}
    addr = ip.get('address')
    fam = ip.get('family') or family_of(addr)
    ip['family'] = fam
    ip['address'] = norm_ip(addr, 'ip address')
    ip['prefix'] = ip_prefix(ip)
    ip.pop('netmask', None)
    ranges = []
    for rng in ip.get('ranges') or []:
        rng = _canon_lease(dict(rng))
        rng['start'] = norm_ip(rng.get('start'), 'dhcp range start')
        rng['end'] = norm_ip(rng.get('end'), 'dhcp range end')
        ranges.append(rng)
    hosts = []
    for host in ip.get('hosts') or []:
        host = _canon_lease(dict(host))
        if host.get('mac'):
            host['mac'] = norm_mac(host['mac'], 'dhcp host')
        if host.get('ip'):
            host['ip'] = norm_ip(host['ip'], 'dhcp host ip')
        hosts.append(host)
    ip['ranges'] = sorted(ranges, key=_sort_key)
    ip['hosts'] = sorted(hosts, key=_sort_key)
    dhcp = bool(ip.get('dhcp') or ranges or hosts or ip.get('bootp_file'))
    ip['dhcp'] = dhcp
    if not dhcp:
        ip.pop('ranges')
        ip.pop('hosts')
    if ip.get('local_ptr') is False:
        ip.pop('local_ptr')
    return ip


def _canon_route(rt):
    rt = _canon_generic(dict(rt)) or {}
    rt['family'] = rt.get('family') or family_of(rt.get('address'))
    rt['address'] = norm_ip(rt.get('address'), 'route address')
    rt['gateway'] = norm_ip(rt.get('gateway'), 'route gateway')
    if rt.get('prefix') is None and rt.get('netmask'):
        rt['prefix'] = netmask_to_prefix(rt['netmask'])
    rt.pop('netmask', None)
    return rt


def _canon_dns(dns):
    if dns is None:
        return None
    dns = _canon_generic(dict(dns)) or {}
    for key in ('enable', 'forward_plain_names'):
        if dns.get(key) is True:
            dns.pop(key)
    dns['forwarders'] = [_canon_generic(f) for f in dns.get('forwarders') or []]
    hosts = []
    for host in dns.get('hosts') or []:
        hosts.append({'ip': norm_ip(host.get('ip'), 'dns host ip'),
                      'hostnames': list(host.get('hostnames') or [])})
    dns['hosts'] = sorted(hosts, key=_sort_key)
    dns['txt'] = sorted((_canon_generic(t) for t in dns.get('txt') or []), key=_sort_key)
    dns['srv'] = sorted((_canon_generic(s) for s in dns.get('srv') or []), key=_sort_key)
    dns = dict((k, v) for k, v in dns.items() if v not in ([], None))
    return dns or None


def _canon_portgroup(pg):
    pg = _canon_generic(dict(pg)) or {}
    for key, norm in (('virtualport', norm_virtualport), ('bandwidth', norm_bandwidth)):
        if pg.get(key) is not None:
            pg[key] = norm(pg[key]) or None
            if pg[key] is None:
                pg.pop(key)
    if pg.get('default') is False:
        pg.pop('default')
    if pg.get('trust_guest_rx_filters') is False:
        pg.pop('trust_guest_rx_filters')
    return pg


def validate(model):
    """Check a desired model on its own (no host state). Raise ModelError with a clear message."""
    m = model
    if not m.get('name'):
        raise ModelError('a network needs a name (option name or <name> in xml)')
    check_network_name(m['name'])
    mode = m.get('forward') or 'nat'
    if mode not in FORWARD_MODES:
        raise ModelError('unknown forward mode %r (one of %s)' % (mode, ', '.join(FORWARD_MODES)))
    br = m.get('bridge') or {}
    if br.get('name') is not None:
        check_ifname(br['name'], 'bridge.name')
    if mode in POOL_MODES and br.get('name'):
        raise ModelError("forward mode %r uses a pool of host devices, not a bridge: "
                         "use forward_dev/forward_interfaces instead of bridge.name" % mode)
    if m.get('mac'):
        norm_mac(m['mac'], 'network mac')
    if m.get('forward_dev'):
        check_ifname(m['forward_dev'], 'forward_dev')
    for i, dev in enumerate(m.get('forward_interfaces') or []):
        check_ifname(dev, 'forward_interfaces[%d]' % i)
    nat = m.get('nat') or {}
    for k in ('address_start', 'address_end'):
        if nat.get(k):
            norm_ip(nat[k], 'nat %s' % k)
    if nat.get('port_start') is not None and nat.get('port_end') is not None:
        if not (0 < nat['port_start'] <= nat['port_end'] <= 65535):
            raise ModelError('invalid nat port range %s-%s' % (nat['port_start'], nat['port_end']))
    for i, ip in enumerate(m.get('ips') or []):
        _validate_ip(ip, 'ips[%d]' % i)
    for rt in m.get('routes') or []:
        norm_ip(rt.get('address'), 'route address')
        norm_ip(rt.get('gateway'), 'route gateway')
    for host in (m.get('dns') or {}).get('hosts') or []:
        norm_ip(host.get('ip'), 'dns host ip')
    for fwd in (m.get('dns') or {}).get('forwarders') or []:
        if fwd.get('addr'):
            norm_ip(fwd['addr'], 'dns forwarder addr')
    names = [pg.get('name') for pg in m.get('portgroups') or []]
    if len(set(names)) != len(names):
        raise ModelError('duplicate portgroup names: %s' % ', '.join(sorted(names)))
    return True


def check_ifname(name, option):
    """A Linux interface name as the kernel's dev_valid_name() checks it; ModelError naming ``option``."""
    text = to_text(name)
    size = len(text.encode('utf-8'))
    if not 0 < size <= MAX_IFNAME:
        raise ModelError('%s %r: an interface name has 1 to %d bytes, this one has %d; pick a shorter name '
                         '(e.g. virbr10)' % (option, name, MAX_IFNAME, size))
    if text in ('.', '..') or any(c in text for c in '/:') or any(c.isspace() for c in text):
        raise ModelError('%s %r: the kernel refuses "." and "..", and names with "/", ":" or whitespace; '
                         'use letters, digits, "-" or "_" (e.g. virbr10)' % (option, name))
    return True


def check_network_name(name):
    text = to_text(name)
    if '/' in text or any(ord(c) < 32 for c in text) or text.strip() != text:
        raise ModelError('name %r: a libvirt network name cannot contain "/", control characters, or leading or '
                         'trailing whitespace; use letters, digits, "-", "_" or "."' % (name,))
    return True


_DNS_LABEL = re.compile(r'^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$')


def check_hostname(name, option):
    """A DHCP host name goes into dnsmasq's host file: one or more DNS labels, nothing else."""
    text = to_text(name)
    labels = text.split('.')
    if len(text) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise ModelError('%s %r is not a DNS host name (labels of letters, digits and "-", 1-63 characters each, '
                         'separated by dots); it goes into dnsmasq\'s host file' % (option, name))
    return True


def _validate_ip(ip, where='ips[0]'):
    addr = ip.get('address')
    if not addr:
        raise ModelError('every entry of ips needs an address')
    norm_ip(addr, '%s.address' % where)
    fam = ip.get('family') or family_of(addr)
    if fam != family_of(addr):
        raise ModelError('ip address %s is not %s' % (addr, fam))
    prefix = ip_prefix(ip)
    if not 0 < prefix <= (32 if fam == 'ipv4' else 128):
        raise ModelError('invalid prefix %s for %s' % (prefix, addr))
    if fam == 'ipv4' and prefix < 31:
        dummy, value = ip_to_int(addr)
        dummy, first, last = network_of(addr, prefix)
        if value in (first, last):
            what = 'network' if value == first else 'broadcast'
            raise ModelError('%s.address %s is the %s address of %s/%s: the bridge needs a host address of the '
                             'subnet, such as %s' % (where, addr, what, int_to_ip(fam, first), prefix,
                                                     int_to_ip(fam, first + 1)))
    for rng in ip.get('ranges') or []:
        for end in ('start', 'end'):
            value = rng.get(end)
            norm_ip(value, 'dhcp range %s' % end)
            if not in_subnet(value, addr, prefix):
                raise ModelError('DHCP range %s-%s is outside the subnet %s/%s'
                                 % (rng.get('start'), rng.get('end'), addr, prefix))
        if ip_to_int(rng['start'])[1] > ip_to_int(rng['end'])[1]:
            raise ModelError('DHCP range %s-%s: start is after end' % (rng['start'], rng['end']))
    seen = set()
    for i, host in enumerate(ip.get('hosts') or []):
        opt = '%s.hosts[%d]' % (where, i)
        if host.get('mac'):
            mac = norm_mac(host['mac'], '%s.mac' % opt)
            if int(mac.split(':', 1)[0], 16) & 1:
                raise ModelError('%s.mac %s is a multicast address (lowest bit of the first byte set); a guest NIC '
                                 'has a unicast MAC, e.g. 52:54:00:xx:xx:xx' % (opt, host['mac']))
            if mac in seen:
                raise ModelError('duplicate DHCP host MAC %s' % mac)
            seen.add(mac)
        if host.get('name') is not None:
            check_hostname(host['name'], '%s.name' % opt)
        if host.get('ip'):
            norm_ip(host['ip'], 'dhcp host ip')
            if not in_subnet(host['ip'], addr, prefix):
                raise ModelError('DHCP host ip %s is outside the subnet %s/%s' % (host['ip'], addr, prefix))


def subnets(model):
    """[(family, first, last, 'a.b.c.d/p')] of the model's ips."""
    out = []
    for ip in model.get('ips') or []:
        c = _canon_ip(ip)
        fam, first, last = network_of(c['address'], c['prefix'])
        out.append((fam, first, last, '%s/%s' % (c['address'], c['prefix'])))
    return out


def merge_generated(desired, current):
    """Desired model plus the values libvirt generated for the current one (uuid, mac, bridge
    name), so that a redefine keeps them stable."""
    m = copy.deepcopy(desired)
    if current:
        m['uuid'] = current.get('uuid')
        if not m.get('mac') and current.get('mac') and (m.get('forward') or 'nat') in MANAGED_BRIDGE_MODES:
            m['mac'] = current['mac']
        cbr = current.get('bridge') or {}
        if cbr.get('name') and (m.get('forward') or 'nat') in MANAGED_BRIDGE_MODES:
            br = dict(m.get('bridge') or {})
            if not br.get('name'):
                br['name'] = cbr['name']
                m['bridge'] = br
    return m


def public_model(model):
    """The model as returned to users (and accepted as input): no None values at top level."""
    return dict((k, v) for k, v in model.items() if v is not None and k in MODEL_KEYS)
