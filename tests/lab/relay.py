"""Private lab helper: stdin/stdout <-> TCP relay used as an SSH ProxyCommand.

Run inside the lab's management namespace:
    ip netns exec vnlab-mgmt /usr/bin/python3 relay.py HOST PORT
Stdlib only; no shell, no name resolution beyond what socket does.
"""
import os
import socket
import sys
import threading


def _pump_in(sock):
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: relay.py HOST PORT\n")
        return 2
    try:
        sock = socket.create_connection((argv[1], int(argv[2])), timeout=10)
    except OSError as exc:
        sys.stderr.write("relay: cannot connect to %s:%s: %s\n" % (argv[1], argv[2], exc))
        return 1
    sock.settimeout(None)
    thread = threading.Thread(target=_pump_in, args=(sock,), daemon=True)
    thread.start()
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            view = memoryview(data)
            while view:
                written = os.write(1, view)
                view = view[written:]
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
