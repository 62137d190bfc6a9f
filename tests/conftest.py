# SPDX-License-Identifier: GPL-3.0-or-later
"""Test-wide setup: import the collection as ``ansible_collections.virtops.virtnet``.

The repository root is the collection. We expose it under
``build/collections/ansible_collections/virtops/virtnet`` (a symlink) so that tests and
ansible runs import it exactly as an installed collection.
"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, "build", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "virtops", "virtnet")
SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def _ensure_link():
    if os.path.islink(LINK) or os.path.isdir(LINK):
        return
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    try:
        os.symlink(ROOT, LINK)
    except FileExistsError:
        pass


_ensure_link()
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", COLLECTIONS)


def pytest_collection_modifyitems(config, items):
    """Everything under tests/integration is an integration test (needs root and the lab)."""
    marker = pytest.mark.integration
    for item in items:
        if os.sep + os.path.join("tests", "integration") + os.sep in str(item.fspath):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def shared_dir():
    """Path of ../shared (seed notes, libvirt corpus); skips when this is a user's clone."""
    if not os.path.isdir(SHARED):
        pytest.skip("../shared (seed notes and libvirt test corpus) is not beside this clone")
    return SHARED
