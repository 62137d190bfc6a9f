# SPDX-License-Identifier: GPL-3.0-or-later
"""virtlab: the uplink's TCP listener, run by the Lab in the lab's uplink namespace as
``uplink_listener.py PORT LOG``: accepts every connection on PORT, appends a line
"time src sport dst dport" to LOG, sends a greeting and closes."""
import socket
import sys
import time


def main():
    port, log = int(sys.argv[1]), sys.argv[2]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    while True:
        c, peer = s.accept()
        local = c.getsockname()
        with open(log, "a") as f:
            f.write("%.3f %s %d %s %d\n" % (time.time(), peer[0], peer[1], local[0], local[1]))
        try:
            c.sendall(b"virtlab-uplink\n")
        except OSError:
            pass
        c.close()


if __name__ == "__main__":
    main()
