#!/usr/bin/env python3
"""Print the sha256 of every tensor's data in GGUF files (python3 + struct + hashlib only).

Independent of QuantZoo's C++ code: used to check the golden hashes of llama.cpp's files, e.g.
    tests/tools/gguf_tensor_sha256.py tests/data/golden/bard-llama/*.gguf
Output (TSV): file, idx, tensor, ggml type id, ne (ne0xne1...), n_bytes, sha256.
"""
import hashlib
import os
import struct
import sys

SCALAR = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: 'B', 10: 'Q', 11: 'q', 12: 'd'}
# ggml type id -> (block size, bytes per block), core/gguf/README.md A.1 / core/ggml/README.md B.2
TYPES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
         10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
         20: (32, 18), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 30: (1, 2)}


class Reader:
    def __init__(self, data):
        self.d, self.o = data, 0

    def take(self, fmt):
        v = struct.unpack_from('<' + fmt, self.d, self.o)
        self.o += struct.calcsize('<' + fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take('Q')
        s = self.d[self.o:self.o + n]
        self.o += n
        return s.decode('utf-8', 'replace')

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take('I'), self.take('Q')
            return [self.value(et) for _ in range(n)]
        return self.take(SCALAR[t])


def tensors(path):
    data = open(path, 'rb').read()
    r = Reader(data)
    if data[:4] != b'GGUF':
        raise SystemExit(f'{path}: not a GGUF file')
    r.o = 4
    _version, n_tensors, n_kv = r.take('I'), r.take('Q'), r.take('Q')
    align = 32
    for _ in range(n_kv):
        key, t = r.string(), r.take('I')
        v = r.value(t)
        if key == 'general.alignment':
            align = v
    infos = []
    for _ in range(n_tensors):
        name, nd = r.string(), r.take('I')
        ne = [r.take('Q') for _ in range(nd)]
        typ, off = r.take('I'), r.take('Q')
        infos.append((name, ne, typ, off))
    start = (r.o + align - 1) // align * align
    for i, (name, ne, typ, off) in enumerate(infos):
        n = 1
        for x in ne:
            n *= x
        bs, ts = TYPES[typ]
        nbytes = n // bs * ts
        blob = data[start + off:start + off + nbytes]
        yield i, name, typ, 'x'.join(map(str, ne)), nbytes, hashlib.sha256(blob).hexdigest()


def main():
    for path in sys.argv[1:]:
        for row in tensors(path):
            print('\t'.join([os.path.basename(path)] + [str(x) for x in row]))


if __name__ == '__main__':
    main()
