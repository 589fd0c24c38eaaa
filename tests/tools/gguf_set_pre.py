#!/usr/bin/env python3
"""Copy a tensor-less (vocab-only) GGUF file, replacing the value of tokenizer.ggml.pre.

Usage: gguf_set_pre.py IN.gguf OUT.gguf NEW_PRE_NAME
Used to let real llama.cpp tokenize with the llama-bpe / qwen2 pre-tokenizers over a vocab we have
(tests/data/models/vocab/ggml-vocab-gpt-2.gguf), so that their splitting can be checked.
"""
import struct
import sys

SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def main():
    src, dst, pre = sys.argv[1], sys.argv[2], sys.argv[3]
    data = open(src, "rb").read()
    if data[:4] != b"GGUF":
        raise SystemExit("not GGUF")
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    if n_tensors != 0:
        raise SystemExit("only vocab-only files (no tensors) are supported")
    pos = 24
    out = bytearray(data[:24])

    def skip_value(t, p):
        if t == 8:
            n = struct.unpack_from("<Q", data, p)[0]
            return p + 8 + n
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, p)
            p += 12
            for _ in range(n):
                p = skip_value(et, p)
            return p
        return p + SCALAR[t]

    for _ in range(n_kv):
        start = pos
        klen = struct.unpack_from("<Q", data, pos)[0]
        key = data[pos + 8:pos + 8 + klen].decode()
        pos += 8 + klen
        t = struct.unpack_from("<I", data, pos)[0]
        end = skip_value(t, pos + 4)
        if key == "tokenizer.ggml.pre":
            v = pre.encode()
            out += data[start:pos + 4] + struct.pack("<Q", len(v)) + v
        else:
            out += data[start:end]
        pos = end
    alignment = 32
    while len(out) % alignment:
        out += b"\0"
    open(dst, "wb").write(out)


if __name__ == "__main__":
    main()
