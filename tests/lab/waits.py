# SPDX-License-Identifier: GPL-3.0-or-later
"""Waiting on a condition with a deadline and a message, never a fixed sleep (tests and lab code)."""
import time


def wait_for(what, cond, timeout=15, every=0.1):
    """Call ``cond()`` every ``every`` seconds until it returns something true, and return that; after
    ``timeout`` seconds raise AssertionError("waited N s for <what>")."""
    deadline = time.time() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError("waited %.0f s for %s" % (timeout, what))
        time.sleep(every)
