# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Libvirt connection and error mapping (PRIVATE: not a public API of this collection).

Used by every libvirt module of the collection::

    from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._connection import (
        check_required_libs, connect)

    check_required_libs(module)
    conn = connect(module)            # fail_json with a clear message on error

Code that must not depend on AnsibleModule uses ``open_connection(uri)``, which raises
``VirtnetLibvirtError``.

This file is also the one place for what every target-side manager shares:

- the libvirt constants (stable ABI values, named here so that the modules load without
  libvirt-python) and ``LibvirtError``, the class libvirt raises (a stand-in that nothing raises
  where libvirt-python is missing), so that ``except LibvirtError`` catches what libvirt raises
  and nothing else;
- the contract of the managers (``NetworkManager``, ``NetworkInfo``, ``GuestInterfaceManager``):
  ``run()`` returns the module's result dict (its ``warnings`` list included) or raises
  ``ManagerError`` (message, result keys, warnings); ``finish(module, manager)`` in the module's
  ``main()`` turns that into ``exit_json`` / ``fail_json``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import traceback

from ansible.module_utils.basic import missing_required_lib

LIBVIRT_IMPORT_ERROR = None
try:
    import libvirt
    HAS_LIBVIRT = True
except ImportError:
    libvirt = None
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()

if HAS_LIBVIRT:
    LibvirtError = libvirt.libvirtError
else:
    class LibvirtError(Exception):
        """Stands for libvirt.libvirtError where libvirt-python is missing (unit tests use it for their fakes)."""

LXML_IMPORT_ERROR = None
try:
    from lxml import etree  # noqa: F401, pylint: disable=unused-import
    HAS_LXML = True
except ImportError:
    HAS_LXML = False
    LXML_IMPORT_ERROR = traceback.format_exc()


DEFAULT_URI = 'qemu:///system'

# libvirt constants (values are stable ABI; named here so that the modules also load when
# libvirt-python is missing). Every file of the libvirt half takes them from here.
VIR_ERR_NO_CONNECT = 5
VIR_ERR_INVALID_CONN = 6
VIR_ERR_SYSTEM_ERROR = 38
VIR_ERR_NO_DOMAIN = 42
VIR_ERR_NO_NETWORK = 43
VIR_ERR_AUTH_FAILED = 45
VIR_ERR_CONFIG_UNSUPPORTED = 67
VIR_ERR_OPERATION_UNSUPPORTED = 84
VIR_FROM_RPC = 7
VIR_FROM_URI = 45
VIR_CONNECT_LIST_ALL = 0
VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1
VIR_NETWORK_XML_INACTIVE = 1
VIR_DOMAIN_XML_SECURE = 1
VIR_DOMAIN_XML_INACTIVE = 2
VIR_DOMAIN_AFFECT_LIVE = 1
VIR_DOMAIN_AFFECT_CONFIG = 2
VIR_DOMAIN_METADATA_ELEMENT = 2
# virNetworkUpdate: commands, sections, flags
VIR_NETWORK_UPDATE_COMMAND_MODIFY = 1
VIR_NETWORK_UPDATE_COMMAND_DELETE = 2
VIR_NETWORK_UPDATE_COMMAND_ADD_LAST = 3
VIR_NETWORK_SECTION_IP_DHCP_HOST = 4
VIR_NETWORK_SECTION_IP_DHCP_RANGE = 5
VIR_NETWORK_SECTION_FORWARD_INTERFACE = 7
VIR_NETWORK_SECTION_PORTGROUP = 9
VIR_NETWORK_SECTION_DNS_HOST = 10
VIR_NETWORK_SECTION_DNS_TXT = 11
VIR_NETWORK_SECTION_DNS_SRV = 12
VIR_NETWORK_UPDATE_AFFECT_LIVE = 1
VIR_NETWORK_UPDATE_AFFECT_CONFIG = 2

_URI_RE = re.compile(r'^[A-Za-z][A-Za-z0-9+.\-]*://')


class VirtnetLibvirtError(Exception):
    """A libvirt failure with a message meant for the user.

    ``kind`` is one of ``unreachable``, ``invalid_uri``, ``auth``, ``libvirt``.
    """

    def __init__(self, msg, kind='libvirt', uri=None, code=None, exc=None):
        super(VirtnetLibvirtError, self).__init__(msg)
        self.msg = msg
        self.kind = kind
        self.uri = uri
        self.code = code
        self.exc = exc


class ManagerError(Exception):
    """A failed run of a manager: ``msg`` for the user, ``result`` the other keys of the failed result,
    ``warnings`` what the run noticed before it failed."""

    def __init__(self, msg, **result):
        super(ManagerError, self).__init__(msg)
        self.msg = msg
        self.result = result
        self.warnings = []


def finish(module, manager):
    """The module side of the managers' contract: ``exit_json`` with what ``manager.run()`` returns,
    ``fail_json`` with what it raises."""
    try:
        result = manager.run()
    except ManagerError as err:
        for warning in err.warnings:
            module.warn(warning)
        module.fail_json(msg=err.msg, **err.result)
    for warning in result.pop('warnings', []):
        module.warn(warning)
    module.exit_json(**result)


def _silence_libvirt():
    """Keep libvirt from printing errors on stderr (they are reported through exceptions)."""
    if HAS_LIBVIRT:
        try:
            libvirt.registerErrorHandler(lambda ctx, err: None, None)
        except AttributeError:  # pragma: no cover - very old bindings
            pass


def _error_field(exc, getter):
    """What libvirtError.get_error_*() says, or None (a plain exception, an error object without it)."""
    get = getattr(exc, getter, None)
    return get() if get is not None else None


def libvirt_error_msg(exc):
    """Return a one-line human message for a libvirt.libvirtError (or any exception)."""
    if exc is None:
        return ''
    msg = _error_field(exc, 'get_error_message') or str(exc)
    return ' '.join(msg.split())


def libvirt_error_code(exc):
    return _error_field(exc, 'get_error_code')


def libvirt_error_domain(exc):
    return _error_field(exc, 'get_error_domain')


def _socket_path(text):
    m = re.search(r"connect socket to '([^']+)'", text or '')
    return m.group(1) if m else None


def classify_open_error(uri, exc):
    """Turn the libvirtError raised by virConnectOpen into a VirtnetLibvirtError."""
    text = libvirt_error_msg(exc)
    code = libvirt_error_code(exc)
    domain = libvirt_error_domain(exc)
    sock = _socket_path(text)
    lowered = text.lower()
    if sock or (code == VIR_ERR_SYSTEM_ERROR and domain == VIR_FROM_RPC) or 'connection refused' in lowered:
        where = " (socket path %s)" % sock if sock else ''
        msg = ("libvirtd not reachable for URI %s%s: %s. Is libvirtd (or virtqemud) running "
               "on the host?" % (uri, where, text))
        return VirtnetLibvirtError(msg, kind='unreachable', uri=uri, code=code, exc=exc)
    if (domain == VIR_FROM_URI or 'unable to parse uri' in lowered
            or 'no connection driver available' in lowered
            or 'unexpected' in lowered and 'uri' in lowered
            or 'unsupported' in lowered and 'uri' in lowered
            or code == VIR_ERR_NO_CONNECT and 'driver' in lowered):
        msg = "invalid URI %s: %s" % (uri, text)
        return VirtnetLibvirtError(msg, kind='invalid_uri', uri=uri, code=code, exc=exc)
    if code == VIR_ERR_AUTH_FAILED or 'authentication' in lowered or 'access denied' in lowered:
        msg = "libvirt refused access for URI %s: %s" % (uri, text)
        return VirtnetLibvirtError(msg, kind='auth', uri=uri, code=code, exc=exc)
    msg = "cannot connect to libvirt at URI %s: %s" % (uri, text)
    return VirtnetLibvirtError(msg, kind='libvirt', uri=uri, code=code, exc=exc)


def open_connection(uri=None):
    """Open a read-write libvirt connection; raise VirtnetLibvirtError on any failure."""
    uri = uri or DEFAULT_URI
    if not HAS_LIBVIRT:
        raise VirtnetLibvirtError('libvirt-python is not installed', kind='missing_lib', uri=uri)
    if not _URI_RE.match(uri):
        raise VirtnetLibvirtError(
            "invalid URI %s: expected driver[+transport]://[user@][host]/path, "
            "for example qemu:///system" % uri, kind='invalid_uri', uri=uri)
    _silence_libvirt()
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise classify_open_error(uri, exc)
    if conn is None:  # pragma: no cover - old bindings returned None
        raise VirtnetLibvirtError("cannot connect to libvirt at URI %s" % uri, uri=uri)
    return conn


def check_required_libs(module):
    """fail_json with missing_required_lib() when libvirt-python or lxml is missing."""
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib('libvirt-python (python3-libvirt)'),
                         exception=LIBVIRT_IMPORT_ERROR)
    if not HAS_LXML:
        module.fail_json(msg=missing_required_lib('lxml (python3-lxml)'),
                         exception=LXML_IMPORT_ERROR)


def connect(module, uri=None):
    """Return a virConnect for module.params['uri'] (or ``uri``), or fail_json."""
    check_required_libs(module)
    uri = uri or module.params.get('uri') or DEFAULT_URI
    try:
        return open_connection(uri)
    except VirtnetLibvirtError as err:
        module.fail_json(msg=err.msg, uri=uri, error_kind=err.kind)


_LOST_RE = re.compile(r'end of file while reading data|client socket is closed|connection reset by peer'
                      r'|broken pipe|cannot recv data|cannot write data', re.IGNORECASE)


def is_connection_lost(exc):
    """True when a libvirt call failed because the daemon went away (killed, crashed, restarted)
    while we were connected: the outcome of the call in flight is unknown."""
    if exc is None:
        return False
    code, domain = libvirt_error_code(exc), libvirt_error_domain(exc)
    if code == VIR_ERR_INVALID_CONN:
        return True
    return bool(_LOST_RE.search(libvirt_error_msg(exc))) and domain in (VIR_FROM_RPC, None)


def connection_lost_msg(exc, doing, done, rerun):
    """The message for a libvirt call cut by the daemon's death: what was in flight, what was done
    before, and what the next run does."""
    msg = ('lost the connection to libvirtd while %s (libvirtd stopped, crashed or was restarted: %s). '
           % (doing, libvirt_error_msg(exc)))
    msg += ('Done before: %s. ' % '; '.join(done)) if done else 'Nothing was done before that. '
    msg += ('Whether "%s" happened is unknown. Once libvirtd is back, run the task again: %s'
            % (doing, rerun))
    return msg
