"""mpack_min.py - a minimal msgpack encoder/decoder for the system tests
(stdlib only), enough for the shardflow wire: nil, bool, int, float, str,
bin, array, map; ext is decoded as ("ext", type, bytes)."""
import struct


def pack(v):
    out = bytearray()
    _pack(v, out)
    return bytes(out)


def _pack(v, out):
    if v is None:
        out.append(0xC0)
    elif v is True:
        out.append(0xC3)
    elif v is False:
        out.append(0xC2)
    elif isinstance(v, int):
        if 0 <= v < 128:
            out.append(v)
        elif -32 <= v < 0:
            out.append(v & 0xFF)
        elif 0 <= v < 1 << 8:
            out += b"\xcc" + struct.pack(">B", v)
        elif 0 <= v < 1 << 16:
            out += b"\xcd" + struct.pack(">H", v)
        elif 0 <= v < 1 << 32:
            out += b"\xce" + struct.pack(">I", v)
        elif 0 <= v < 1 << 64:
            out += b"\xcf" + struct.pack(">Q", v)
        elif -(1 << 7) <= v:
            out += b"\xd0" + struct.pack(">b", v)
        elif -(1 << 15) <= v:
            out += b"\xd1" + struct.pack(">h", v)
        elif -(1 << 31) <= v:
            out += b"\xd2" + struct.pack(">i", v)
        else:
            out += b"\xd3" + struct.pack(">q", v)
    elif isinstance(v, float):
        out += b"\xcb" + struct.pack(">d", v)
    elif isinstance(v, str):
        b = v.encode("utf-8")
        n = len(b)
        if n < 32:
            out.append(0xA0 | n)
        elif n < 1 << 8:
            out += b"\xd9" + struct.pack(">B", n)
        elif n < 1 << 16:
            out += b"\xda" + struct.pack(">H", n)
        else:
            out += b"\xdb" + struct.pack(">I", n)
        out += b
    elif isinstance(v, (bytes, bytearray)):
        n = len(v)
        if n < 1 << 8:
            out += b"\xc4" + struct.pack(">B", n)
        elif n < 1 << 16:
            out += b"\xc5" + struct.pack(">H", n)
        else:
            out += b"\xc6" + struct.pack(">I", n)
        out += v
    elif isinstance(v, (list, tuple)):
        n = len(v)
        if n < 16:
            out.append(0x90 | n)
        elif n < 1 << 16:
            out += b"\xdc" + struct.pack(">H", n)
        else:
            out += b"\xdd" + struct.pack(">I", n)
        for x in v:
            _pack(x, out)
    elif isinstance(v, dict):
        n = len(v)
        if n < 16:
            out.append(0x80 | n)
        elif n < 1 << 16:
            out += b"\xde" + struct.pack(">H", n)
        else:
            out += b"\xdf" + struct.pack(">I", n)
        for k, x in v.items():
            _pack(k, out)
            _pack(x, out)
    else:
        raise TypeError("cannot pack %r" % (v,))


class DecodeError(ValueError):
    pass


def unpack(data):
    """Decode exactly one value occupying all of data."""
    v, pos = _unpack(memoryview(data), 0, 0)
    if pos != len(data):
        raise DecodeError("%d trailing bytes" % (len(data) - pos))
    return v


def _need(d, pos, n):
    if pos + n > len(d):
        raise DecodeError("truncated at %d" % pos)


def _unpack(d, pos, depth):
    if depth > 200:
        raise DecodeError("too deep")
    _need(d, pos, 1)
    b = d[pos]
    pos += 1
    if b < 0x80:
        return b, pos
    if b >= 0xE0:
        return b - 0x100, pos
    if 0x80 <= b <= 0x8F:
        return _map(d, pos, b & 0x0F, depth)
    if 0x90 <= b <= 0x9F:
        return _arr(d, pos, b & 0x0F, depth)
    if 0xA0 <= b <= 0xBF:
        return _str(d, pos, b & 0x1F)
    if b == 0xC0:
        return None, pos
    if b == 0xC2:
        return False, pos
    if b == 0xC3:
        return True, pos
    fixed = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b",
             0xD1: ">h", 0xD2: ">i", 0xD3: ">q", 0xCA: ">f", 0xCB: ">d"}
    if b in fixed:
        fmt = fixed[b]
        n = struct.calcsize(fmt)
        _need(d, pos, n)
        return struct.unpack(fmt, d[pos:pos + n])[0], pos + n
    lens = {0xD9: (">B", "str"), 0xDA: (">H", "str"), 0xDB: (">I", "str"),
            0xC4: (">B", "bin"), 0xC5: (">H", "bin"), 0xC6: (">I", "bin"),
            0xDC: (">H", "arr"), 0xDD: (">I", "arr"),
            0xDE: (">H", "map"), 0xDF: (">I", "map")}
    if b in lens:
        fmt, kind = lens[b]
        n = struct.calcsize(fmt)
        _need(d, pos, n)
        ln = struct.unpack(fmt, d[pos:pos + n])[0]
        pos += n
        if kind == "str":
            return _str(d, pos, ln)
        if kind == "bin":
            _need(d, pos, ln)
            return bytes(d[pos:pos + ln]), pos + ln
        if kind == "arr":
            return _arr(d, pos, ln, depth)
        return _map(d, pos, ln, depth)
    ext = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
    if b in ext:
        _need(d, pos, 1 + ext[b])
        return ("ext", d[pos], bytes(d[pos + 1:pos + 1 + ext[b]])), \
            pos + 1 + ext[b]
    if b in (0xC7, 0xC8, 0xC9):
        fmt = {0xC7: ">B", 0xC8: ">H", 0xC9: ">I"}[b]
        n = struct.calcsize(fmt)
        _need(d, pos, n + 1)
        ln = struct.unpack(fmt, d[pos:pos + n])[0]
        t = d[pos + n]
        pos += n + 1
        _need(d, pos, ln)
        return ("ext", t, bytes(d[pos:pos + ln])), pos + ln
    raise DecodeError("bad byte 0x%02x at %d" % (b, pos - 1))


def _str(d, pos, n):
    _need(d, pos, n)
    return bytes(d[pos:pos + n]).decode("utf-8"), pos + n


def _arr(d, pos, n, depth):
    res = []
    for _ in range(n):
        v, pos = _unpack(d, pos, depth + 1)
        res.append(v)
    return res, pos


def _map(d, pos, n, depth):
    res = {}
    for _ in range(n):
        k, pos = _unpack(d, pos, depth + 1)
        v, pos = _unpack(d, pos, depth + 1)
        if isinstance(k, list):
            k = tuple(k)
        if isinstance(k, dict):
            k = repr(k)
        res[k] = v
    return res, pos
