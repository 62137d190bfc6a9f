# SPDX-License-Identifier: GPL-3.0-or-later
"""The network-mode roles leave the device checks to the network module: a missing forward device, macvtap
source or host bridge fails the role's one module task with the module's message (the device named, nothing
changed), on a real lab host (real libvirtd and /sys/class/net)."""
import pytest

HOST = "debian12-1"

# role, its variables, the missing device, the start of the module's message
CASES = [
    ("nat_network", {"nat_network_name": "rlnat", "nat_network_bridge": "virbr-rlnat", "nat_network_forward_dev": "nosuch0",
                     "nat_network_ips": [{"address": "10.79.1.1", "prefix": 24}]},
     "unknown forward device nosuch0"),
    ("routed_network", {"routed_network_name": "rlrt", "routed_network_bridge": "virbr-rlrt",
                        "routed_network_forward_dev": "nosuch0", "routed_network_ips": [{"address": "10.79.2.1", "prefix": 24}]},
     "unknown forward device nosuch0"),
    ("open_network", {"open_network_name": "rlopen", "open_network_bridge": "virbr-rlopen", "open_network_forward_dev": "nosuch0",
                      "open_network_ips": [{"address": "10.79.3.1", "prefix": 24}]},
     "unknown forward device nosuch0"),
    ("bridge_network", {"bridge_network_name": "rlbr", "bridge_network_bridge": "nosuchbr0"},
     "forward mode bridge: host bridge nosuchbr0 does not exist"),
    ("macvtap_network", {"macvtap_network_name": "rlmv", "macvtap_network_interfaces": ["nosuch0", "nosuch1"]},
     "unknown forward device nosuch0, nosuch1"),
]


@pytest.mark.parametrize("role,role_vars,needle", CASES, ids=[c[0] for c in CASES])
def test_missing_device_fails_with_the_module_message(lab, run_playbook, role, role_vars, needle):
    play = "- hosts: %s\n  gather_facts: false\n  roles:\n    - role: virtops.virtnet.%s\n" % (HOST, role)
    out = run_playbook(play, extra_vars=role_vars)
    assert out["rc"] != 0, out["stdout"][-2000:]
    failed = [(t["name"], r) for t in out["tasks"] for h, r in t["hosts"].items() if r.get("failed")]
    assert len(failed) == 1, failed
    name, res = failed[0]
    assert name.split(" : ", 1)[-1].startswith("Declare the"), name  # the module's task, no role-side check
    assert res["msg"].startswith(needle) and "Nothing was changed" in res["msg"], res["msg"]
    assert res.get("changed") is False
    net = role_vars["%s_name" % role]
    assert lab.virsh(HOST, "net-info", net, check=False).returncode != 0  # nothing defined
