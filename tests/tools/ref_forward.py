#!/usr/bin/env python3
"""Independent reference forward pass (numpy, float64) of the decoder architectures QuantZoo converts, written
from the semantics of transformers' modeling code (modeling_qwen3.py, modeling_qwen3_moe.py, modeling_mixtral.py,
modeling_gemma2.py, modeling_gemma3.py, modeling_phi3.py), reading the Hugging Face folder itself (config.json +
F32/F16/BF16 model.safetensors). It shares no code with QuantZoo or llama.cpp.

Usage: ref_forward.py MODEL_DIR CHUNKS.json
       ref_forward.py --logits MODEL_DIR TOKENS.json OUT.f64
CHUNKS.json: {"n_ctx": N, "first": F, "chunks": [[token ids of chunk 0], ...]} — the token windows a perplexity
run evaluated (tests/llama/check-gguf.mjs --dump-chunks). Prints one JSON object: the perplexity over positions
first+1 .. N-1 of every chunk (each scored from the logits at the previous position), as llama-perplexity scores.
--logits: TOKENS.json is a JSON array of token ids (one sequence from position 0); OUT.f64 receives the logits
of every position, little-endian float64, row-major [tokens x vocab] (tests/core/test_arch_engine.cpp).

Per architecture (transformers semantics):
  qwen3 / qwen3_moe: RMSNorm over head_dim on q and k before RoPE; MoE: softmax router, top-k, renormalised when
      norm_topk_prob; experts down(silu(gate x) * up x) weighted and summed.
  mixtral: as qwen3_moe without q/k norms, top-k always renormalised.
  gemma2 / gemma3: RMSNorm multiplies by (1 + w); embeddings * sqrt(hidden); sandwich norms around attention and
      MLP; GeGLU with the tanh GELU; attention scale query_pre_attn_scalar^-0.5; gemma2 soft-caps attention
      scores (attn_logit_softcapping) and final logits (final_logit_softcapping); sliding layers (gemma2: even
      layers; gemma3: (i+1) % pattern != 0) see keys with i - j < sliding_window; gemma3 q/k norms (1 + w),
      local RoPE base on sliding layers, global base (rope_theta) on the others; gemma3's rope_scaling (linear,
      the only kind Gemma3 uses) applies to the global layers only: transformers builds the local rotary
      embedding from a copy of the config with rope_scaling {"rope_type": "default"}, and the linear kind
      divides inv_freq by the factor (modeling_rope_utils.py _compute_linear_scaling_rope_parameters).
      Gemma3ForConditionalGeneration: config model_type gemma3 with the text model's keys in text_config, its
      tensors under language_model.model.* (transformers < 4.52) or model.language_model.* (>= 4.52); the
      vision tower and projector are not used by text.
  phi3: fused qkv_proj = [q | k | v] rows and gate_up_proj = [gate | up] rows; partial rotary factor.
RoPE: rotate_half on (i, i + d/2) pairs with inv_freq = theta^(-2i/d); d = head_dim, or for phi3
int(head_dim * partial_rotary_factor) (_compute_default_rope_parameters); the other dims pass through.
"""
import json
import math
import struct
import sys

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[a:b]
        dt = info["dtype"]
        if dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2")
        elif dt == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"{path}: dtype {dt} not handled")
        out[name] = arr.astype(np.float64).reshape(info["shape"])
    return out


def rms_norm(x, w, eps, gemma):
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return y * (1.0 + w) if gemma else y * w


def rope(x, pos, theta, rot, linear=1.0):
    # x: [heads, T, d]; rotate the first `rot` dims with rotate_half; linear scaling divides inv_freq.
    d = rot
    inv = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d) / linear
    ang = np.outer(pos, inv)  # [T, d/2]
    cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=-1)
    sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=-1)
    xr, xp = x[..., :d], x[..., d:]
    half = d // 2
    rotated = np.concatenate([-xr[..., half:], xr[..., :half]], axis=-1)
    return np.concatenate([xr * cos + rotated * sin, xp], axis=-1)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


class Model:
    def __init__(self, d):
        with open(d + "/config.json") as f:
            c = json.load(f)
        if c.get("model_type") == "gemma3" and "text_config" in c:
            c = {**c, **c["text_config"]}
        self.c = c
        self.t = load_safetensors(d + "/model.safetensors")
        # The text model's tensors: model.* (CausalLM), or a multimodal Gemma 3's nested layouts.
        self.prefix, self.head = "model.", "lm_head.weight"
        if "language_model.model.embed_tokens.weight" in self.t:
            self.prefix, self.head = "language_model.model.", "language_model.lm_head.weight"
        elif "model.language_model.embed_tokens.weight" in self.t:
            self.prefix = "model.language_model."
        self.linear = 1.0
        rs = c.get("rope_scaling")
        if rs:
            kind = rs.get("rope_type", rs.get("type"))
            if kind == "linear":
                self.linear = float(rs["factor"])
            elif kind != "default":
                raise SystemExit(f"rope_scaling {kind} not handled")
        self.type = c["model_type"]
        self.gemma = self.type in ("gemma2", "gemma3", "gemma3_text")
        self.H = c["hidden_size"]
        self.nh = c["num_attention_heads"]
        self.nkv = c.get("num_key_value_heads") or self.nh
        self.hd = c.get("head_dim") or self.H // self.nh
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.L = c["num_hidden_layers"]

    def w(self, name):
        if name.startswith("model."):
            name = self.prefix + name[len("model.") :]
        elif name == "lm_head.weight":
            name = self.head
        return self.t[name]

    def attention(self, l, x, pos):
        c, p = self.c, f"model.layers.{l}.self_attn."
        T = x.shape[0]
        if self.type == "phi3":
            qkv = x @ self.w(p + "qkv_proj.weight").T
            q = qkv[:, : self.nh * self.hd]
            k = qkv[:, self.nh * self.hd : (self.nh + self.nkv) * self.hd]
            v = qkv[:, (self.nh + self.nkv) * self.hd :]
        else:
            q = x @ self.w(p + "q_proj.weight").T
            k = x @ self.w(p + "k_proj.weight").T
            v = x @ self.w(p + "v_proj.weight").T
        q = q.reshape(T, self.nh, self.hd).transpose(1, 0, 2)
        k = k.reshape(T, self.nkv, self.hd).transpose(1, 0, 2)
        v = v.reshape(T, self.nkv, self.hd).transpose(1, 0, 2)
        if self.type in ("qwen3", "qwen3_moe", "gemma3", "gemma3_text"):
            q = rms_norm(q, self.w(p + "q_norm.weight"), self.eps, self.gemma)
            k = rms_norm(k, self.w(p + "k_norm.weight"), self.eps, self.gemma)
        sliding = False
        theta = c.get("rope_theta", 10000.0)
        linear = self.linear
        if self.type == "gemma2":
            sliding = l % 2 == 0
        elif self.gemma:
            sliding = (l + 1) % c.get("sliding_window_pattern", 6) != 0
            if sliding:
                theta = c.get("rope_local_base_freq", 10000.0)
                linear = 1.0
        rot = self.hd
        if self.type == "phi3":
            rot = int(c.get("partial_rotary_factor", 1.0) * self.hd)
        q = rope(q, pos, theta, rot, linear)
        k = rope(k, pos, theta, rot, linear)
        rep = self.nh // self.nkv
        k = np.repeat(k, rep, axis=0)
        v = np.repeat(v, rep, axis=0)
        scale = c.get("query_pre_attn_scalar", self.hd) ** -0.5 if self.gemma else self.hd ** -0.5
        s = q @ k.transpose(0, 2, 1) * scale  # [heads, T, T]
        cap = c.get("attn_logit_softcapping") if self.type == "gemma2" else None
        if cap:
            s = cap * np.tanh(s / cap)
        i = np.arange(T)[:, None]
        j = np.arange(T)[None, :]
        mask = j > i
        if sliding and c.get("sliding_window"):
            mask = mask | (i - j >= c["sliding_window"])
        s = np.where(mask[None], -np.inf, s)
        a = softmax(s) @ v  # [heads, T, hd]
        a = a.transpose(1, 0, 2).reshape(T, self.nh * self.hd)
        return a @ self.w(p + "o_proj.weight").T

    def mlp(self, l, x):
        c, p = self.c, f"model.layers.{l}."
        if self.type in ("qwen3_moe", "mixtral"):
            moe = p + ("block_sparse_moe." if self.type == "mixtral" else "mlp.")
            E = c.get("num_experts") or c.get("num_local_experts")
            k = c["num_experts_per_tok"]
            probs = softmax(x @ self.w(moe + "gate.weight").T)  # [T, E]
            out = np.zeros_like(x)
            for t in range(x.shape[0]):
                top = np.argsort(-probs[t], kind="stable")[:k]
                wts = probs[t, top]
                if self.type == "mixtral" or c.get("norm_topk_prob", False):
                    wts = wts / wts.sum()
                for e, we in zip(top, wts):
                    ex = moe + f"experts.{e}."
                    if self.type == "mixtral":
                        g, u, dn = ex + "w1.weight", ex + "w3.weight", ex + "w2.weight"
                    else:
                        g, u, dn = ex + "gate_proj.weight", ex + "up_proj.weight", ex + "down_proj.weight"
                    h = silu(x[t] @ self.w(g).T) * (x[t] @ self.w(u).T)
                    out[t] += we * (h @ self.w(dn).T)
            return out
        if self.type == "phi3":
            gu = x @ self.w(p + "mlp.gate_up_proj.weight").T
            f = gu.shape[1] // 2
            return (gu[:, f:] * silu(gu[:, :f])) @ self.w(p + "mlp.down_proj.weight").T
        act = gelu_tanh if self.gemma else silu
        g = act(x @ self.w(p + "mlp.gate_proj.weight").T)
        return (g * (x @ self.w(p + "mlp.up_proj.weight").T)) @ self.w(p + "mlp.down_proj.weight").T

    def logits(self, tokens):
        x = self.w("model.embed_tokens.weight")[np.array(tokens)]
        if self.gemma:
            x = x * math.sqrt(self.H)
        pos = np.arange(len(tokens), dtype=np.float64)
        for l in range(self.L):
            p = f"model.layers.{l}."
            n = rms_norm(x, self.w(p + "input_layernorm.weight"), self.eps, self.gemma)
            a = self.attention(l, n, pos)
            if self.gemma:
                a = rms_norm(a, self.w(p + "post_attention_layernorm.weight"), self.eps, True)
                h = x + a
                m = self.mlp(l, rms_norm(h, self.w(p + "pre_feedforward_layernorm.weight"), self.eps, True))
                x = h + rms_norm(m, self.w(p + "post_feedforward_layernorm.weight"), self.eps, True)
            else:
                h = x + a
                x = h + self.mlp(l, rms_norm(h, self.w(p + "post_attention_layernorm.weight"), self.eps, False))
        x = rms_norm(x, self.w("model.norm.weight"), self.eps, self.gemma)
        head = self.t.get(self.head)
        if head is None:
            head = self.w("model.embed_tokens.weight")
        out = x @ head.T
        cap = self.c.get("final_logit_softcapping") if self.gemma else None
        if cap:
            out = cap * np.tanh(out / cap)
        return out


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--logits":
        m = Model(sys.argv[2])
        with open(sys.argv[3]) as f:
            tokens = json.load(f)
        lg = m.logits(tokens)
        with open(sys.argv[4], "wb") as f:
            f.write(np.ascontiguousarray(lg, dtype="<f8").tobytes())
        return
    if len(sys.argv) != 3:
        raise SystemExit("usage: ref_forward.py MODEL_DIR CHUNKS.json")
    m = Model(sys.argv[1])
    with open(sys.argv[2]) as f:
        spec = json.load(f)
    first = spec["first"]
    nll, count = 0.0, 0
    for chunk in spec["chunks"]:
        lg = m.logits(chunk)
        lp = lg - np.max(lg, axis=-1, keepdims=True)
        lp = lp - np.log(np.sum(np.exp(lp), axis=-1, keepdims=True))
        for i in range(first, len(chunk) - 1):
            nll -= lp[i, chunk[i + 1]]
            count += 1
    print(json.dumps({"ppl": math.exp(nll / count), "scored": count, "chunks": len(spec["chunks"])}))


if __name__ == "__main__":
    main()
