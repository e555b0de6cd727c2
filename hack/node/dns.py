"""A tiny cluster DNS for the e2e node, in place of CoreDNS (no image registry here to pull it from).

Answers A queries for ``<service>.<namespace>.svc.<domain>`` with the Service's ClusterIP, read from
the API server every second; everything else gets NXDOMAIN (pods here need no outside names).
Standard library only, so it runs with the host's python3:

    python3 hack/node/dns.py --listen 192.0.2.2 --api https://192.0.2.2:6443 --token-file T --ca-file C

The token is its own identity's, which may only list and watch Services (hack/node/up.sh).
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import struct
import threading
import time
import urllib.request

A, AAAA, IN = 1, 28, 1


class Services:
    """The name -> ClusterIP map, refreshed in a background thread."""

    def __init__(self, api: str, token: str, domain: str, ca_file: str) -> None:
        self.api, self.token, self.domain = api, token, domain
        self.names: dict[str, str] = {}
        self.context = ssl.create_default_context(cafile=ca_file)  # the API server's own chain

    def refresh(self) -> None:
        request = urllib.request.Request(  # noqa: S310 - the local API server
            f"{self.api}/api/v1/services", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, context=self.context, timeout=5) as response:  # noqa: S310
            items = json.load(response)["items"]
        names = {}
        for svc in items:
            ip = svc["spec"].get("clusterIP")
            if ip and ip != "None":
                meta = svc["metadata"]
                names[f"{meta['name']}.{meta['namespace']}.svc.{self.domain}"] = ip
        self.names = names

    def loop(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception as exc:  # keep serving the last good map
                print(f"dns: cannot list services: {exc}", flush=True)
            time.sleep(1)


def answer(query: bytes, services: Services) -> bytes | None:
    if len(query) < 12:
        return None
    ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
    if qdcount != 1:
        return None
    labels, pos = [], 12
    while pos < len(query) and query[pos] != 0:
        length = query[pos]
        labels.append(query[pos + 1 : pos + 1 + length].decode("ascii", "replace").lower())
        pos += 1 + length
    pos += 1
    if pos + 4 > len(query):
        return None
    qtype, qclass = struct.unpack("!HH", query[pos : pos + 4])
    question = query[12 : pos + 4]
    name = ".".join(labels)
    ip = services.names.get(name)
    # Response, recursion desired copied, recursion available; NXDOMAIN (3) for names we do not know.
    rcode = 0 if ip else 3
    records = b""
    if ip and qtype == A and qclass == IN:
        records = b"\xc0\x0c" + struct.pack("!HHIH", A, IN, 5, 4) + socket.inet_aton(ip)
    header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, 1 if records else 0, 0, 0)
    return header + question + records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--api", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--ca-file", required=True, help="the API server's serving chain")
    parser.add_argument("--domain", default="cluster.local")
    args = parser.parse_args()
    with open(args.token_file) as f:
        token = f.read().strip()
    services = Services(args.api, token, args.domain, args.ca_file)
    threading.Thread(target=services.loop, daemon=True).start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.listen, args.port))
    print(f"dns: serving *.svc.{args.domain} on {args.listen}:{args.port}", flush=True)
    while True:
        query, peer = sock.recvfrom(512)
        reply = answer(query, services)
        if reply:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
