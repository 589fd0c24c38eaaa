#!/usr/bin/env python3
"""Dump the tokenizer.* key/values of a GGUF file as JSON (python3 standard library only).

Independent of QuantZoo's C++ code: reads the GGUF v2/v3 header with `struct`, stops after the
key/values (tensor infos and data are not needed).

Usage: gguf_tokenizer_keys.py FILE.gguf [OUT.json]

Output: {"_source": ..., "keys": {key: {"type": TYPE, "value": VALUE}}} with TYPE the GGUF value type
name (arrays as "ARRAY[ELEMTYPE]"). Floats are written with repr() so they round-trip exactly.
"""
import json
import os
import struct
import sys

TYPES = {0: "UINT8", 1: "INT8", 2: "UINT16", 3: "INT16", 4: "UINT32", 5: "INT32", 6: "FLOAT32",
         7: "BOOL", 8: "STRING", 9: "ARRAY", 10: "UINT64", 11: "INT64", 12: "FLOAT64"}
SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
          12: "<d"}


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("truncated GGUF at offset %d" % self.pos)
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def scalar(self, t):
        fmt = SCALAR[t]
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        n = struct.unpack("<Q", self.take(8))[0]
        return self.take(n).decode("utf-8", errors="surrogateescape")

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et = struct.unpack("<I", self.take(4))[0]
            n = struct.unpack("<Q", self.take(8))[0]
            if et == 8:
                return "ARRAY[STRING]", [self.string() for _ in range(n)]
            if et not in SCALAR:
                raise ValueError("unsupported array element type %d" % et)
            fmt = SCALAR[et]
            size = struct.calcsize(fmt)
            raw = self.take(size * n)
            vals = [v[0] for v in struct.iter_unpack(fmt, raw)]
            return "ARRAY[%s]" % TYPES[et], vals
        if t not in SCALAR:
            raise ValueError("unknown value type %d" % t)
        return self.scalar(t)


def dump(path):
    with open(path, "rb") as f:
        data = f.read()
    r = Reader(data)
    if r.take(4) != b"GGUF":
        raise ValueError("not a GGUF file")
    version = struct.unpack("<I", r.take(4))[0]
    if version not in (2, 3):
        raise ValueError("unsupported GGUF version %d" % version)
    struct.unpack("<Q", r.take(8))  # tensor count
    n_kv = struct.unpack("<Q", r.take(8))[0]
    keys = {}
    for _ in range(n_kv):
        key = r.string()
        t = struct.unpack("<I", r.take(4))[0]
        v = r.value(t)
        if not key.startswith("tokenizer."):
            continue
        if t == 9:
            tname, vals = v
            keys[key] = {"type": tname, "value": vals}
        else:
            keys[key] = {"type": TYPES[t], "value": v}
    return keys


def main():
    if len(sys.argv) not in (2, 3):
        sys.stderr.write(__doc__)
        return 2
    keys = dump(sys.argv[1])
    out = {"_source": "tokenizer.* keys of %s (written by llama.cpp's convert_hf_to_gguf.py), dumped by "
                      "tests/tools/gguf_tokenizer_keys.py" % os.path.basename(sys.argv[1]),
           "keys": keys}
    text = json.dumps(out, ensure_ascii=False, indent=1) + "\n"
    if len(sys.argv) == 3:
        with open(sys.argv[2], "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
