# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Guest interface model (PRIVATE: not a public API of this collection).

One model describes a domain ``<interface>`` both ways: ``params -> model -> XML`` to build,
``XML -> model`` to read what libvirt has. ``guest_interface`` and ``network_info`` both use it,
so the names below are stable within the collection::

    from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._interface import (
        interface_from_xml, interface_to_xml, domain_interfaces, interface_differences)

    model = interface_from_xml(elem)      # lxml <interface> element (or XML text) -> dict
    elem = interface_to_xml(model)        # dict -> new lxml <interface> element
    elem = interface_to_xml(model, base=existing_elem)   # copy of existing, changed keys only
    models = domain_interfaces(domain_xml)   # every <interface> of a domain, as models

The model is a flat dict whose keys are the ``guest_interface`` options (so a model returned by
``network_info`` or ``guest_interface`` can be fed back as input). Keys (``None`` = not set):

``type``        ``network`` | ``bridge`` | ``direct`` | ``vhostuser`` (others are read as-is)
``source``      network name (network), host bridge (bridge), host device (direct); ``None``
                for vhostuser
``portgroup``   network portgroup (type network)
``path``        unix socket path (vhostuser)
``mode``        macvtap mode ``bridge|vepa|private|passthrough`` (direct) or
                ``server|client`` (vhostuser)
``reconnect``   vhostuser client reconnect timeout in seconds (int)
``queues``      ``<driver queues=N>`` (int)
``virtualport`` ``{'type': 'openvswitch', 'interfaceid': str|None, 'profileid': str|None}``
``mac``         lower-case ``xx:xx:xx:xx:xx:xx``
``model``       NIC model (``virtio`` ...)
``target_dev``  ``<target dev=>``: host-side device name; names libvirt generates (vnetN,
                macvtapN, ...) are read from live XML but ignored when building and comparing
``mtu``         int
``link_state``  ``up`` | ``down``
``boot_order``  int
``filterref``   ``{'filter': name, 'parameters': {NAME: value or [values]}}``
``bandwidth``   ``{'inbound': {'average','peak','burst','floor'}, 'outbound': {...}}`` (ints)

Read-only keys filled by ``interface_from_xml`` only: ``alias`` (``net0``...), ``address``
(``{'type': 'pci', 'bus': ...}``) and ``host_bridge`` (the bridge a type network or bridge
interface is plugged into, from the live XML; ``None`` otherwise); they are ignored by
comparison and building.

For ``network_info`` and the restart of a network: ``domain_interfaces(domain_xml)`` lists the
models of a domain's interfaces (``_host.HostView.running_guest_ports`` picks those on a network).

Canonical comparison: ``interface_differences(desired, current)`` returns the list of
``{'key', 'before', 'after'}`` for each key set in ``desired`` that differs (after
normalisation) from ``current`` (empty when it matches). Validation of
user input: ``validate_interface(model)`` raises ``InterfaceModelError`` with a message meant
for the user. ``normalize_mac`` parses and canonicalises a MAC address.

lxml is required on the target; this file imports without libvirt-python.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import os
import random
import re

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._port import (
    bandwidth_element, bandwidth_from_xml, norm_bandwidth, norm_virtualport, virtualport_element,
    virtualport_from_xml)
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._xml import (
    ModelError, etree, norm_mac, string_types, to_int,
)


INTERFACE_TYPES = ('network', 'bridge', 'direct', 'vhostuser')
DIRECT_MODES = ('bridge', 'vepa', 'private', 'passthrough')
VHOSTUSER_MODES = ('server', 'client')
MODES_BY_TYPE = {
    'direct': DIRECT_MODES,
    'vhostuser': VHOSTUSER_MODES,
}
LINK_STATES = ('up', 'down')
VIRTUALPORT_TYPES = ('openvswitch',)
DEFAULT_MODEL = 'virtio'

# Keys that describe an interface (what the module takes and compares).
INTERFACE_KEYS = ('type', 'source', 'portgroup', 'path', 'mode', 'reconnect', 'queues',
                  'virtualport', 'mac', 'model', 'target_dev', 'mtu', 'link_state',
                  'boot_order', 'filterref', 'bandwidth')
# Keys filled when reading only.
READONLY_KEYS = ('alias', 'address', 'host_bridge')

# Host-side device names libvirt generates (and drops again from the inactive XML).
AUTO_TARGET_RE = re.compile(r'^(vnet|macvtap|macvlan|vif)\d+$')


class InterfaceModelError(ModelError):
    """Invalid interface description; the message is meant for the user."""


# --------------------------------------------------------------------------- normalisation

def normalize_mac(mac):
    """Return ``mac`` as lower-case ``xx:xx:xx:xx:xx:xx``; raise InterfaceModelError if malformed.

    Multicast addresses (lowest bit of the first octet set) are refused like libvirt does.
    """
    if mac is None:
        return None
    try:
        text = norm_mac(mac)
    except ModelError:
        raise InterfaceModelError(
            "malformed MAC address %r: expected six hex octets separated by ':', "
            "for example 52:54:00:12:34:56" % (mac,))
    if int(text[:2], 16) & 1:
        raise InterfaceModelError(
            "MAC address %s is a multicast address; a guest interface needs a unicast MAC "
            "(the first octet must be even, e.g. 52:54:00:...)" % text)
    return text


def random_mac(taken=()):
    """A random MAC in the 52:54:00 (QEMU/KVM) range, not in ``taken``."""
    taken = set(taken or ())
    while True:
        mac = '52:54:00:%02x:%02x:%02x' % (random.randint(0, 255), random.randint(0, 255),
                                           random.randint(0, 255))
        if mac not in taken:
            return mac


def _norm_param_value(value):
    if isinstance(value, (list, tuple)):
        vals = [str(v) for v in value]
        return vals[0] if len(vals) == 1 else sorted(vals)
    return str(value)


def _norm_filterref(fref):
    if not fref:
        return None
    if isinstance(fref, string_types):
        fref = {'filter': fref}
    name = fref.get('filter') or fref.get('name')
    if not name:
        raise InterfaceModelError('filterref needs a filter name (filterref.filter)')
    params = fref.get('parameters') or {}
    return {'filter': str(name),
            'parameters': dict((str(k), _norm_param_value(v)) for k, v in params.items())}


def _norm_virtualport(vport):
    """The virtualport of _port.py, with the keys of this module's option always there (type defaults to openvswitch)."""
    vport = norm_virtualport(vport)
    if not vport:
        return None
    return dict({'type': 'openvswitch', 'interfaceid': None, 'profileid': None}, **vport)


def canonical_interface(model):
    """Return a normalised copy of ``model`` with every key of INTERFACE_KEYS present.

    MAC lower-cased, ints as ints, empty bandwidth as {}, filterref/virtualport dicts complete.
    Raises InterfaceModelError for values that cannot be normalised.
    """
    model = model or {}
    out = {}
    for key in INTERFACE_KEYS:
        out[key] = model.get(key)
    out['mac'] = normalize_mac(out['mac'])
    for key in ('reconnect', 'queues', 'mtu', 'boot_order'):
        out[key] = to_int(out[key], key)
    out['bandwidth'] = norm_bandwidth(out['bandwidth'])
    out['filterref'] = _norm_filterref(out['filterref'])
    out['virtualport'] = _norm_virtualport(out['virtualport'])
    for key in READONLY_KEYS:
        if key in model:
            out[key] = model[key]
    return out


# --------------------------------------------------------------------------- validation

def validate_interface(model):
    """Check a (partial) desired model; raise InterfaceModelError with a clear message.

    Checks the type, that ``mode`` is one the type takes, that type-specific options are not
    given to another type, that a vhostuser socket path is absolute, and value ranges.
    """
    itype = model.get('type')
    if itype not in INTERFACE_TYPES:
        raise InterfaceModelError('unsupported interface type %r (supported: %s)'
                                  % (itype, ', '.join(INTERFACE_TYPES)))
    mode = model.get('mode')
    if mode is not None:
        allowed = MODES_BY_TYPE.get(itype)
        if not allowed:
            raise InterfaceModelError(
                "mode %r is not valid for an interface of type %s: only type direct "
                "(%s) and type vhostuser (%s) take a mode"
                % (mode, itype, '|'.join(DIRECT_MODES), '|'.join(VHOSTUSER_MODES)))
        if mode not in allowed:
            raise InterfaceModelError('mode %r is not valid for type %s (valid: %s)'
                                      % (mode, itype, ', '.join(allowed)))
    if itype == 'vhostuser':
        path = model.get('path')
        if not path:
            raise InterfaceModelError('type vhostuser needs path (the unix socket)')
        if not os.path.isabs(path):
            raise InterfaceModelError('vhostuser socket path %r is not absolute' % (path,))
        if model.get('source'):
            raise InterfaceModelError('type vhostuser takes path, not source')
        if mode is None:
            raise InterfaceModelError('type vhostuser needs mode (server: QEMU creates the socket, '
                                      'client: QEMU connects to it)')
        if model.get('reconnect') is not None and mode != 'client':
            raise InterfaceModelError('reconnect is only valid with vhostuser mode client')
    else:
        if model.get('path'):
            raise InterfaceModelError('path is only valid for type vhostuser, not %s' % itype)
        if model.get('reconnect') is not None:
            raise InterfaceModelError('reconnect is only valid for type vhostuser')
        if not model.get('source'):
            what = {'network': 'the libvirt network name', 'bridge': 'the host bridge name',
                    'direct': 'the host device for the macvtap'}[itype]
            raise InterfaceModelError('type %s needs source (%s)' % (itype, what))
    if model.get('portgroup') and itype != 'network':
        raise InterfaceModelError('portgroup is only valid for type network, not %s' % itype)
    vport = model.get('virtualport')
    if vport:
        vport = _norm_virtualport(vport)
        if itype not in ('bridge', 'network'):
            raise InterfaceModelError('virtualport is only valid for types bridge and network')
        if vport['type'] not in VIRTUALPORT_TYPES:
            raise InterfaceModelError('virtualport type %r is not supported (supported: %s)'
                                      % (vport['type'], ', '.join(VIRTUALPORT_TYPES)))
    if model.get('link_state') is not None and model['link_state'] not in LINK_STATES:
        raise InterfaceModelError('link_state must be up or down')
    for key, low, high in (('mtu', 68, 65535), ('queues', 1, 256), ('boot_order', 1, None),
                           ('reconnect', 1, None)):
        val = to_int(model.get(key), key)
        if val is not None and (val < low or (high is not None and val > high)):
            raise InterfaceModelError('%s must be %s, got %d' % (
                key, 'between %d and %d' % (low, high) if high else 'at least %d' % low, val))
    target = model.get('target_dev')
    if target is not None and (len(target) > 15 or not re.match(r'^[^\s/:]+$', target)):
        raise InterfaceModelError('target_dev %r is not a valid host device name' % target)
    return canonical_interface(model)


def validate_identity(model):
    """Check what identifies an interface without a MAC: type plus source (vhostuser: path)."""
    itype = model.get('type')
    if itype not in INTERFACE_TYPES:
        raise InterfaceModelError('unsupported interface type %r (supported: %s)'
                                  % (itype, ', '.join(INTERFACE_TYPES)))
    if itype == 'vhostuser':
        if not model.get('path'):
            raise InterfaceModelError('type vhostuser needs path (the unix socket) or mac')
        if not os.path.isabs(model['path']):
            raise InterfaceModelError('vhostuser socket path %r is not absolute' % (model['path'],))
    elif not model.get('source'):
        raise InterfaceModelError('type %s needs source or mac to identify the interface' % itype)


# --------------------------------------------------------------------------- XML -> model

def _parse(elem):
    if isinstance(elem, string_types) or isinstance(elem, bytes):
        if isinstance(elem, bytes):
            return etree.fromstring(elem)
        return etree.fromstring(elem.encode('utf-8'))
    return elem


def interface_from_xml(elem):
    """Read one ``<interface>`` (lxml element or XML text) into a model dict."""
    elem = _parse(elem)
    model = dict((key, None) for key in INTERFACE_KEYS)
    model['bandwidth'] = {}
    itype = elem.get('type')
    model['type'] = itype
    src = elem.find('source')
    if src is not None:
        if itype == 'network':
            model['source'] = src.get('network')
            model['portgroup'] = src.get('portgroup')
        elif itype == 'bridge':
            model['source'] = src.get('bridge')
        elif itype == 'direct':
            model['source'] = src.get('dev')
            model['mode'] = src.get('mode') or 'vepa'
        elif itype == 'vhostuser':
            model['path'] = src.get('path')
            model['mode'] = src.get('mode')
            rec = src.find('reconnect')
            if rec is not None and rec.get('enabled') == 'yes':
                model['reconnect'] = to_int(rec.get('timeout'), 'reconnect') or None
        else:
            model['source'] = (src.get('network') or src.get('bridge') or src.get('dev')
                               or src.get('path'))
    vport = elem.find('virtualport')
    if vport is not None:
        model['virtualport'] = dict({'type': None, 'interfaceid': None, 'profileid': None},
                                    **virtualport_from_xml(vport))
    mac = elem.find('mac')
    if mac is not None and mac.get('address'):
        model['mac'] = mac.get('address').lower()
    mdl = elem.find('model')
    if mdl is not None:
        model['model'] = mdl.get('type')
    tgt = elem.find('target')
    if tgt is not None:
        model['target_dev'] = tgt.get('dev')
    drv = elem.find('driver')
    if drv is not None and drv.get('queues'):
        model['queues'] = to_int(drv.get('queues'), 'queues')
    mtu = elem.find('mtu')
    if mtu is not None:
        model['mtu'] = to_int(mtu.get('size'), 'mtu')
    link = elem.find('link')
    if link is not None:
        model['link_state'] = link.get('state')
    boot = elem.find('boot')
    if boot is not None:
        model['boot_order'] = to_int(boot.get('order'), 'boot_order')
    fref = elem.find('filterref')
    if fref is not None:
        params = {}
        for par in fref.findall('parameter'):
            name, value = par.get('name'), par.get('value')
            if name in params:
                prev = params[name]
                params[name] = (prev if isinstance(prev, list) else [prev]) + [value]
            else:
                params[name] = value
        model['filterref'] = _norm_filterref({'filter': fref.get('filter'), 'parameters': params})
    bw = elem.find('bandwidth')
    if bw is not None:
        model['bandwidth'] = bandwidth_from_xml(bw)
    model['host_bridge'] = None
    if src is not None and itype in ('network', 'bridge'):
        model['host_bridge'] = src.get('bridge')
    alias = elem.find('alias')
    model['alias'] = alias.get('name') if alias is not None else None
    addr = elem.find('address')
    model['address'] = dict(addr.attrib) if addr is not None else None
    return model


def domain_interfaces(domain_xml):
    """All ``<interface>`` of a domain (lxml root or XML text) as models, in document order."""
    root = _parse(domain_xml)
    return [interface_from_xml(e) for e in root.findall('./devices/interface')]


# --------------------------------------------------------------------------- model -> XML

def _child(parent, tag, before=()):
    """Return parent's first ``tag`` child, creating it (placed before ``before`` tags)."""
    found = parent.find(tag)
    if found is not None:
        return found
    new = etree.Element(tag)
    for idx, existing in enumerate(parent):
        if existing.tag in before:
            parent.insert(idx, new)
            return new
    parent.append(new)
    return new


def _drop(parent, tag):
    for e in parent.findall(tag):
        parent.remove(e)


def _set_simple(elem, tag, attr, value):
    if value is None:
        _drop(elem, tag)
    else:
        _child(elem, tag).set(attr, str(value))


def interface_to_xml(model, base=None, keys=None):
    """Build an ``<interface>`` element from ``model``.

    With ``base`` (an existing ``<interface>`` element), a deep copy of it is changed: only the
    keys in ``keys`` (default: every key set, i.e. not None, in ``model``) are applied, so what
    the model does not know (PCI address, rom, alias, ...) is kept. Without ``base`` a new
    element is built from every key set in ``model``; ``model`` defaults to ``virtio`` there.
    """
    if base is None:
        elem = etree.Element('interface')
        model = dict(model)
        if model.get('model') is None:
            model['model'] = DEFAULT_MODEL
        apply_keys = [k for k in INTERFACE_KEYS if model.get(k) not in (None, {}, [])]
    else:
        elem = copy.deepcopy(base)
        if keys is None:
            keys = [k for k in INTERFACE_KEYS if model.get(k) is not None]
        apply_keys = list(keys)
    itype = model.get('type') if 'type' in apply_keys else elem.get('type')
    if itype is None:
        raise InterfaceModelError('interface type is required')
    old_type = elem.get('type')
    elem.set('type', itype)
    if old_type != itype:
        # A type change replaces the source (and type-bound children) entirely.
        _drop(elem, 'source')
        if itype not in ('bridge', 'network'):
            _drop(elem, 'virtualport')
        # The old type's source values do not carry over.
        apply_keys = list(set(apply_keys) | set(['source', 'portgroup', 'path', 'mode', 'reconnect']))
    if 'mac' in apply_keys:
        _set_simple(elem, 'mac', 'address', normalize_mac(model.get('mac')))
    if set(apply_keys) & set(['source', 'portgroup', 'path', 'mode', 'reconnect']):
        src = _child(elem, 'source')
        cur = dict(src.attrib)
        src.attrib.clear()
        _drop(src, 'reconnect')

        def pick(key, attr):
            if key in apply_keys:
                return model.get(key)
            return cur.get(attr)

        if itype == 'network':
            attrs = [('network', pick('source', 'network')), ('portgroup', pick('portgroup', 'portgroup'))]
        elif itype == 'bridge':
            attrs = [('bridge', pick('source', 'bridge'))]
        elif itype == 'direct':
            attrs = [('dev', pick('source', 'dev')), ('mode', pick('mode', 'mode'))]
        elif itype == 'vhostuser':
            attrs = [('type', 'unix'), ('path', pick('path', 'path')), ('mode', pick('mode', 'mode'))]
        else:
            attrs = list(cur.items())
        for name, value in attrs:
            if value is not None:
                src.set(name, str(value))
        if itype == 'vhostuser':
            timeout = model.get('reconnect') if 'reconnect' in apply_keys else None
            if timeout is not None:
                etree.SubElement(src, 'reconnect', enabled='yes', timeout=str(int(timeout)))
    if 'virtualport' in apply_keys:
        _drop(elem, 'virtualport')
        vport = _norm_virtualport(model.get('virtualport'))
        if vport:
            src = elem.find('source')
            elem.insert(elem.index(src) + 1 if src is not None else len(elem), virtualport_element(vport))
    if 'target_dev' in apply_keys:
        target = model.get('target_dev')
        if target and AUTO_TARGET_RE.match(target):
            target = None  # generated by libvirt (e.g. read back from a running domain)
        _set_simple(elem, 'target', 'dev', target)
    if 'model' in apply_keys:
        _set_simple(elem, 'model', 'type', model.get('model'))
    if 'queues' in apply_keys:
        queues = model.get('queues')
        drv = elem.find('driver')
        if queues is None:
            if drv is not None:
                drv.attrib.pop('queues', None)
                if not drv.attrib and len(drv) == 0:
                    elem.remove(drv)
        else:
            _child(elem, 'driver').set('queues', str(int(queues)))
    if 'mtu' in apply_keys:
        _set_simple(elem, 'mtu', 'size', model.get('mtu'))
    if 'link_state' in apply_keys:
        _set_simple(elem, 'link', 'state', model.get('link_state'))
    if 'boot_order' in apply_keys:
        _set_simple(elem, 'boot', 'order', model.get('boot_order'))
    if 'filterref' in apply_keys:
        _drop(elem, 'filterref')
        fref = _norm_filterref(model.get('filterref'))
        if fref:
            fe = etree.SubElement(elem, 'filterref', filter=fref['filter'])
            for name in sorted(fref['parameters']):
                values = fref['parameters'][name]
                for value in (values if isinstance(values, list) else [values]):
                    etree.SubElement(fe, 'parameter', name=name, value=value)
    if 'bandwidth' in apply_keys:
        _drop(elem, 'bandwidth')
        bw = norm_bandwidth(model.get('bandwidth'))
        if bw:
            elem.append(bandwidth_element(bw))
    return elem


def interface_to_string(elem):
    """Pretty XML text of an element (for diffs and libvirt calls)."""
    text = etree.tostring(elem, pretty_print=True)
    if not isinstance(text, str):
        text = text.decode('utf-8')
    return text


def reindent(elem):
    """Return a copy of ``elem`` with whitespace-only text removed, so pretty printing works."""
    elem = copy.deepcopy(elem)
    for e in elem.iter():
        if e.text is not None and not e.text.strip():
            e.text = None
        if e.tail is not None and not e.tail.strip():
            e.tail = None
    return elem


# --------------------------------------------------------------------------- comparison

def _comparable(model, key):
    value = model.get(key)
    if key == 'bandwidth':
        return norm_bandwidth(value)
    if key == 'filterref':
        return _norm_filterref(value)
    if key == 'virtualport':
        vport = _norm_virtualport(value)
        return vport
    if key == 'mac':
        return normalize_mac(value)
    if key in ('reconnect', 'queues', 'mtu', 'boot_order'):
        return to_int(value, key)
    return value


def interface_differences(desired, current, keys=None):
    """List of ``{'key', 'before', 'after'}`` where ``current`` differs from ``desired``.

    Only keys set (not None) in ``desired`` are compared, unless ``keys`` names them; a
    ``bandwidth`` of ``{}`` means "no bandwidth limits" and is compared. Values are normalised
    first (MAC case, ints, bandwidth, filterref parameter order). A virtualport given without
    ``interfaceid`` matches any interfaceid libvirt generated.
    """
    diffs = []
    if keys is None:
        keys = [k for k in INTERFACE_KEYS if desired.get(k) is not None]
    for key in keys:
        want = _comparable(desired, key)
        have = _comparable(current, key)
        if key == 'virtualport' and want and have:
            want = dict(want)
            for sub in ('interfaceid', 'profileid'):
                if want.get(sub) is None:
                    want[sub] = have.get(sub)
        if key == 'mode' and want is None:
            continue
        if key == 'target_dev' and want and AUTO_TARGET_RE.match(want):
            continue  # a name libvirt generated (vnetN, macvtapN): not part of the config
        if want != have:
            diffs.append({'key': key, 'before': have, 'after': want})
    return diffs


def interface_identity(model):
    """Human label of an interface: ``type source`` plus the MAC when known."""
    what = model.get('path') if model.get('type') == 'vhostuser' else model.get('source')
    label = '%s %s' % (model.get('type'), what)
    if model.get('mac'):
        label += ' (mac %s)' % model['mac']
    return label


def same_source(desired, current):
    """True when ``current`` has the type and source (vhostuser: socket path) of ``desired``."""
    if desired.get('type') != current.get('type'):
        return False
    if desired.get('type') == 'vhostuser':
        return desired.get('path') == current.get('path')
    return desired.get('source') == current.get('source')


def find_interface_elements(domain_root, desired):
    """``[(element, model)]`` of the domain's interfaces that ``desired`` identifies.

    By MAC when ``desired['mac']`` is set, otherwise by type + source.
    """
    found = []
    mac = normalize_mac(desired.get('mac')) if desired.get('mac') else None
    for elem in domain_root.findall('./devices/interface'):
        current = interface_from_xml(elem)
        if mac is not None:
            if current.get('mac') == mac:
                found.append((elem, current))
        elif same_source(desired, current):
            found.append((elem, current))
    return found
