"""Sends the caller's deadline in TTHeader (examples/python/ttheader.py) and shows that the
server honours it: with write admission at 1 key/s and a burst of 5, a first atomic PutAll of
5 keys empties the bucket, and a second needs about 5 s of refill. Given a 1 s deadline the
server refuses it at once (RESOURCE_EXHAUSTED with retry_after_ms) instead of waiting.

    PYTHONPATH=GEN:examples/python python3 deadline.py HOST:PORT
"""

import sys

from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket

from ttheader import TTHeaderTransport

from kv import KVService
from kv.ttypes import Entry, ErrorCode, KVError, PutAllRequest, WriteMode


def batch(prefix):
    return PutAllRequest(entries=[Entry(key=f"{prefix}{i}", value=b"v") for i in range(5)],
                         mode=WriteMode.ATOMIC)


def main(addr):
    host, _, port = addr.rpartition(":")
    sock = TSocket.TSocket(host, int(port))
    sock.setTimeout(30_000)
    transport = TTHeaderTransport(sock, timeout_ms=1000)
    client = KVService.Client(TBinaryProtocol.TBinaryProtocol(transport))
    transport.open()
    try:
        print(f"first applied={client.PutAll(batch('a')).applied}")
        try:
            second = client.PutAll(batch("b"))
            print(f"second applied={second.applied}")
        except KVError as e:
            print(f"second {ErrorCode._VALUES_TO_NAMES[e.code]} retry_after_ms={e.retry_after_ms}")
    finally:
        transport.close()


if __name__ == "__main__":
    main(sys.argv[1])
