#!/usr/bin/python3
"""The tessera-tiny vision-language model for training: the V4 backbone of
tools/reference/deepseek_v4.py and the Janus-style tower + mlp_gelu aligner
of tools/reference/vision.py, holding trainable parameters.

One implementation for parity and training: the reference classes are built
around our nn.Parameters (a `Checkpoint` look-alike hands them to
deepseek_v4.Layer and vision.VisionModel), so `ref.forward()` (prefill +
cached decode, exactly what parity tests and the C engine follow) and
`train_forward()` (the same math batched over [B, T] right-padded sequences
with teacher forcing) read the same tensors. train_forward reuses the
reference's functions (hc_pre / hc_post / hc_mixes, rms_norm, rope_tail,
softmax_with_sink, route / ffn); what it adds is a batch dimension for the
attention, compressors and indexer, which the reference runs per sequence.
`check_parity()` compares the two on real inputs.

Right-padding is exact for the real tokens: attention is causal, and a
compressed entry or indexer key only becomes visible to queries after its
whole window, so padding at the end changes nothing before it.

Image splice: the prompt holds one `<｜image｜>` token (id 5, what the chat
template renders for an image part); the model input expands it to
`num_image_tokens` (64) copies whose embeddings are replaced, in order, by
the aligner outputs (Janus's prepare_inputs_embeds, with one placeholder id).

Legend as in deepseek_v4.py; B = batch, NI = image tokens per image.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "reference"))
sys.path.insert(0, str(REPO / "tools" / "data"))
import deepseek_v4 as v4  # noqa: E402
import make_tiny_checkpoint as mtc  # noqa: E402
import vision as vis  # noqa: E402
from deepseek import rms_norm  # noqa: E402

Tensor = torch.Tensor
IMAGE_ID, BOS_ID, EOS_ID, PAD_ID, USER_ID, ASSISTANT_ID = 5, 0, 1, 2, 3, 4
NEG_INF = float("-inf")


def model_config(window: int = 256, head_dim: int = 32) -> dict:
    """config.json of tessera-tiny: DeepSeek-V4 keys (as make_tiny_checkpoint
    writes them) plus Janus-Pro's vision_config / aligner_config with explicit
    tower dimensions (the Tessera extension vision.py documents).

    `window` is the sliding-attention window. It must cover the image and the
    whole conversation: with 64 (stage 1) an answer ~80 tokens in no longer
    saw the top image rows except through the compressed layers, and
    existence / relation answers stayed at chance. `head_dim` is the width of
    the one shared KV head (keys are values in V4)."""
    return {
        "architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4",
        "vocab_size": 3072, "hidden_size": 128, "moe_intermediate_size": 128,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 1,
        "head_dim": head_dim, "qk_rope_head_dim": 8, "q_lora_rank": 64,
        "o_groups": 2, "o_lora_rank": 32, "n_routed_experts": 8,
        "n_shared_experts": 1, "num_experts_per_tok": 2, "num_hash_layers": 1,
        "scoring_func": "sqrtsoftplus", "topk_method": "noaux_tc",
        "norm_topk_prob": True, "routed_scaling_factor": 1.5, "swiglu_limit": 10.0,
        "hc_mult": 4, "hc_sinkhorn_iters": 20, "hc_eps": 1e-6, "sliding_window": window,
        # layer 0 sliding (hash-routed), 1 CSA (m 4, indexer), 2 sliding, 3 HCA (m 8)
        "compress_ratios": [0, 4, 0, 8], "compress_rope_theta": 160000,
        "index_n_heads": 4, "index_head_dim": 32, "index_topk": 8,
        "hidden_act": "silu", "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6, "rope_theta": 10000,
        "rope_scaling": {"type": "yarn", "factor": 16,
                         "original_max_position_embeddings": 65536,
                         "beta_fast": 32, "beta_slow": 1},
        "num_nextn_predict_layers": 0, "tie_word_embeddings": False,
        "bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID,
        "image_token_id": IMAGE_ID, "num_image_tokens": 64,
        "torch_dtype": "float32",
        "vision_config": {"cls": "CLIPVisionTower", "model_type": "vision",
                          "params": {"model_name": "siglip_tessera_tiny_patch8_64",
                                     "image_size": 64, "select_layer": -1,
                                     "patch_size": 8, "width": 128, "layers": 3,
                                     "heads": 4, "mlp_ratio": 4}},
        "aligner_config": {"cls": "MlpProjector", "model_type": "aligner",
                           "params": {"projector_type": "mlp_gelu", "depth": 2,
                                      "input_dim": 128, "n_embed": 128}},
    }


class _Params:
    """Checkpoint look-alike over a name -> tensor dict (for deepseek_v4.Layer)."""

    def __init__(self, t: Dict[str, Tensor]):
        self.t = t

    def get(self, name: str, shape: List[int]) -> Tensor:
        x = self.t[name]
        if list(x.shape) != list(shape):
            raise ValueError(f"{name}: {list(x.shape)} != {shape}")
        return x

    def table(self, name: str, shape: List[int]) -> Tensor:
        return self.get(name, shape)

    def has(self, name: str) -> bool:
        return name in self.t

    def lowp(self, name: str) -> bool:
        """Training weights are f32 (no bf16 activation rounding)."""
        return False


def init_tensors(cfgj: dict, seed: int) -> Dict[str, Tensor]:
    """Fresh weights by the names and shapes make_tiny_checkpoint lists for V4
    and vision.py lists for the tower/aligner. Linear weights N(0, 0.02) (the
    output projections scaled by 1/sqrt(2 n_layers)), norms 1, mHC fn small
    with the comb base favouring the identity (streams start as residuals),
    sinks / ape / gate bias 0, tid2eid a random pick of K distinct experts."""
    g = torch.Generator().manual_seed(seed)
    n = cfgj["num_hidden_layers"]
    hc = cfgj["hc_mult"]
    t: Dict[str, Tensor] = {}
    for name, kind, shape in mtc.v4_model(cfgj):
        if kind == "norm":
            w = torch.ones(shape)
        elif kind == "table":
            w = torch.stack([torch.randperm(cfgj["n_routed_experts"], generator=g)[:shape[1]]
                             for _ in range(shape[0])]).to(torch.int64)
        elif name.endswith("_fn"):
            w = torch.randn(shape, generator=g) * (0.1 / math.sqrt(shape[1]))
        elif name.endswith("_base"):
            w = torch.zeros(shape)
            if shape[0] == (2 + hc) * hc:
                w[2 * hc:] = torch.eye(hc).reshape(-1) * 2.0
        elif name.endswith("_scale"):
            w = torch.ones(shape)
        elif kind == "f32":  # attn_sink, ape, gate.bias
            w = torch.zeros(shape)
        else:
            std = 0.02
            if name.endswith(("wo_b.weight", "w2.weight")):
                std /= math.sqrt(2 * n)
            w = torch.randn(shape, generator=g) * std
        t[name] = w.contiguous()
    vcfg = vision_config(cfgj)
    grid = vcfg.image_size // vcfg.patch_size
    for k, s in vis.tower_shapes(vcfg, grid * grid).items():
        name = vcfg.prefix + k
        if k.endswith("norm.weight") or k.endswith(("norm1.weight", "norm2.weight")):
            w = torch.ones(s)
        elif k.endswith("bias"):
            w = torch.zeros(s)
        elif k == "patch_embed.proj.weight":
            # LeCun normal (1/sqrt(fan_in)): with 0.02 the pixels were ~7% of
            # the tower's output and the LM learned to ignore the image.
            w = torch.randn(s, generator=g) * (3 * vcfg.patch_size ** 2) ** -0.5
        else:
            w = torch.randn(s, generator=g) * 0.02
        t[name] = w
    for i, (o, nin) in enumerate(vis.projector_shapes(vcfg)):
        t[f"{vcfg.proj_prefix}layers.{2 * i}.weight"] = torch.randn([o, nin], generator=g) * 0.02
        t[f"{vcfg.proj_prefix}layers.{2 * i}.bias"] = torch.zeros([o])
    return t


def vision_config(cfgj: dict) -> "vis.VisionConfig":
    """vision.load_config's reading of this config (through a temp dir so the
    reference parser, not a copy of it, decides)."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "config.json").write_text(json.dumps(cfgj))
        return vis.load_config(Path(d))


class SplicedEmbed:
    """embed[ids] for the reference forward, with the image placeholder rows
    replaced in order by `rows` [n, D] (prefill only)."""

    def __init__(self, table: Tensor, rows: Optional[Tensor]):
        self.table, self.rows = table, rows

    def __getitem__(self, ids: Tensor) -> Tensor:
        x = self.table[ids]
        m = ids == IMAGE_ID
        if self.rows is not None and bool(m.any()):
            x = x.clone()
            x[m] = self.rows.to(x.dtype)
        return x


class TinyVLM:
    """Parameters + the reference objects built on them."""

    def __init__(self, cfgj: dict, tensors: Dict[str, Tensor]):
        self.cfgj = cfgj
        self.t = tensors
        for k, v in tensors.items():
            if v.is_floating_point() and not k.endswith("gate.bias"):
                v.requires_grad_(True)
        self.ref = self._build_ref()
        self.vcfg = vision_config(cfgj)
        self.vis = vis.VisionModel(self.vcfg, tensors)
        self.n_img = cfgj["num_image_tokens"]
        # Training's attention supervision: the layers whose probabilities
        # hidden keeps, [T, B, H, keys] (window keys first), in `captured`,
        # and those whose attention outputs [B, T, D] it keeps in
        # `attn_outputs` (the relation-position supervision reads them).
        self.capture_layers: Tuple[int, ...] = ()
        self.captured: Dict[int, Tensor] = {}
        self.capture_outputs: Tuple[int, ...] = ()
        self.attn_outputs: Dict[int, Tensor] = {}

    def _build_ref(self) -> "v4.DeepSeekV4":
        """deepseek_v4.DeepSeekV4's own constructor, reading our tensors: its
        Checkpoint is swapped for the name -> Parameter look-up while it runs
        (f32 `.to(float32)` returns the same tensor, so gradients reach them)."""
        import tempfile
        ck = _Params(self.t)
        orig = v4.Checkpoint
        v4.Checkpoint = lambda _dir: ck  # noqa: E731
        try:
            with tempfile.TemporaryDirectory() as d:
                (Path(d) / "config.json").write_text(json.dumps(self.cfgj))
                ref = v4.DeepSeekV4(Path(d), quant_sim=False)
        finally:
            v4.Checkpoint = orig
        return ref

    def parameters(self) -> List[Tensor]:
        return [v for v in self.t.values() if v.requires_grad]

    # ---- vision ------------------------------------------------------------

    def image_embeds(self, pixels: Tensor) -> Tensor:
        """pixels [B, 3, S, S] normalised ((x/255 - 0.5) / 0.5) -> [B, NI, D]."""
        return self.vis.project(self.vis.encode(pixels))

    # ---- batched backbone --------------------------------------------------

    def _compress(self, cw: "v4.CompressorWeights", xt: Tensor, freqs: Tensor,
                  indexer: bool) -> Tensor:
        """Batched compress_prefill: xt [T, B, D] -> entries [n, B, d]."""
        m, d = cw.m, cw.d
        T, B, _ = xt.shape
        n = T // m
        if n == 0:
            return xt.new_zeros(0, B, d)
        kv = (xt[:n * m] @ cw.wkv.T).view(n, m, B, -1)
        sc = (xt[:n * m] @ cw.wgate.T).view(n, m, B, -1) + cw.ape[None, :, None, :]
        if cw.overlap:  # slots: Ca halves of window w-1, then Cb halves of window w
            pk = torch.cat([kv.new_zeros(1, m, B, d), kv[:-1, :, :, :d]], 0)
            ps = torch.cat([sc.new_full((1, m, B, d), NEG_INF), sc[:-1, :, :, :d]], 0)
            kv = torch.cat([pk, kv[..., d:]], 1)
            sc = torch.cat([ps, sc[..., d:]], 1)
        pooled = (kv * sc.softmax(1)).sum(1)                                # [n, B, d]
        e = v4.rope_tail(rms_norm(pooled, cw.norm, self.ref.cfg.eps), freqs,
                         torch.arange(n) * m)
        return self._fp4(e @ self.ref.hadamard) if indexer else self.ref._kv_quant(e)

    def _fp4(self, x: Tensor) -> Tensor:
        """The indexer's FP4 round trip when ref.quant_sim is on (evaluation
        only: training runs with it off, the f32 numerics)."""
        return v4.fp4_roundtrip(x) if self.ref.quant_sim else x

    def _attention(self, L: "v4.Layer", x: Tensor, aux: List[Tensor]
                   ) -> Tuple[Tensor, Tensor]:
        """Batched prefill attention, x [B, T, D] (attn_norm output) -> output
        [B, T, D] and the probabilities [T, B, H, keys] (window keys first).
        The CSA indexer runs on detached inputs; its weights learn from the
        KL term appended to aux (V3.2-style: match the heads' mean attention
        over the visible compressed entries)."""
        ref, cfg = self.ref, self.ref.cfg
        B, T, D = x.shape
        H, HD, W, m = cfg.n_heads, cfg.head_dim, cfg.window, L.ratio
        pos = torch.arange(T)
        freqs = ref.freqs[m > 0]
        xt = x.transpose(0, 1)                                              # [T, B, D]
        qr = rms_norm(xt @ L.wq_a.T, L.q_norm, cfg.eps)                     # [T, B, QL]
        q = (qr @ L.wq_b.T).view(T, B, H, HD)
        q = q * torch.rsqrt(q.pow(2).mean(-1, keepdim=True) + cfg.eps)
        q = v4.rope_tail(q, freqs, pos)
        kv = ref._kv_quant(v4.rope_tail(rms_norm(xt @ L.wkv.T, L.kv_norm, cfg.eps), freqs,
                                        pos))                               # [T, B, HD]
        dd = pos[:, None] - pos[None, :]
        bias = torch.where((dd >= 0) & (dd < W), 0.0, NEG_INF)              # [T, T]
        scale = HD ** -0.5
        s = torch.einsum("tbhd,sbd->tbhs", q, kv) * scale + bias[:, None, None, :]
        ent = None
        if m:
            ent = self._compress(L.comp, xt, freqs, False)                  # [NE, B, HD]
            ne = ent.shape[0]
            visible = torch.arange(ne)[None, :] < ((pos + 1) // m)[:, None]  # [T, NE]
            se = torch.einsum("tbhd,nbd->tbhn", q, ent) * scale
            if L.csa and ne:
                keep = self._indexer(L, xt, qr, pos, freqs, visible, se, aux)  # [T, B, NE]
            else:
                keep = visible[:, None, :].expand(T, B, ne)
            se = se.masked_fill(~keep[:, :, None, :], NEG_INF)
            s = torch.cat([s, se], -1)
        p = v4.softmax_with_sink(s.reshape(T * B, H, -1), L.sink).view(T, B, H, -1)
        o = torch.einsum("tbhs,sbd->tbhd", p[..., :T], kv)
        if ent is not None and ent.shape[0]:
            o = o + torch.einsum("tbhn,nbd->tbhd", p[..., T:], ent)
        o = v4.rope_tail(o, freqs, pos, inverse=True)
        G = cfg.o_groups
        o = torch.einsum("tbgi,gri->tbgr", o.reshape(T, B, G, -1),
                         L.wo_a.view(G, cfg.o_lora, -1))
        return (o.reshape(T, B, -1) @ L.wo_b.T).transpose(0, 1), p

    def _indexer(self, L: "v4.Layer", xt: Tensor, qr: Tensor, pos: Tensor, freqs: Tensor,
                 visible: Tensor, se: Tensor, aux: List[Tensor]) -> Tensor:
        ref, cfg = self.ref, self.ref.cfg
        T, B, _ = xt.shape
        IH, ID = cfg.index_heads, cfg.index_dim
        xd, qd = xt.detach(), qr.detach()
        k = self._compress(L.idx_comp, xd, freqs, True)                     # [NE, B, ID]
        ne = k.shape[0]
        q = self._fp4(v4.rope_tail((qd @ L.idx_wq_b.T).view(T, B, IH, ID), freqs, pos)
                      @ ref.hadamard)
        w = (xd @ L.idx_wp.T) * (ID ** -0.5 * IH ** -0.5)                   # [T, B, IH]
        score = torch.einsum("tbh,tbhn->tbn", w,
                             torch.relu(torch.einsum("tbhd,nbd->tbhn", q, k)))
        score = score.masked_fill(~visible[:, None, :], NEG_INF)
        kk = min(cfg.index_topk, ne)
        top = score.detach().topk(kk, dim=-1).indices
        keep = torch.zeros(T, B, ne, dtype=torch.bool).scatter_(2, top, True) & visible[:, None, :]
        rows = visible.any(-1)                                               # [T]
        if rows.any():
            with torch.no_grad():
                tgt = se.detach().masked_fill(~visible[:, None, None, :], NEG_INF)
                tgt = tgt[rows].softmax(-1).mean(2)                          # [t, B, NE]
            lp = score[rows].log_softmax(-1)
            kl = (tgt * (tgt.clamp_min(1e-12).log() - lp.masked_fill(tgt == 0, 0.0))).sum(-1)
            aux.append(kl.mean())
        return keep

    def _moe(self, L: "v4.Layer", x: Tensor, ids: Tensor, loads: List[Tensor]) -> Tensor:
        """deepseek_v4.moe with the per-expert token counts recorded (for the
        aux-loss-free bias update)."""
        ref = self.ref
        w, idx = ref.route(L, x, ids)
        y = torch.zeros_like(x)
        for e in range(ref.cfg.n_experts):
            tok, slot = torch.where(idx == e)
            if tok.numel():
                y = y.index_add(0, tok, ref.ffn(x[tok], *L.experts[e], weight=w[tok, slot, None]))
        loads.append(torch.bincount(idx.reshape(-1), minlength=ref.cfg.n_experts))
        return y + ref.ffn(x, *L.shared)

    def hidden(self, x0: Tensor, ids: Tensor, aux: List[Tensor], loads: List[Tensor]) -> Tensor:
        """x0 [B, T, D] input embeddings, ids [B, T] -> final hidden [B, T, D]."""
        ref, cfg = self.ref, self.ref.cfg
        B, T, D = x0.shape
        X = x0.reshape(B * T, 1, D).repeat(1, cfg.hc, 1)                   # [BT, NH, D]
        fids = ids.reshape(-1)
        for i, L in enumerate(ref.layers):
            u, post, comb = v4.hc_pre(X, *L.hc["attn"], cfg)
            a, p = self._attention(L, rms_norm(u, L.attn_norm, cfg.eps).view(B, T, D), aux)
            if i in self.capture_layers:
                self.captured[i] = p
            if i in self.capture_outputs:
                self.attn_outputs[i] = a
            X = v4.hc_post(a.reshape(B * T, D), X, post, comb)
            u, post, comb = v4.hc_pre(X, *L.hc["ffn"], cfg)
            X = v4.hc_post(self._moe(L, rms_norm(u, L.ffn_norm, cfg.eps), fids, loads),
                           X, post, comb)
        fn, scale, base = ref.hc_head
        pre = torch.sigmoid(v4.hc_mixes(X, fn, cfg.eps) * scale + base) + cfg.hc_eps
        return rms_norm((pre[..., None] * X).sum(1), ref.norm, cfg.eps).view(B, T, D)

    def embed_inputs(self, ids: Tensor, img: Tensor) -> Tensor:
        """ids [B, T] with NI image placeholders per row, img [B, NI, D] the
        aligner outputs spliced over them."""
        x0 = self.t["embed.weight"][ids]
        mask = ids == IMAGE_ID
        return x0.masked_scatter(mask[..., None], img.to(x0.dtype))

    def train_forward(self, ids: Tensor, pixels: Tensor
                      ) -> Tuple[Tensor, List[Tensor], List[Tensor], Tensor]:
        """-> final hidden [B, T, D], indexer KL terms, expert loads, and the
        image embeddings [B, NI, D] (for the trainer's patch supervision)."""
        aux: List[Tensor] = []
        loads: List[Tensor] = []
        img = self.image_embeds(pixels)
        h = self.hidden(self.embed_inputs(ids, img), ids, aux, loads)
        return h, aux, loads, img

    def logits(self, h: Tensor) -> Tensor:
        return h @ self.t["head.weight"].T

    # ---- reference path ----------------------------------------------------

    def ref_greedy(self, ids: Tensor, pixels: Tensor, n: int, quant_sim: bool) -> List[int]:
        """One sequence through deepseek_v4.DeepSeekV4.forward (prefill + cached
        decode) with the image spliced; stops at EOS."""
        ref = self.ref
        with torch.no_grad():
            rows = self.image_embeds(pixels[None])[0]
            ref.embed = SplicedEmbed(self.t["embed.weight"], rows)
            ref.quant_sim = quant_sim
            try:
                cache = ref.new_cache()
                logits = ref.forward(ids, 0, cache)[-1]
                out: List[int] = []
                for _ in range(n):
                    out.append(int(logits.argmax()))
                    if out[-1] == EOS_ID:
                        break
                    logits = ref.forward(torch.tensor([out[-1]]), cache.length, cache)[-1]
            finally:
                ref.embed, ref.quant_sim = self.t["embed.weight"], False
        return out

    def ref_logits(self, ids: Tensor, pixels: Tensor) -> Tensor:
        ref = self.ref
        with torch.no_grad():
            ref.embed = SplicedEmbed(self.t["embed.weight"], self.image_embeds(pixels[None])[0])
            try:
                return ref.forward(ids, 0, ref.new_cache())
            finally:
                ref.embed = self.t["embed.weight"]
