#!/usr/bin/python3
"""Independent check of a QuantZoo GPTQ export (tests/gptq/gptq.cmake runs it).

Unpacks every quantized layer's qweight / qzeros / scales / g_idx the way AutoGPTQ's QuantLinear
(qlinear_cuda / cuda_old torch path) dequantizes them - shift tables per word, "+1" on the stored zeros
(v1 "gptq" format), then scales[g_idx] * (weight - zeros[g_idx]) in fp16 - and compares the result with
the raw F32 dump of QuantZoo's own dequantized weights (quantzoo-cli ... --dump-dequant): exact equality.
Also checks tensor shapes/dtypes (core/gptq/README.md D.2), the config files (D.4), symmetric zero points,
g_idx (monotone without act-order; with act-order at least one layer must be permuted), that every
non-quantized tensor is byte-identical to the source model's, and the shard index if any.
Reads safetensors by hand (header JSON + numpy), so only numpy and torch are needed.
Mixture of experts (qwen3_moe, mixtral; core/gptq/README.md D.6): the quantized modules must be exactly the
attention projections and every expert's gate/up/down of every block (expert count from config.json), the
router (mlp.gate / block_sparse_moe.gate) unquantized and byte-identical, and quantize_config.json's
modules_in_block_to_quantize must list those modules.
With --write-dequant DIR the AutoGPTQ-dequantized weights (not QuantZoo's dump) are written with every other
tensor as an F32 Hugging Face folder (model.safetensors + the source's config.json), for a reference forward
pass (tests/tools/ref_forward.py).
usage: unpack_check.py OUTDIR DUMP.safetensors SOURCE_MODEL_DIR BITS GROUP_SIZE SYM(0/1) DESC_ACT(0/1)
                       [--write-dequant DIR]
"""
import json
import os
import struct
import sys

import numpy as np
import torch

DT = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "BF16": np.uint16, "I64": np.int64}


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        raw = data[b:e]
        arr = np.frombuffer(raw, dtype=DT[info["dtype"]]).reshape(info["shape"])
        out[name] = (info["dtype"], arr, raw)
    return meta, out


def read_folder(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            index = json.load(f)
        tensors, metas = {}, []
        for shard in sorted(set(index["weight_map"].values())):
            m, t = read_st(os.path.join(d, shard))
            metas.append(m)
            for k in t:
                assert index["weight_map"][k] == shard, k
            tensors.update(t)
        assert set(tensors) == set(index["weight_map"]), "index / shard tensor sets differ"
        total = sum(len(v[2]) for v in tensors.values())
        assert index["metadata"]["total_size"] == total, (index["metadata"]["total_size"], total)
        return metas[0], tensors
    return read_st(os.path.join(d, "model.safetensors"))


def unpack_autogptq(qweight, qzeros, scales, g_idx, bits):
    """AutoGPTQ QuantLinear's torch dequantization, written from core/gptq/README.md D.3."""
    qweight = torch.from_numpy(qweight.copy())
    qzeros = torch.from_numpy(qzeros.copy())
    scales = torch.from_numpy(scales.copy())
    g_idx = torch.from_numpy(g_idx.copy()).long()
    maxq = (1 << bits) - 1
    small = torch.int16 if bits == 8 else torch.int8
    if bits in (2, 4, 8):
        wf = torch.arange(0, 32, bits, dtype=torch.int32)
        z = (qzeros.unsqueeze(2).expand(-1, -1, 32 // bits) >> wf.view(1, 1, -1)).to(small)
        z = (z + 1) & maxq                       # stored zero - 1 (v1); cast before +1 as AutoGPTQ
        zeros = z.reshape(qzeros.shape[0], -1)
        w = (qweight.unsqueeze(1).expand(-1, 32 // bits, -1) >> wf.view(1, -1, 1)).to(small)
        w = w & maxq
        weight = w.reshape(-1, qweight.shape[1])
    else:
        # 3 bits: 32 values in 3 words; per word 12 shift slots, values 10 and 21 straddle words.
        wf = torch.tensor([[0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 0],
                           [0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31],
                           [0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 0]], dtype=torch.int32)
        G = qzeros.shape[0]
        z = qzeros.reshape(G, qzeros.shape[1] // 3, 3, 1).expand(-1, -1, -1, 12) >> wf.view(1, 1, 3, 12)
        z[:, :, 0, 10] = (z[:, :, 0, 10] & 0x3) | ((z[:, :, 1, 0] << 2) & 0x4)
        z[:, :, 1, 11] = (z[:, :, 1, 11] & 0x1) | ((z[:, :, 2, 0] << 1) & 0x6)
        z = z & 0x7
        z = torch.cat([z[:, :, 0, :11], z[:, :, 1, 1:12], z[:, :, 2, 1:11]], dim=2)
        zeros = (z + 1).reshape(G, -1)
        R = qweight.shape[0] // 3
        w = qweight.reshape(R, 3, 1, qweight.shape[1]).expand(-1, -1, 12, -1) >> wf.view(1, 3, 12, 1)
        w = w & 0x7
        w[:, 0, 10] = (w[:, 0, 10] & 0x3) | ((w[:, 1, 0] << 2) & 0x4)
        w[:, 1, 11] = (w[:, 1, 11] & 0x1) | ((w[:, 2, 0] << 1) & 0x6)
        w = w & 0x7
        w = torch.cat([w[:, 0, :11], w[:, 1, 1:12], w[:, 2, 1:11]], dim=1)
        weight = w.reshape(-1, qweight.shape[1])
    # [in, out] fp16: scales (fp16) times the integer difference
    deq = scales[g_idx] * (weight - zeros[g_idx])
    assert deq.dtype == torch.float16
    return deq, weight, zeros


def write_st(path, tensors):
    """F32 safetensors (name -> float32 array), names sorted."""
    header, off, blobs = {}, 0, []
    for name in sorted(tensors):
        b = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def as_f32(dt, arr):
    if dt == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32)


def moe_modules(cfg):
    """The quantized modules of one block of a qwen3_moe / mixtral model, per GPTQModel's definitions."""
    arch = cfg.get("model_type")
    attn = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
    if arch == "qwen3_moe":
        return attn + [f"mlp.experts.{e}.{m}" for e in range(cfg["num_experts"])
                       for m in ("gate_proj", "up_proj", "down_proj")], "mlp.gate"
    if arch == "mixtral":
        return attn + [f"block_sparse_moe.experts.{e}.{m}" for e in range(cfg["num_local_experts"])
                       for m in ("w1", "w3", "w2")], "block_sparse_moe.gate"
    return None, None


def main():
    argv = sys.argv[1:]
    write_dequant = None
    if "--write-dequant" in argv:
        i = argv.index("--write-dequant")
        write_dequant = argv[i + 1]
        del argv[i:i + 2]
    outdir, dump, src, bits, gs, sym, desc = argv[0:7]
    bits, gs, sym, desc = int(bits), int(gs), sym == "1", desc == "1"
    fails = []

    def check(cond, msg):
        if not cond:
            fails.append(msg)

    with open(os.path.join(outdir, "quantize_config.json")) as f:
        qc = json.load(f)
    with open(os.path.join(outdir, "config.json")) as f:
        cfg = json.load(f)
    for k, v in {"bits": bits, "group_size": gs, "sym": sym, "desc_act": desc, "quant_method": "gptq",
                 "checkpoint_format": "gptq"}.items():
        check(qc.get(k) == v, f"quantize_config {k} = {qc.get(k)!r}, expected {v!r}")
    check(cfg.get("quantization_config") == qc, "config.json quantization_config differs from quantize_config.json")
    check(0 < qc.get("damp_percent", 0) < 1, "damp_percent out of (0,1)")
    arch = cfg.get("model_type")

    meta, tensors = read_folder(outdir)
    check(meta.get("format") == "pt", "safetensors metadata format != pt")
    _, dq = read_st(dump)
    _, orig = read_folder(src)

    prefixes = sorted(k[: -len(".qweight")] for k in tensors if k.endswith(".qweight"))
    check(len(prefixes) > 0, "no quantized layers")
    block_modules, router = moe_modules(cfg)
    if block_modules is not None:
        n_layers = cfg["num_hidden_layers"]
        want = sorted(f"model.layers.{l}.{m}" for l in range(n_layers) for m in block_modules)
        missing = sorted(set(want) - set(prefixes))
        extra_q = sorted(set(prefixes) - set(want))
        check(not missing, f"MoE: {len(missing)} modules not quantized, e.g. {missing[:3]}")
        check(not extra_q, f"MoE: unexpected quantized modules {extra_q[:3]}")
        for l in range(n_layers):
            check(f"model.layers.{l}.{router}.weight" in tensors and f"model.layers.{l}.{router}.qweight" not in tensors,
                  f"layer {l}: the router {router} must stay unquantized")
        listed = qc.get("modules_in_block_to_quantize")
        check(isinstance(listed, list) and sorted(sum(listed, [])) == sorted(block_modules),
              "quantize_config modules_in_block_to_quantize does not list the block's quantized modules")
    dequant_out = {}
    check(len(prefixes) == len(dq), f"{len(prefixes)} quantized layers but {len(dq)} dumped")
    permuted = 0
    sym_zero = 1 << (bits - 1)
    for p in prefixes:
        dt_w, qweight, _ = tensors[p + ".qweight"]
        dt_z, qzeros, _ = tensors[p + ".qzeros"]
        dt_s, scales, _ = tensors[p + ".scales"]
        dt_g, g_idx, _ = tensors[p + ".g_idx"]
        check((dt_w, dt_z, dt_s, dt_g) == ("I32", "I32", "F16", "I32"), f"{p}: dtypes {dt_w} {dt_z} {dt_s} {dt_g}")
        src_w = orig[p + ".weight"][1]
        conv1d = arch == "gpt2"
        n_in, n_out = (src_w.shape[0], src_w.shape[1]) if conv1d else (src_w.shape[1], src_w.shape[0])
        G = 1 if gs == -1 else (n_in + gs - 1) // gs
        check(qweight.shape == (n_in * bits // 32, n_out), f"{p}: qweight shape {qweight.shape}")
        check(qzeros.shape == (G, n_out * bits // 32), f"{p}: qzeros shape {qzeros.shape}")
        check(scales.shape == (G, n_out), f"{p}: scales shape {scales.shape}")
        check(g_idx.shape == (n_in,), f"{p}: g_idx shape {g_idx.shape}")
        check(g_idx.min() >= 0 and g_idx.max() < G, f"{p}: g_idx out of range")
        counts = np.bincount(g_idx, minlength=G)
        check(gs == -1 or counts.max() <= gs, f"{p}: a group holds more than group_size columns")
        monotone = bool(np.all(np.diff(g_idx) >= 0))
        if not desc or qc.get("static_groups"):  # static groups: k // gs under act-order too (core/gptq/README.md D.5)
            check(np.array_equal(g_idx, np.arange(n_in) // (n_in if gs == -1 else gs)), f"{p}: g_idx not i//gs")
        elif not monotone:
            permuted += 1
        deq, codes, zeros = unpack_autogptq(qweight, qzeros, scales, g_idx, bits)
        if sym:
            check(bool(torch.all(zeros == sym_zero)), f"{p}: symmetric zero points are not {sym_zero}")
        check(int(codes.min()) >= 0 and int(codes.max()) <= (1 << bits) - 1, f"{p}: codes out of range")
        ours = dq[p + ".weight"][1]
        theirs = deq.float().numpy()  # [in, out]
        if not conv1d:
            theirs = theirs.T
        dequant_out[p + ".weight"] = theirs
        check(ours.shape == theirs.shape, f"{p}: dump shape {ours.shape} vs {theirs.shape}")
        if ours.shape == theirs.shape:
            same = np.array_equal(ours, theirs)
            if not same:
                bad = np.argwhere(ours != theirs)
                i = tuple(bad[0])
                fails.append(f"{p}: {len(bad)} dequantized values differ, first at {i}: ours {ours[i]} autogptq {theirs[i]}")
            # sanity: the quantized weight is close to the source (catches a dump of the wrong thing)
            w = src_w.astype(np.float32) if src_w.dtype != np.uint16 else \
                (src_w.astype(np.uint32) << 16).view(np.float32)
            cos = float(np.sum(ours * w) / (np.linalg.norm(ours) * np.linalg.norm(w) + 1e-30))
            check(cos > {2: 0.3, 3: 0.7, 4: 0.9, 8: 0.999}[bits], f"{p}: cosine to the source weight {cos:.4f} too low")
        bias = p + ".bias"
        if bias in orig:
            dtb, b, _ = tensors.get(bias, (None, None, None))
            check(dtb == "F16", f"{bias}: dtype {dtb}")
            if dtb == "F16":
                check(np.array_equal(b, orig[bias][1].astype(np.float32).astype(np.float16)), f"{bias}: values")
    if desc and gs != -1 and not qc.get("static_groups"):  # one group per row: g_idx all zeros
        check(permuted > 0, "desc_act export but every g_idx is monotone")
    # Non-quantized tensors: byte-identical to the source, same dtype.
    qnames = {p + ".weight" for p in prefixes} | {p + ".bias" for p in prefixes}
    for name, (dt, arr, raw) in orig.items():
        if name in qnames:
            continue
        check(name in tensors, f"{name}: missing")
        if name in tensors:
            check(tensors[name][0] == dt and tensors[name][2] == raw, f"{name}: not byte-identical to the source")
    extra = set(tensors) - set(orig) - {p + s for p in prefixes for s in (".qweight", ".qzeros", ".scales", ".g_idx", ".bias")}
    check(not extra, f"unexpected tensors {sorted(extra)[:5]}")
    for f in os.listdir(src):
        if f.endswith((".json", ".model", ".txt")) and f not in ("config.json", "model.safetensors.index.json"):
            check(os.path.exists(os.path.join(outdir, f)), f"{f} not copied")
    check(not [f for f in os.listdir(outdir) if f.startswith(".") or ".tmp" in f or f.endswith(".qzl")],
          "temporary files left in the output")

    if write_dequant and not fails:
        os.makedirs(write_dequant, exist_ok=True)
        full = {name: as_f32(dt, arr) for name, (dt, arr, _) in orig.items()}
        full.update(dequant_out)
        write_st(os.path.join(write_dequant, "model.safetensors"), full)
        with open(os.path.join(src, "config.json")) as f:
            src_cfg = f.read()
        with open(os.path.join(write_dequant, "config.json"), "w") as f:
            f.write(src_cfg)

    if fails:
        for m in fails[:30]:
            print("FAIL:", m)
        print(f"{len(fails)} failures")
        return 1
    print(f"OK: {len(prefixes)} layers, {bits}-bit g{gs} sym={sym} desc_act={desc} ({permuted} permuted): "
          f"AutoGPTQ dequantization equals QuantZoo's dump exactly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
