# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The wire format of the netfilter half: run a constant POSIX sh script on the host, parse its output.

THIS IS PRIVATE TO virtops.virtnet; the API may change without notice outside the collection.

Every remote script of the netfilter half prints its findings as sections::

    @@name            a section header: a line of its own, ``@@`` then ``[a-z][a-z0-9_-]*``
    @@name ARG        a header with an argument (the rest of the line: a path, a command, "save pid")
    raw lines         the section's body, up to the next header
    @@end             by convention, the last line of a script that ran to its end

This module is the only parser of that format.  Lines end at ``\n`` only (what the shell prints): a
``\r`` or any other character stays in its line, so a body read back is exactly what was printed.
Bodies are kept as lines without their newline.

API
---
``parse(text) -> Sections``                  every section in order
``run(module, script, args=(), **kw)``       run the script (``HostModule.run_script``), parse its output
``parse_kv(lines, sep='=')``                 ``key=value`` body lines -> dict (stripped; first ``sep`` splits)
"""

from __future__ import annotations

import re
from collections import namedtuple

__all__ = ['Section', 'Sections', 'parse', 'parse_kv', 'run']

HEADER_RE = re.compile(r'^@@([a-z][a-z0-9_-]*)(?: (.*))?$')


class Section(namedtuple('Section', 'name arg lines')):
    """One section: ``name``, ``arg`` (the header's argument or None) and its body ``lines``."""

    __slots__ = ()

    @property
    def text(self):
        """The body as text, each line ended by a newline ('' for an empty body)."""
        return ''.join(line + '\n' for line in self.lines)


class Sections(list):
    """The sections of one script's output, in the order printed."""

    def get(self, name, default=None):
        """The body lines of every section called ``name``, joined in order (a repeated name appends);
        ``default`` when there is none."""
        found = [s for s in self if s.name == name]
        if not found:
            return default
        return [line for s in found for line in s.lines]

    def __contains__(self, name):
        return any(s.name == name for s in self)

    def as_dict(self):
        """{name: lines} for every name (a repeated name appends)."""
        out = {}
        for s in self:
            out.setdefault(s.name, []).extend(s.lines)
        return out

    def by_arg(self, name):
        """{arg: Section} for the sections called ``name`` (the last one wins for a repeated argument)."""
        return dict((s.arg, s) for s in self if s.name == name)

    @property
    def ended(self):
        """True when the script printed its ``@@end`` line."""
        return 'end' in self


def parse(text):
    """Script output -> ``Sections``.  Lines before the first header are not part of any section."""
    out = Sections()
    current = None
    lines = (text or '').split('\n')
    if lines[-1] == '':
        lines.pop()     # the newline that ends the last line starts no line of its own
    for line in lines:
        header = HEADER_RE.match(line)
        if header:
            current = Section(header.group(1), header.group(2), [])
            out.append(current)
        elif current is not None:
            current.lines.append(line)
    return out


def parse_kv(lines, sep='='):
    """``key=value`` lines -> {key: value}, both stripped; lines without ``sep`` are skipped."""
    out = {}
    for line in lines or ():
        if sep in line:
            key, value = line.split(sep, 1)
            out[key.strip()] = value.strip()
    return out


def run(module, script, args=(), **kwargs):
    """Run ``script`` with positional ``args`` on the host; return ``(result, Sections)``.

    ``kwargs`` go to ``HostModule.run_script`` (``check_rc``, ``ok_rcs``, ``become``, ``what``)."""
    res = module.run_script(script, args=args, **kwargs)
    return res, parse(res.stdout)
