#!/usr/bin/python3
"""Perplexity and KL-divergence of dequantized models against the original, through tests/tools/ref_forward.py
(numpy float64, transformers' semantics; shares no code with QuantZoo).
usage: moe_ppl_kld.py CHUNKS.json ORIGINAL_DIR DIR...
CHUNKS.json as ref_forward.py takes it ({"n_ctx", "first", "chunks"}). Every position from `first` on is
scored: perplexity of the next token, and the mean KL-divergence KL(original || model) of the next-token
distributions. Prints one JSON object {"original": {"ppl"}, DIR: {"ppl", "kld"}, ...}.
"""
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import ref_forward  # noqa: E402


def log_probs(model, chunks, first):
    out = []
    for c in chunks:
        lg = model.logits(c)[first:len(c) - 1]
        lg = lg - np.max(lg, axis=-1, keepdims=True)
        out.append(lg - np.log(np.sum(np.exp(lg), axis=-1, keepdims=True)))
    return out


def ppl(lps, chunks, first):
    nll, n = 0.0, 0
    for lp, c in zip(lps, chunks):
        for i in range(lp.shape[0]):
            nll -= lp[i, c[first + i + 1]]
            n += 1
    return math.exp(nll / n)


def main():
    spec = json.load(open(sys.argv[1]))
    chunks, first = spec["chunks"], spec["first"]
    base = log_probs(ref_forward.Model(sys.argv[2]), chunks, first)
    res = {"original": {"ppl": ppl(base, chunks, first)}}
    for d in sys.argv[3:]:
        lps = log_probs(ref_forward.Model(d), chunks, first)
        kld = np.mean(np.concatenate([np.sum(np.exp(b) * (b - q), axis=-1) for b, q in zip(base, lps)]))
        res[d] = {"ppl": ppl(lps, chunks, first), "kld": float(kld)}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
