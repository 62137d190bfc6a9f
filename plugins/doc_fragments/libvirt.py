# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    """Connection options, requirements and platform shared by the libvirt modules."""

    DOCUMENTATION = r'''
options:
  uri:
    description:
      - libvirt connection URI on the hypervisor.
      - See U(https://libvirt.org/uri.html).
    type: str
    default: qemu:///system
requirements:
  - libvirt-python (C(python3-libvirt) on Debian/EL8+, C(libvirt-python) on EL7) on the managed host
  - lxml (C(python3-lxml), C(python-lxml) on EL7) on the managed host
notes:
  - Runs on the hypervisor; supports Python 2.7 (CentOS 7) and Python 3.6+.
attributes:
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
'''
