#!/usr/bin/env python3
"""Recover the i-quant code books from llama.cpp's own dequantizers and write core/ggml/iq_grids.h.

The grids of IQ2_XXS/IQ2_XS/IQ2_S/IQ3_XXS/IQ3_S/IQ1_S/IQ1_M and the 7-bit sign table are format data:
a GGUF file stores only indices into them. Instead of transcribing them, this script dlopens the
prebuilt libggml-base.so that tests/llama/setup.sh installs (npm package @node-llama-cpp/linux-x64) and
asks its dequantize_row_* functions for every entry, on crafted blocks with super-scale d = 1, sub-scale
code 0, grid index i and no signs:
    IQ2_XXS / IQ2_XS / IQ2_S   y = 0.125 * byte          (d * (0.5 + 0) * 0.25)
    IQ3_XXS                    y = 0.25 * byte           (d * (0.5 + 0) * 0.5)
    IQ3_S                      y = byte                  (d * (1 + 2 * 0))
    IQ1_S                      y = value + 0.125         (d * (2 * 0 + 1) * (value + delta), delta > 0)
The sign table comes from IQ2_XXS blocks with grid entry 0 (all bytes non-zero) and sign index s.
Every recovered value is checked to be an exact small integer; any surprise aborts.

Usage: tests/tools/gen_iq_grids.py [path/to/libggml-base.so] > core/ggml/iq_grids.h
"""
import ctypes
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_LIB = os.path.join(HERE, '..', 'llama', 'node_modules', '@node-llama-cpp', 'linux-x64', 'bins',
                           'linux-x64', 'libggml-base.so')
F16_ONE = 0x3C00


def load(path):
    lib = ctypes.CDLL(path)
    for name in ('iq2_xxs', 'iq2_xs', 'iq2_s', 'iq3_xxs', 'iq3_s', 'iq1_s'):
        fn = getattr(lib, 'dequantize_row_' + name)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn.restype = None
    return lib


def dequant(lib, name, block):
    out = (ctypes.c_float * 256)()
    buf = ctypes.create_string_buffer(bytes(block), len(block))
    getattr(lib, 'dequantize_row_' + name)(buf, out, 256)
    return list(out)


def exact(v, unit, what):
    q = v / unit
    if q != int(q):
        sys.exit(f'{what}: {v} is not a multiple of {unit}')
    return int(q)


def iq2_xxs(lib):
    """256 entries of 8 bytes; block: d, then per 32 values two u32 (4 grid bytes; signs|scale)."""
    grid = []
    for blk in range(256 // 32):
        qs = bytearray()
        for g in range(8):
            base = blk * 32 + g * 4
            qs += bytes([base, base + 1, base + 2, base + 3]) + struct.pack('<I', 0)
        y = dequant(lib, 'iq2_xxs', struct.pack('<H', F16_ONE) + qs)
        for e in range(32):
            grid.append([exact(v, 0.125, 'iq2_xxs') for v in y[8 * e:8 * e + 8]])
    return grid


def ksigns(lib, grid0):
    """7-bit sign index -> 8 sign bits, via IQ2_XXS with grid entry 0 and sign index s in slot 0."""
    assert all(b != 0 for b in grid0)
    table = []
    for s in range(128):
        qs = bytearray(64)
        struct.pack_into('<I', qs, 4, s)
        y = dequant(lib, 'iq2_xxs', struct.pack('<H', F16_ONE) + qs)
        bits = 0
        for j in range(8):
            if y[j] < 0:
                bits |= 1 << j
            if abs(y[j]) != 0.125 * grid0[j]:
                sys.exit('ksigns: unexpected magnitude')
        table.append(bits)
    return table


def iq2_xs(lib):
    """512 entries; qs u16 = 9-bit index | sign index << 9, scales nibbles 0."""
    grid = []
    for blk in range(512 // 32):
        qs = b''.join(struct.pack('<H', blk * 32 + i) for i in range(32))
        y = dequant(lib, 'iq2_xs', struct.pack('<H', F16_ONE) + qs + bytes(8))
        for e in range(32):
            grid.append([exact(v, 0.125, 'iq2_xs') for v in y[8 * e:8 * e + 8]])
    return grid


def iq2_s(lib):
    """1024 entries; qs[32] low index bytes, 32 explicit sign bytes, qh[8] (2 high bits per 8), scales."""
    grid = []
    for blk in range(1024 // 32):
        idx = [blk * 32 + i for i in range(32)]
        low = bytes(i & 255 for i in idx)
        qh = bytearray(8)
        for ib in range(8):
            for l in range(4):
                qh[ib] |= ((idx[4 * ib + l] >> 8) & 3) << (2 * l)
        y = dequant(lib, 'iq2_s', struct.pack('<H', F16_ONE) + low + bytes(32) + bytes(qh) + bytes(8))
        for e in range(32):
            grid.append([exact(v, 0.125, 'iq2_s') for v in y[8 * e:8 * e + 8]])
    return grid


def iq3_xxs(lib):
    """256 entries of 4 bytes; qs[64] index bytes, then 8 u32 of signs|scale."""
    idx = list(range(64))
    grid = [None] * 256
    for blk in range(256 // 64):
        qs = bytes(blk * 64 + i for i in idx)
        y = dequant(lib, 'iq3_xxs', struct.pack('<H', F16_ONE) + qs + bytes(32))
        for e in range(64):
            grid[blk * 64 + e] = [exact(v, 0.25, 'iq3_xxs') for v in y[4 * e:4 * e + 4]]
    return grid


def iq3_s(lib):
    """512 entries of 4 bytes; qs[64] low bytes, qh[8] (9th bit per index), signs[32], scales[4]."""
    grid = [None] * 512
    for blk in range(512 // 64):
        idx = [blk * 64 + i for i in range(64)]
        low = bytes(i & 255 for i in idx)
        qh = bytearray(8)
        for ib in range(8):
            for k in range(8):
                qh[ib] |= ((idx[8 * ib + k] >> 8) & 1) << k
        y = dequant(lib, 'iq3_s', struct.pack('<H', F16_ONE) + low + bytes(qh) + bytes(32) + bytes(4))
        for e in range(64):
            grid[blk * 64 + e] = [exact(v, 1.0, 'iq3_s') for v in y[4 * e:4 * e + 4]]
    return grid


def iq1_s(lib):
    """2048 entries of 8 values in {-1, 0, 1}; qs[32] low bytes, qh u16[8]: 3 high bits per index."""
    grid = []
    for blk in range(2048 // 32):
        idx = [blk * 32 + i for i in range(32)]
        low = bytes(i & 255 for i in idx)
        qh = b''.join(struct.pack('<H', sum(((idx[4 * ib + l] >> 8) & 7) << (3 * l) for l in range(4)))
                      for ib in range(8))
        y = dequant(lib, 'iq1_s', struct.pack('<H', F16_ONE) + low + qh)
        for e in range(32):
            grid.append([exact(v - 0.125, 1.0, 'iq1_s') for v in y[8 * e:8 * e + 8]])
    return grid


def version(path):
    data = open(path, 'rb').read()
    m = re.search(rb'\b(\d+\.\d+\.\d+)\x00', data)
    info = os.path.join(os.path.dirname(path), '..', '..', '..', '..', 'node-llama-cpp', 'llama',
                        'llama.cpp.info.json')
    tag = '?'
    if os.path.exists(info):
        m2 = re.search(r'"tag":\s*"([^"]+)"', open(info).read())
        tag = m2.group(1) if m2 else '?'
    return tag


def emit_bytes(name, ctype, grid, per_line):
    n, width = len(grid), len(grid[0])
    out = [f'inline constexpr {ctype} {name}[{n}][{width}] = {{']
    for i in range(0, n, per_line):
        row = ' '.join('{' + ', '.join(str(v) for v in grid[j]) + '},' for j in range(i, min(n, i + per_line)))
        out.append('    ' + row)
    out.append('};')
    return '\n'.join(out)


def main():
    path = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_LIB)
    lib = load(path)
    g2xxs = iq2_xxs(lib)
    signs = ksigns(lib, g2xxs[0])
    g2xs, g2s, g3xxs, g3s, g1s = iq2_xs(lib), iq2_s(lib), iq3_xxs(lib), iq3_s(lib), iq1_s(lib)
    # sanity: the value sets described in core/ggml/README-iquants.md
    for g, allowed in ((g2xxs, {8, 25, 43}), (g2xs, {8, 25, 43}), (g2s, {8, 25, 43}),
                       (g3xxs, {4, 12, 20, 28, 36, 44, 52, 62}), (g3s, set(range(1, 16, 2))),
                       (g1s, {-1, 0, 1})):
        vals = {v for e in g for v in e}
        if not vals <= allowed:
            sys.exit(f'unexpected grid values {sorted(vals - allowed)}')
        if len({tuple(e) for e in g}) != len(g):
            sys.exit('duplicate grid entry')
    for s in range(128):
        if signs[s] & 127 != s or bin(signs[s]).count('1') % 2:
            sys.exit('sign table is not "index plus even-parity bit"')
    tag = version(path)
    print(f'''// The i-quant code books (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S/IQ1_M) and the 7-bit sign table.
// GENERATED by tests/tools/gen_iq_grids.py -- do not edit. The script dlopens llama.cpp's prebuilt
// libggml-base.so (npm @node-llama-cpp/linux-x64, llama.cpp release {tag}) and reads every entry back from
// its dequantize_row_* functions on crafted blocks (d = 1, scale code 0, index i, no signs); see the script.
// Entry i, element j is the byte (IQ1: the value) that ggml's grid holds at byte j of entry i.
// Value sets: IQ2 {{8, 25, 43}}, IQ3_XXS {{4, 12, ..., 52, 62}}, IQ3_S {{1, 3, ..., 15}}, IQ1 {{-1, 0, 1}}
// (core/ggml/README-iquants.md).
#pragma once

#include <cstdint>

namespace qz::ggml::iqgrid {{
''')
    print('// ksigns: 7-bit sign index -> 8 sign bits (bit j set: element j negative); bit 7 = parity.')
    print('inline constexpr uint8_t kSigns[128] = {')
    for i in range(0, 128, 16):
        print('    ' + ' '.join(f'{v},' for v in signs[i:i + 16]))
    print('};\n')
    print(emit_bytes('kIQ2XXS', 'uint8_t', g2xxs, 4) + '\n')
    print(emit_bytes('kIQ2XS', 'uint8_t', g2xs, 4) + '\n')
    print(emit_bytes('kIQ2S', 'uint8_t', g2s, 4) + '\n')
    print(emit_bytes('kIQ3XXS', 'uint8_t', g3xxs, 8) + '\n')
    print(emit_bytes('kIQ3S', 'uint8_t', g3s, 8) + '\n')
    print(emit_bytes('kIQ1S', 'int8_t', g1s, 4) + '\n')
    print('}  // namespace qz::ggml::iqgrid')


if __name__ == '__main__':
    main()
