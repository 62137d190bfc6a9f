# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixture loading for the netfilter unit tests (real command outputs)."""
import os

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures_netfilter')


def fixture(name):
    with open(os.path.join(HERE, name)) as fh:
        return fh.read()
