# SPDX-License-Identifier: GPL-3.0-or-later
"""10,000 rules of other owners for a crowded host: libvirt-like, Docker-like and the user's, in the raw,
filter and nat tables, loaded with one iptables-restore --noflush (used by test_trace_rule.py and
bench/bench_trace_rule_crowded.py)."""

CHAINS = {"filter": ["DOCKER", "DOCKER-USER", "LIBVIRT_FWX", "USER_IN"], "nat": ["DOCKER", "USER_NAT"],
          "raw": ["USER_RAW"]}


def batch(total=10000):
    """iptables-restore text: user chains plus ``total`` rules spread over the three tables."""
    per = {"raw": total // 5, "nat": total // 5}
    per["filter"] = total - per["raw"] - per["nat"]
    out = []
    for table in ("raw", "nat", "filter"):
        out.append("*%s" % table)
        out += [":%s - [0:0]" % c for c in CHAINS[table]]
        chains = CHAINS[table]
        for i in range(per[table]):
            a, b = divmod(i, 250)
            chain = chains[i % len(chains)]
            if table == "nat" and chain == "DOCKER":
                out.append("-A DOCKER -d 172.17.%d.%d/32 ! -i docker0 -p tcp -m tcp --dport %d -j DNAT "
                           "--to-destination 172.17.%d.%d:80" % (a % 250, b + 1, 10000 + i, a % 250, b + 1))
            elif table == "nat":
                out.append("-A USER_NAT -s 10.%d.%d.0/24 -o eth9 -j MASQUERADE" % (a % 250, b))
            elif table == "raw":
                out.append("-A USER_RAW -s 10.9.%d.%d/32 -p udp -m udp --dport %d -j NOTRACK" % (a % 250, b + 1, 1024 + i))
            elif chain == "DOCKER-USER":
                out.append("-A DOCKER-USER -s 192.0.2.%d/32 -p tcp -m tcp --dport %d -j RETURN" % (b + 1, 1 + i % 65000))
            elif chain == "LIBVIRT_FWX":
                out.append("-A LIBVIRT_FWX -i virbr%d -o virbr%d -j ACCEPT" % (i % 100, (i + 1) % 100))
            else:
                out.append("-A %s -s 198.51.100.%d/32 -p tcp -m tcp --dport %d -m comment --comment \"user rule %d\" "
                           "-j ACCEPT" % (chain, b + 1, 1 + i % 65000, i))
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def remove_batch():
    """Flush and delete the chains ``batch`` made."""
    out = []
    for table in ("raw", "nat", "filter"):
        out.append("*%s" % table)
        out += ["-F %s" % c for c in CHAINS[table]] + ["-X %s" % c for c in CHAINS[table]]
        out.append("COMMIT")
    return "\n".join(out) + "\n"
