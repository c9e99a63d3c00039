#!/usr/bin/env python3
"""The first seed's TCP Fast Open client, ported to Python 3.

    ip netns exec <client namespace> /usr/bin/python3 scripts/tfo_client.py ADDR [PORT [REQUEST]]

It sends REQUEST (default "HEAD / HTTP/1.0\\r\\n\\r\\n") with
sendto(..., MSG_FASTOPEN, ...) on an unconnected socket, so the kernel puts
it in the SYN when it holds a cookie for ADDR (and asks for one otherwise),
then prints what the server answers. The seed called the flag TCP_FASTOPEN
(0x20000000): that is MSG_FASTOPEN's value.
"""
import socket
import sys

MSG_FASTOPEN = getattr(socket, "MSG_FASTOPEN", 0x20000000)


def main() -> int:
    if not 2 <= len(sys.argv) <= 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    dest = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 80
    request = sys.argv[3] if len(sys.argv) > 3 else "HEAD / HTTP/1.0\r\n\r\n"
    family = socket.AF_INET6 if ":" in dest else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Blocking, as in the seed: a timeout would make the socket
        # non-blocking, and sendto(MSG_FASTOPEN) would fail with EINPROGRESS.
        s.sendto(request.encode(), MSG_FASTOPEN, (dest, port))
        s.settimeout(5)
        data = b""
        while True:
            chunk = s.recv(1024)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    sys.stdout.write(data.decode(errors="replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
