#!/usr/bin/env python3
"""A putallkv client in Python over Apache Thrift (Debian: python3-thrift).

Generate the bindings from the API's IDL, then run against a server's RPC address:

    thrift --gen py -out gen-py idl/kv.thrift
    PYTHONPATH=gen-py /usr/bin/python3 examples/python/client.py 127.0.0.1:8888

It writes two keys in one atomic PutAll, reads them back with GetAll, lists them with Scan
(a key a page, following the cursor), then tries a compare-and-set with a stale version, which the server refuses with VERSION_MISMATCH.

Plain Apache Thrift speaks framed binary, which carries no metadata. A server with tokens
(auth.token_file) reads the token only from Kitex's TTHeader: with PUTALLKV_TOKEN set in the
environment, the client sends its calls in TTHeader frames (ttheader.py, beside this file)
carrying the token and its deadline.
"""

import os
import sys

from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from ttheader import TOKEN, TTHeaderTransport

from kv import KVService
from kv.ttypes import (
    Entry,
    ErrorCode,
    GetAllRequest,
    KVError,
    PutAllRequest,
    ScanRequest,
    WriteMode,
)

TIMEOUT_MS = 10_000


def connect(addr, token):
    """Open a connection to addr (HOST:PORT), framed, or TTHeader carrying token when there
    is one; return (client, transport)."""
    host, _, port = addr.rpartition(":")
    sock = TSocket.TSocket(host, int(port))
    sock.setTimeout(TIMEOUT_MS)
    if token:
        transport = TTHeaderTransport(sock, {TOKEN: token}, timeout_ms=TIMEOUT_MS)
    else:
        transport = TTransport.TFramedTransport(sock)
    client = KVService.Client(TBinaryProtocol.TBinaryProtocol(transport))
    transport.open()
    return client, transport


def run(client):
    """PutAll, GetAll, Scan and a failing compare-and-set, printing one line for each outcome."""
    entries = [Entry(key="py/greeting", value=b"hello"), Entry(key="py/count", value=b"1")]
    put = client.PutAll(PutAllRequest(entries=entries, mode=WriteMode.ATOMIC))
    print(f"PutAll applied={put.applied} revision={put.revision}")

    got = client.GetAll(GetAllRequest(keys=["py/greeting", "py/count", "py/absent"]))
    for item in got.items:
        if item.found:
            print(f"GetAll {item.key}={item.value.decode()} version={item.version}")
        else:
            print(f"GetAll {item.key} not found")

    keys, cursor = [], ""
    while True:  # the server's order is not the keys'; an empty next_cursor ends the scan
        page = client.Scan(ScanRequest(prefix="py/", cursor=cursor, limit=1, keys_only=True))
        keys += [item.key for item in page.items]
        cursor = page.next_cursor
        if not cursor:
            break
    print(f"Scan py/ {len(keys)} keys: {' '.join(sorted(keys))}")

    stale = put.revision + 100
    cas = Entry(key="py/count", value=b"2", expected_version=stale)
    try:
        client.PutAll(PutAllRequest(entries=[cas], mode=WriteMode.ATOMIC))
    except KVError as e:
        for f in e.failed:
            print(f"CAS {ErrorCode._VALUES_TO_NAMES[e.code]} {f.key} "
                  f"expected={stale} current={f.version}: {e.message}")
        return 0
    print("CAS unexpectedly succeeded", file=sys.stderr)
    return 1


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} HOST:PORT", file=sys.stderr)
        return 2
    client, transport = connect(argv[1], os.environ.get("PUTALLKV_TOKEN"))
    try:
        return run(client)
    except KVError as e:
        print(f"error {ErrorCode._VALUES_TO_NAMES[e.code]}: {e.message}", file=sys.stderr)
        return 1
    finally:
        transport.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
