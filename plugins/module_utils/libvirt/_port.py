# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Port settings that networks, portgroups and guest interfaces share (PRIVATE: not a public API).

One shape per concept, one XML reader and writer each, used by ``_network.py`` (network and
portgroup) and ``_interface.py`` (guest interface):

``virtualport`` ``{'type': str, 'interfaceid': str, 'profileid': str, ...}``: the type and the
                attributes of ``<parameters>`` side by side (VIRTUALPORT_PARAMETERS); only those set.
                ``{'type': ..., 'parameters': {...}}`` (the network module's older form) is read
                as the same thing.
``bandwidth``   ``{'inbound': {'average', 'peak', 'burst', 'floor'}, 'outbound': {...}}``: ints,
                only the directions and fields set; ``{}`` when none.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._xml import ModelError, etree, string_types, to_int

VIRTUALPORT_PARAMETERS = ('interfaceid', 'profileid', 'managerid', 'typeid', 'typeidversion', 'instanceid')
BANDWIDTH_DIRECTIONS = ('inbound', 'outbound')
BANDWIDTH_FIELDS = ('average', 'peak', 'burst', 'floor')


def norm_virtualport(vport):
    """The canonical virtualport (see the module docstring), or None."""
    if not vport:
        return None
    if isinstance(vport, string_types):
        vport = {'type': vport}
    flat = dict(vport.get('parameters') or {})
    flat.update((k, v) for k, v in vport.items() if k != 'parameters' and v is not None)
    unknown = sorted(set(flat) - set(VIRTUALPORT_PARAMETERS) - set(['type']))
    if unknown:
        raise ModelError('virtualport: unknown key(s) %s (known: type, %s)'
                         % (', '.join(unknown), ', '.join(VIRTUALPORT_PARAMETERS)))
    return dict((k, '%s' % v) for k, v in flat.items() if v is not None and v != '')


def virtualport_from_xml(elem):
    params = elem.find('parameters')
    vport = dict(params.attrib) if params is not None else {}
    if elem.get('type'):
        vport['type'] = elem.get('type')
    return norm_virtualport(vport) or {}


def virtualport_element(vport):
    """``<virtualport type=...><parameters .../></virtualport>`` for a virtualport model."""
    vport = norm_virtualport(vport) or {}
    elem = etree.Element('virtualport')
    if vport.get('type'):
        elem.set('type', vport['type'])
    params = [(k, vport[k]) for k in VIRTUALPORT_PARAMETERS if vport.get(k)]
    if params:
        sub = etree.SubElement(elem, 'parameters')
        for key, value in params:
            sub.set(key, value)
    return elem


def norm_bandwidth(bw):
    """The canonical bandwidth (see the module docstring): {} when empty."""
    if not bw:
        return {}
    unknown = set(bw) - set(BANDWIDTH_DIRECTIONS)
    if unknown:
        raise ModelError('bandwidth: unknown direction(s) %s (known: inbound, outbound)' % ', '.join(sorted(unknown)))
    out = {}
    for direction in BANDWIDTH_DIRECTIONS:
        fields = bw.get(direction) or {}
        unknown = set(fields) - set(BANDWIDTH_FIELDS)
        if unknown:
            raise ModelError('bandwidth.%s: unknown field(s) %s (known: %s)' % (
                direction, ', '.join(sorted(unknown)), ', '.join(BANDWIDTH_FIELDS)))
        norm = {}
        for field in BANDWIDTH_FIELDS:
            value = to_int(fields.get(field), 'bandwidth.%s.%s' % (direction, field))
            if value is not None:
                norm[field] = value
        if norm:
            out[direction] = norm
    return out


def bandwidth_from_xml(elem):
    raw = {}
    for direction in BANDWIDTH_DIRECTIONS:
        child = elem.find(direction)
        if child is not None:
            raw[direction] = dict((f, child.get(f)) for f in BANDWIDTH_FIELDS if child.get(f))
    return norm_bandwidth(raw)


def bandwidth_element(bw):
    """``<bandwidth><inbound .../><outbound .../></bandwidth>`` for a bandwidth model."""
    bw = norm_bandwidth(bw)
    elem = etree.Element('bandwidth')
    for direction in BANDWIDTH_DIRECTIONS:
        if direction in bw:
            child = etree.SubElement(elem, direction)
            for field in BANDWIDTH_FIELDS:
                if field in bw[direction]:
                    child.set(field, '%d' % bw[direction][field])
    return elem
