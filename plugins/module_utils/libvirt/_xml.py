# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Small XML and address helpers for the libvirt models (PRIVATE: not a public API).

Pure Python (lxml only when XML is parsed or written): importable on the controller for unit
tests and on Python 2.7 targets. No ``ipaddress`` (not in the 2.7 standard library): addresses
are handled as integers through ``socket.inet_pton``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import socket
import struct

try:
    from lxml import etree
    HAS_LXML = True
except ImportError:  # pragma: no cover - reported by _connection.check_required_libs
    etree = None
    HAS_LXML = False

try:
    string_types = (str, unicode)  # noqa: F821 pylint: disable=undefined-variable
except NameError:
    string_types = (str,)


class ModelError(ValueError):
    """Invalid user input or XML; the message is meant for the user."""


# --------------------------------------------------------------------------------------------
# XML
def parse_xml(text):
    """Parse an XML document (str or bytes) into an lxml element; ModelError on bad XML."""
    if not HAS_LXML:
        raise ModelError('lxml is required to parse XML')
    if text is None or not text.strip():
        raise ModelError('empty XML document')
    if not isinstance(text, bytes):
        text = text.encode('utf-8')
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True,
                             load_dtd=False)
    try:
        root = etree.fromstring(text, parser)
    except etree.XMLSyntaxError as exc:
        raise ModelError('invalid XML: %s' % exc)
    # Entities are never expanded (resolve_entities=False), but an unexpanded reference left in the tree
    # makes lxml's C14N (used for comparisons) raise, a declared entity would be dropped silently, and a
    # declared external entity (<!ENTITY e SYSTEM 'file:///...'>) is a file read waiting for a parser that
    # does expand it.  libvirt XML needs no DTD: refuse the document, naming what it declares.
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or any(True for _e in root.iter(etree.Entity)):
        declared = ''
        dtd = docinfo.internalDTD
        for ent in (dtd.iterentities() if dtd is not None else []):
            url = getattr(ent, 'system_url', None)  # lxml >= 5 (Debian 11 has 4.6)
            declared = ' (it declares %s %r%s)' % ('external entity' if url or ent.content is None else 'entity',
                                                   ent.name, ': %s' % (url or ent.content) if url or ent.content else '')
            break
        raise ModelError('XML with a <!DOCTYPE> or entity references is refused (options xml, '
                         'extra_xml, metadata)%s: libvirt XML needs neither, and entities could read '
                         'files on the host; remove the DOCTYPE and the &name; references' % declared)
    return root


def to_string(elem, pretty=True):
    text = etree.tostring(elem, pretty_print=pretty, encoding='unicode')
    return text


def sub(parent, tag, attrs=None, text=None):
    """Append a child element with the non-None attributes of ``attrs`` (ordered list)."""
    elem = etree.SubElement(parent, tag)
    for key, value in attrs or []:
        if value is None:
            continue
        elem.set(key, fmt_value(value))
    if text is not None:
        elem.text = text
    return elem


def fmt_value(value):
    if value is True:
        return 'yes'
    if value is False:
        return 'no'
    return '%s' % value


def yesno(value, attr=''):
    """'yes'/'no' (also 'on'/'off') -> bool; None stays None."""
    if value is None:
        return None
    low = value.strip().lower()
    if low in ('yes', 'on', 'true', '1'):
        return True
    if low in ('no', 'off', 'false', '0'):
        return False
    raise ModelError('invalid boolean %r for %s' % (value, attr or 'attribute'))


def to_int(value, what):
    if value is None or value == '':
        return None
    try:
        return int(str(value), 0) if str(value).lower().startswith('0x') else int(value)
    except (TypeError, ValueError):
        raise ModelError('%s must be an integer, got %r' % (what, value))


# --------------------------------------------------------------------------------------------
# Addresses
_MAC_RE = re.compile(r'^([0-9A-Fa-f]{1,2}:){5}[0-9A-Fa-f]{1,2}$')


def norm_mac(value, what='MAC address'):
    if value is None:
        return None
    value = str(value).strip()
    if not _MAC_RE.match(value):
        raise ModelError('invalid MAC address %r (%s)' % (value, what))
    return ':'.join('%02x' % int(p, 16) for p in value.split(':'))


def family_of(address):
    return 'ipv6' if ':' in (address or '') else 'ipv4'


def ip_to_int(address, what='address'):
    """Return (family, integer) for an IPv4/IPv6 text address; ModelError when invalid."""
    if address is None:
        raise ModelError('missing %s' % what)
    address = str(address).strip()
    fam = family_of(address)
    try:
        if fam == 'ipv4':
            if not re.match(r'^\d{1,3}(\.\d{1,3}){3}$', address):
                raise ValueError(address)
            packed = socket.inet_pton(socket.AF_INET, address)
            return fam, struct.unpack('!I', packed)[0]
        packed = socket.inet_pton(socket.AF_INET6, address)
        hi, lo = struct.unpack('!QQ', packed)
        return fam, (hi << 64) | lo
    except (socket.error, ValueError, OSError):
        raise ModelError('invalid IP address %r (%s)' % (address, what))


def int_to_ip(family, value):
    if family == 'ipv4':
        return socket.inet_ntop(socket.AF_INET, struct.pack('!I', value))
    return socket.inet_ntop(socket.AF_INET6, struct.pack('!QQ', value >> 64, value & ((1 << 64) - 1)))


def norm_ip(address, what='address'):
    if address is None:
        return None
    fam, value = ip_to_int(address, what)
    return int_to_ip(fam, value)


def bits(family):
    return 32 if family == 'ipv4' else 128


def netmask_to_prefix(netmask, what='netmask'):
    fam, value = ip_to_int(netmask, what)
    if fam != 'ipv4':
        raise ModelError('invalid netmask %r (%s)' % (netmask, what))
    prefix = bin(value).count('1')
    if value != ((0xffffffff << (32 - prefix)) & 0xffffffff):
        raise ModelError('netmask %s is not contiguous (%s)' % (netmask, what))
    return prefix


def prefix_to_netmask(prefix):
    return int_to_ip('ipv4', (0xffffffff << (32 - prefix)) & 0xffffffff)


def network_of(address, prefix):
    """(family, first int, last int) of the subnet holding address/prefix."""
    fam, value = ip_to_int(address)
    width = bits(fam)
    mask = ((1 << width) - 1) ^ ((1 << (width - prefix)) - 1)
    first = value & mask
    return fam, first, first | (((1 << width) - 1) ^ mask)


def in_subnet(address, net_address, prefix):
    fam, value = ip_to_int(address)
    nfam, first, last = network_of(net_address, prefix)
    return fam == nfam and first <= value <= last


def overlaps(a, b):
    """a, b: (family, first, last)."""
    return a[0] == b[0] and a[1] <= b[2] and b[1] <= a[2]


def cidr(family, first, prefix):
    return '%s/%d' % (int_to_ip(family, first), prefix)
