"""TTHeader, Kitex's framing, as an Apache Thrift transport for Python.

putallkv reads the caller's token, trace id and deadline from TTHeader metadata only. Apache
Thrift's own THeader transport does not interoperate with it (another magic number, varint
fields where TTHeader has fixed-width ones), so a non-Kitex client that needs them wraps its
socket in this transport instead of a framed one. One message per frame:

    LENGTH u32 | MAGIC 0x1000 u16 | FLAGS u16 | SEQ_ID u32 | HEADER_SIZE u16 (in 4-byte words)
    | PROTOCOL_ID u8 (0: binary) | TRANSFORM_COUNT u8 (0) | info blocks | zero padding | payload

with info blocks 0x01 (string key-values: u16 count, then u16-length key and value each) and
0x10 (integer key-values: u16 count, then u16 key and u16-length value each). Reference:
https://www.cloudwego.io/docs/kitex/reference/transport_protocol_ttheader/
"""

import io
import struct

from thrift.transport import TTransport

MAGIC = 0x1000
PROTOCOL_BINARY = 0
INFO_KEY_VALUE = 0x01
INFO_INT_KEY_VALUE = 0x10
INT_KEY_RPC_TIMEOUT = 12  # the caller's deadline, in milliseconds
MAX_FRAME = 64 << 20  # bounds what a reply may make this client allocate

# The names under which putallkv reads metadata: Kitex metainfo transient values, whose wire
# key is the name prefixed with RPC_TRANSIT_.
TOKEN = "RPC_TRANSIT_PUTALLKV_TOKEN"
TRACE_ID = "RPC_TRANSIT_PUTALLKV_REQUEST_ID"


def _str16(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _info(strings, ints):
    out = b""
    if strings:
        out += struct.pack("!BH", INFO_KEY_VALUE, len(strings))
        out += b"".join(_str16(k) + _str16(v) for k, v in strings.items())
    if ints:
        out += struct.pack("!BH", INFO_INT_KEY_VALUE, len(ints))
        out += b"".join(struct.pack("!H", k) + _str16(v) for k, v in ints.items())
    return out


def _seq_id(payload):
    """The sequence id of a strict binary message: after the version and the name."""
    (name_len,) = struct.unpack_from("!I", payload, 4)
    (seq,) = struct.unpack_from("!i", payload, 8 + name_len)
    return seq


class TTHeaderTransport(TTransport.TTransportBase):
    """Sends each message in a TTHeader frame carrying headers (string key-values) and, when
    timeout_ms is set, the caller's deadline; reads the payload of each reply frame."""

    def __init__(self, trans, headers=None, timeout_ms=None):
        self._trans = trans
        self._headers = dict(headers or {})
        self._ints = {INT_KEY_RPC_TIMEOUT: str(timeout_ms)} if timeout_ms else {}
        self._wbuf = io.BytesIO()
        self._rbuf = io.BytesIO()

    def isOpen(self):
        return self._trans.isOpen()

    def open(self):
        return self._trans.open()

    def close(self):
        return self._trans.close()

    def write(self, buf):
        self._wbuf.write(buf)

    def flush(self):
        payload = self._wbuf.getvalue()
        self._wbuf = io.BytesIO()
        header = struct.pack("!BB", PROTOCOL_BINARY, 0) + _info(self._headers, self._ints)
        header += b"\0" * (-len(header) % 4)
        frame = struct.pack("!HHiH", MAGIC, 0, _seq_id(payload), len(header) // 4) + header + payload
        self._trans.write(struct.pack("!I", len(frame)) + frame)
        self._trans.flush()

    def read(self, sz):
        got = self._rbuf.read(sz)
        if got:
            return got
        self._read_frame()
        return self._rbuf.read(sz)

    def _read_frame(self):
        (size,) = struct.unpack("!I", self._trans.readAll(4))
        if size < 10 or size > MAX_FRAME:
            raise TTransport.TTransportException(TTransport.TTransportException.UNKNOWN,
                                                 f"a reply frame of {size} bytes")
        magic, _flags, _seq, words = struct.unpack("!HHiH", self._trans.readAll(10))
        if magic != MAGIC or 10 + 4 * words > size:
            raise TTransport.TTransportException(TTransport.TTransportException.UNKNOWN,
                                                 "the reply is not a TTHeader frame")
        self._trans.readAll(4 * words)  # the reply's headers: nothing this client needs
        self._rbuf = io.BytesIO(self._trans.readAll(size - 10 - 4 * words))
