#!/usr/bin/env python3
"""Independent GGUF dumper (python3 `struct` only), written from core/gguf/README.md A.1.

Used to derive the expected values hard-coded in tests/core/test_gguf*.cpp, independently of the
C++ reader under test. Prints header fields, every KV (type and a value summary) and every tensor
info (name, n_dims, ne, type, relative offset), plus the data-section offset and the sha256 of
each tensor's bytes.

usage: gguf_struct_dump.py FILE.gguf [--tensors] [--full KEY]
"""
import hashlib
import struct
import sys

SCALAR = {0: '<B', 1: '<b', 2: '<H', 3: '<h', 4: '<I', 5: '<i', 6: '<f', 7: '<?', 10: '<Q', 11: '<q', 12: '<d'}
TNAMES = {0: 'U8', 1: 'I8', 2: 'U16', 3: 'I16', 4: 'U32', 5: 'I32', 6: 'F32', 7: 'BOOL', 8: 'STRING',
          9: 'ARRAY', 10: 'U64', 11: 'I64', 12: 'F64'}
# ggml type id -> (name, block size, bytes per block)
GTYPES = {0: ('F32', 1, 4), 1: ('F16', 1, 2), 2: ('Q4_0', 32, 18), 3: ('Q4_1', 32, 20), 6: ('Q5_0', 32, 22),
          7: ('Q5_1', 32, 24), 8: ('Q8_0', 32, 34), 9: ('Q8_1', 32, 36), 10: ('Q2_K', 256, 84),
          11: ('Q3_K', 256, 110), 12: ('Q4_K', 256, 144), 13: ('Q5_K', 256, 176), 14: ('Q6_K', 256, 210),
          15: ('Q8_K', 256, 292), 20: ('IQ4_NL', 32, 18), 24: ('I8', 1, 1), 25: ('I16', 1, 2),
          26: ('I32', 1, 4), 27: ('I64', 1, 8), 28: ('F64', 1, 8), 30: ('BF16', 1, 2),
          34: ('TQ1_0', 256, 54), 35: ('TQ2_0', 256, 66)}


class Reader:
    def __init__(self, data):
        self.d = data
        self.p = 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.p)[0]
        self.p += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take('<Q')
        s = self.d[self.p:self.p + n]
        self.p += n
        return s.decode('utf-8', errors='replace')

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et = self.take('<I')
            n = self.take('<Q')
            return ('array', TNAMES[et], [self.value(et) for _ in range(n)])
        return self.take(SCALAR[t])


def main():
    path = sys.argv[1]
    data = open(path, 'rb').read()
    r = Reader(data)
    assert data[:4] == b'GGUF'
    r.p = 4
    version = r.take('<I')
    n_tensors = r.take('<Q')
    n_kv = r.take('<Q')
    print(f'version {version} n_tensors {n_tensors} n_kv {n_kv}')
    align = 32
    full = sys.argv[sys.argv.index('--full') + 1] if '--full' in sys.argv else None
    for _ in range(n_kv):
        key = r.string()
        t = r.take('<I')
        v = r.value(t)
        if key == 'general.alignment':
            align = v
        if isinstance(v, tuple):
            shown = v[2] if key == full else (v[2][:3], '...') if len(v[2]) > 3 else v[2]
            print(f'kv {key} ARRAY[{v[1]}] count={len(v[2])} {shown}')
        else:
            print(f'kv {key} {TNAMES[t]} {v!r}')
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.take('<I')
        ne = [r.take('<Q') for _ in range(nd)]
        gt = r.take('<I')
        off = r.take('<Q')
        infos.append((name, nd, ne, gt, off))
    data_off = (r.p + align - 1) // align * align
    print(f'end_of_infos {r.p} data_offset {data_off} file_size {len(data)}')
    if '--tensors' in sys.argv:
        for name, nd, ne, gt, off in infos:
            tname, bs, ts = GTYPES[gt]
            n = 1
            for x in ne:
                n *= x
            nbytes = n // bs * ts
            blob = data[data_off + off:data_off + off + nbytes]
            print(f'tensor {name} n_dims={nd} ne={ne} type={tname} off={off} nbytes={nbytes} '
                  f'sha256={hashlib.sha256(blob).hexdigest()}')


if __name__ == '__main__':
    main()
