#!/usr/bin/env python3
"""Independent EXL2 reader: decodes the q_* tensors of EXL2 linears as exllamav2 v0.3.2's loader does and
compares them with reference weights.

usage: read_check.py DIR_OR_FILE REF.safetensors [--verbose] [--keys]

  DIR_OR_FILE      an EXL2 model directory (every *.safetensors in it is read, as exllamav2's config.py
                   globs them; no index is used) or one .safetensors file.
  REF.safetensors  reference tensors. For every tensor "<prefix>.weight" in REF (F32, F16 or BF16, shape
                   [out, in] as the model stores it):
                     - if DIR has "<prefix>.q_weight", the layer is decoded from <prefix>.q_weight / q_scale /
                       q_scale_max / q_groups / q_invperm and must equal REF exactly (as float32);
                     - otherwise DIR must hold "<prefix>.weight" itself, compared after conversion to
                       float32 (exllamav2 loads unquantized tensors as fp16, so an exporter's reference for
                       those is their fp16 value).
                   Other REF tensors (not ending in ".weight") are compared as stored, by name.
  --keys           also check DIR against exllamav2's key rules for the architecture in DIR/config.json
                   (see check_keys below): every key its loader expects is there, every linear layer of
                   the decoder and the head is quantized, no fused tensor shadows the quantized parts.
  Exit status 0 when every REF tensor is equal ("N of N tensors equal" is printed last), 1 on any
  difference ("MISMATCH <prefix>: ..." lines) or malformed input, 2 on a usage error.

Decoding, from exllamav2's loader (module.py load_weight, ext.py make_q_matrix / make_group_map_py,
ext_qmatrix.cpp checks, q_matrix.cu QMatrix() and reconstruct_kernel, quant/qdq_util.cuh dq_scale / dq):
  * dtypes: q_weight int32 [qrows, width], q_scale int32 [G, width/8], q_scale_max float16 [G],
    q_groups int16 [2G] = (bits, first q_weight row) per group, q_invperm int32 [height].
  * q_perm = argsort(q_invperm) (module.py); the kernels read it as 16-bit values.
  * group i spans (next group's first row - its first row) * 32 / bits rows (the last group: up to
    q_weight's height), groups must come in non-increasing bit order (the kernels walk rows_8, rows_6, ...).
  * q_weight: within each group, each column is a little-endian bit stream over the group's rows; row j of
    the group is bits [j*b, j*b + b) of the concatenated 32-bit words.
  * out_features is padded to a multiple of 32 (linear.py pad32); the padding columns must decode to 0.
  * q_scale: 4 bits per column, column n at bits 4*(n%8) of word n//8, stored minus one.
  * max_scale = fp16(q_scale_max * (1/256))   (make_q_matrix: w["q_scale_max"] *= prescale / 256, fp16)
    scale[g, n] = fp16(fp16((qs+1)^2) * max_scale)   (dq_scale, __hmul)
    W[q_perm[k], n] = fp16(fp16(q - 2^(b-1)) * scale)  (dq, __hmul), for stored row k.
Only numpy is needed (Debian: python3-numpy); safetensors are parsed here.
"""
import glob
import json
import os
import struct
import sys

import numpy as np

DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}


class Fail(Exception):
    pass


def read_header(path):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise Fail(f"{path}: shorter than 8 bytes")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000 or 8 + n > size:
            raise Fail(f"{path}: header length {n} is invalid")
        header = json.loads(f.read(n).decode("utf-8"))
    if not isinstance(header, dict):
        raise Fail(f"{path}: header is not an object")
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info.get("dtype")
        if dt not in DTYPES:
            raise Fail(f"{path}: {name}: unsupported dtype {dt}")
        shape = [int(d) for d in info["shape"]]
        begin, end = (int(x) for x in info["data_offsets"])
        numel = int(np.prod(shape)) if shape else 1
        if begin < 0 or end < begin or base + end > size or end - begin != numel * np.dtype(DTYPES[dt]).itemsize:
            raise Fail(f"{path}: {name}: data offsets [{begin}, {end}) do not fit dtype/shape/file")
        tensors[name] = (path, dt, shape, base + begin, numel)
    return tensors


def load(entry):
    path, dt, shape, offset, numel = entry
    a = np.fromfile(path, dtype=DTYPES[dt], count=numel, offset=offset).reshape(shape)
    return dt, a


def as_f32(dt, a):
    if dt == "BF16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def scan(target):
    if os.path.isdir(target):
        files = sorted(glob.glob(os.path.join(target, "*.safetensors")))
        if not files:
            raise Fail(f"{target}: no *.safetensors files")
    else:
        files = [target]
    tensors = {}
    for f in files:
        for name, e in read_header(f).items():
            if name in tensors:
                raise Fail(f"{name} is in both {tensors[name][0]} and {f}")
            tensors[name] = e
    return tensors


def decode_exl2(t, prefix):
    def get(suffix, dtype, ndim):
        key = prefix + "." + suffix
        if key not in t:
            raise Fail(f"{prefix}: missing {suffix}")
        dt, a = load(t[key])
        if dt != dtype or a.ndim != ndim:
            raise Fail(f"{prefix}: {suffix} is {dt} {list(a.shape)}, expected {dtype} with {ndim} dims")
        return a

    q_weight = get("q_weight", "I32", 2).view(np.uint32)
    q_scale = get("q_scale", "I32", 2).view(np.uint32)
    q_scale_max = get("q_scale_max", "F16", 1)
    q_groups = get("q_groups", "I16", 1).view(np.uint16).astype(np.int64)
    q_invperm = get("q_invperm", "I32", 1).astype(np.int64)

    qrows, width = q_weight.shape
    groups = q_scale.shape[0]
    if q_weight.shape[1] != q_scale.shape[1] * 8:
        raise Fail(f"{prefix}: q_weight width {width} != 8 * q_scale width {q_scale.shape[1]}")
    if q_scale_max.shape[0] != groups or q_groups.shape[0] != 2 * groups:
        raise Fail(f"{prefix}: {groups} scale rows, {q_scale_max.shape[0]} q_scale_max, {q_groups.shape[0]} q_groups")
    height = q_invperm.shape[0]
    if height > 65536 or sorted(q_invperm.tolist()) != list(range(height)):
        raise Fail(f"{prefix}: q_invperm is not a permutation of 0..{height - 1} (at most 65536)")
    q_perm = np.argsort(q_invperm, kind="stable")

    W = np.zeros((height, width), dtype=np.float16)   # [in, width], original row order
    row = 0
    prev_bits = 99
    for g in range(groups):
        bits = int(q_groups[2 * g])
        start = int(q_groups[2 * g + 1])
        end = int(q_groups[2 * g + 3]) if g + 1 < groups else qrows
        if bits not in (2, 3, 4, 5, 6, 8):
            raise Fail(f"{prefix}: group {g} has {bits} bits")
        if bits > prev_bits:
            raise Fail(f"{prefix}: group {g} ({bits} bits) after a {prev_bits}-bit group: not in non-increasing order")
        prev_bits = bits
        if not (0 <= start <= end <= qrows):
            raise Fail(f"{prefix}: group {g} q_weight rows [{start}, {end}) out of [0, {qrows}]")
        rows = (end - start) * 32 // bits
        if g == groups - 1 and row + rows != height:
            raise Fail(f"{prefix}: groups cover {row + rows} rows, q_invperm has {height}")
        words = q_weight[start:end].astype(np.uint64)          # [qrows_g, width]
        mask = np.uint64((1 << bits) - 1)
        # scale for this group (fp16 arithmetic as the kernels do it)
        qs = ((q_scale[g][np.arange(width) // 8] >> (4 * (np.arange(width) % 8)).astype(np.uint32)) & 15).astype(np.int64) + 1
        max_scale = (q_scale_max[g:g + 1].astype(np.float32) * np.float32(1.0 / 256.0)).astype(np.float16)[0]
        scale = ((qs * qs).astype(np.float16) * max_scale).astype(np.float16)
        qzero = 1 << (bits - 1)
        for j in range(rows):
            bit = j * bits
            w, s = bit // 32, bit % 32
            v = words[w] >> np.uint64(s)
            if s + bits > 32:
                v |= words[w + 1] << np.uint64(32 - s)
            q = (v & mask).astype(np.int64)
            k = row + j
            W[q_perm[k]] = ((q - qzero).astype(np.float16) * scale).astype(np.float16)
        row += rows
    if row != height:
        raise Fail(f"{prefix}: groups cover {row} rows, q_invperm has {height}")
    return W.astype(np.float32).T   # [width, in]


# exllamav2 v0.3.2 architecture.py: the per-layer keys of each architecture (alternatives per entry) and
# the expected top-level keys; config.py check_keys: an entry is present when "<key><suffix>" exists for a
# suffix in (".q_weight", ".qweight", ".weight", ""), experts' "*" replaced by every expert index.
NORMS_LLAMA = [["input_layernorm"], ["post_attention_layernorm"]]
NORMS_GEMMA2 = [["input_layernorm"], ["post_attention_layernorm"], ["pre_feedforward_layernorm"],
                ["post_feedforward_layernorm"]]
ATTN_LLAMA = [["self_attn.q_proj"], ["self_attn.k_proj"], ["self_attn.v_proj"], ["self_attn.o_proj"]]
ATTN_PHI3 = [["self_attn.qkv_proj", "self_attn.q_proj"], ["self_attn.qkv_proj", "self_attn.k_proj"],
             ["self_attn.qkv_proj", "self_attn.v_proj"], ["self_attn.o_proj"]]
MLP_LLAMA = [["mlp.down_proj"], ["mlp.gate_proj"], ["mlp.up_proj"]]
MLP_PHI3 = [["mlp.down_proj"], ["mlp.gate_up_proj", "mlp.gate_proj"], ["mlp.gate_up_proj", "mlp.up_proj"]]
MLP_MIXTRAL = [["block_sparse_moe.experts.*.w1"], ["block_sparse_moe.experts.*.w2"],
               ["block_sparse_moe.experts.*.w3"], ["block_sparse_moe.gate"]]
MLP_QWEN3MOE = [["mlp.experts.*.gate_proj"], ["mlp.experts.*.up_proj"], ["mlp.experts.*.down_proj"], ["mlp.gate"]]
ARCHS = {
    "LlamaForCausalLM": (NORMS_LLAMA + ATTN_LLAMA + MLP_LLAMA, True),
    "MistralForCausalLM": (NORMS_LLAMA + ATTN_LLAMA + MLP_LLAMA, True),
    "Qwen2ForCausalLM": (NORMS_LLAMA + ATTN_LLAMA + MLP_LLAMA, True),
    "Qwen3ForCausalLM": (NORMS_LLAMA + ATTN_LLAMA + MLP_LLAMA, True),
    "Qwen3MoeForCausalLM": (NORMS_LLAMA + ATTN_LLAMA + MLP_QWEN3MOE, True),
    "MixtralForCausalLM": (NORMS_LLAMA + ATTN_LLAMA + MLP_MIXTRAL, True),
    "Gemma2ForCausalLM": (NORMS_GEMMA2 + ATTN_LLAMA + MLP_LLAMA, False),
    "Phi3ForCausalLM": (NORMS_LLAMA + ATTN_PHI3 + MLP_PHI3, True),
}
# Linear layers exllamav2 builds per layer (attn.py, mlp.py, moe_mlp.py: the key a quantized layer is loaded
# under; phi3's fused tensors are split into these by row ranges, linear.py f_key/f_beg/f_end).
LINEARS = {
    "dense": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"],
    "MixtralForCausalLM": ["block_sparse_moe.experts.*.w1", "block_sparse_moe.experts.*.w3",
                           "block_sparse_moe.experts.*.w2"],
    "Qwen3MoeForCausalLM": ["mlp.experts.*.gate_proj", "mlp.experts.*.up_proj", "mlp.experts.*.down_proj"],
}
FUSED = ["self_attn.qkv_proj", "mlp.gate_up_proj"]  # linear.py load(): a fused tensor is read before q_weight


def check_keys(t, folder):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    arch = cfg["architectures"][0]
    if arch not in ARCHS:
        raise Fail(f"{arch}: not an architecture exllamav2 0.3.2 converts here")
    layer_keys, expect_head = ARCHS[arch]
    tied = cfg.get("tie_word_embeddings", False) or not expect_head
    n_layers = int(cfg["num_hidden_layers"])
    n_exp = cfg.get("num_local_experts") or cfg.get("num_experts") or 1
    expect = [["model.norm"], ["model.embed_tokens"]] + ([] if tied else [["lm_head"]])
    for l in range(n_layers):
        for ks in layer_keys:
            for e in (range(n_exp) if any("*" in k for k in ks) else [None]):
                expect.append([f"model.layers.{l}." + (k.replace("*", str(e)) if e is not None else k) for k in ks])
    problems = []
    for alts in expect:
        if not any(a + s in t for a in alts for s in (".q_weight", ".qweight", ".weight", "")):
            problems.append(f"missing {alts[0]}.*")
    lin = LINEARS.get(arch, LINEARS["dense"])
    if arch in LINEARS:
        lin = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"] + lin
    for l in range(n_layers):
        for k in lin:
            for e in (range(n_exp) if "*" in k else [None]):
                key = f"model.layers.{l}." + (k.replace("*", str(e)) if e is not None else k)
                if key + ".q_weight" not in t:
                    problems.append(f"{key} is not quantized")
                if key + ".weight" in t:
                    problems.append(f"{key}.weight is there beside the quantized layer")
        for k in FUSED:
            if f"model.layers.{l}.{k}.weight" in t:
                problems.append(f"model.layers.{l}.{k}.weight would be loaded instead of the quantized parts")
    if not tied and "lm_head.q_weight" not in t:
        problems.append("lm_head is not quantized")
    for p in problems:
        print(f"KEYS {p}")
    print(f"{arch}: {len(expect)} expected keys, {len(problems)} problems")
    return not problems


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    verbose = "--verbose" in argv
    if len(args) != 2:
        print(next(l for l in __doc__.splitlines() if l.startswith("usage:")), file=sys.stderr)
        return 2
    try:
        t = scan(args[0])
        ref = read_header(args[1])
    except (Fail, OSError, ValueError, KeyError) as e:
        print(f"ERROR {e}")
        return 1
    total = equal = 0
    for name in sorted(ref):
        total += 1
        dt, r = load(ref[name])
        r = as_f32(dt, r)
        try:
            if name.endswith(".weight") and name[:-7] + ".q_weight" in t:
                prefix = name[:-7]
                if r.ndim != 2:
                    raise Fail(f"{prefix}: reference is not 2-D")
                d = decode_exl2(t, prefix)
                out, inn = r.shape
                if d.shape[1] != inn or d.shape[0] < out or d.shape[0] != (out + 31) // 32 * 32:
                    raise Fail(f"{prefix}: decoded {list(d.shape)} (width padded to 32) vs reference {list(r.shape)}")
                if np.any(d[out:] != 0):
                    raise Fail(f"{prefix}: padding columns {out}..{d.shape[0] - 1} do not decode to 0 "
                               f"(exllamav2 pads q_weight with 2^(bits-1))")
                d = d[:out]
                kind = "exl2"
            elif name in t:
                prefix = name
                ddt, d = load(t[name])
                d = as_f32(ddt, d)
                if d.shape != r.shape:
                    raise Fail(f"{prefix}: shape {list(d.shape)} vs reference {list(r.shape)}")
                kind = "plain"
            else:
                raise Fail(f"{name}: neither {name[:-7] if name.endswith('.weight') else name}.q_weight nor the tensor itself is in {args[0]}")
            same = (d.view(np.uint32) == r.view(np.uint32)) | ((d == 0) & (r == 0))
            if not same.all():
                bad = np.argwhere(~same)
                i = tuple(bad[0])
                print(f"MISMATCH {prefix}: {bad.shape[0]} of {r.size} values differ, first at {list(i)}: "
                      f"decoded {d[i]!r} reference {r[i]!r}, max |diff| {np.nanmax(np.abs(d - r))}")
                continue
            equal += 1
            if verbose:
                print(f"ok {prefix} ({kind}, {list(r.shape)})")
        except (Fail, OSError, ValueError, KeyError) as e:
            print(f"MISMATCH {e}")
    keys_ok = True
    if "--keys" in argv:
        try:
            keys_ok = check_keys(t, args[0])
        except (Fail, OSError, ValueError, KeyError) as e:
            print(f"KEYS {e}")
            keys_ok = False
    print(f"{equal} of {total} tensors equal")
    return 0 if total > 0 and equal == total and keys_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
