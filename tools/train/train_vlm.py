#!/usr/bin/python3
"""Train, evaluate and export tessera-tiny (issue 7): the tiny DeepSeek-V4
vision-language model of tools/train/vlm_model.py on scenes generated on the
fly by tools/data/scenes.py.

Run with the project venv (Debian's torch + the `tokenizers` package):

    PY=/work/main/.venv/bin/python
    # stage 1: one question or caption per image, sliding window 64
    # (resumable: rerun the same command to continue from ckpt.pt)
    $PY tools/train/train_vlm.py train --out build-train --steps 2000 --lr 1.5e-3 \
        --caption-frac 0.35 --turns 1 --window 64 --max-minutes 58
    # stage 2: the same run continued on a 6000-step schedule, stopped at 2924
    $PY tools/train/train_vlm.py train --out build-train --steps 6000 --lr 1.5e-3 \
        --caption-frac 0.35 --turns 1 --stop-at 2924 --max-minutes 100
    cp build-train/ckpt.pt build-train/ckpt_stage2.pt
    # stage 3a: a fresh tower + aligner trained alone on patch attributes
    $PY tools/train/train_vlm.py pretrain-tower --init-from build-train/ckpt_stage2.pt \
        --out build-train-3a --steps 1500
    # stage 3b: conversations of up to 8 questions per image, window 256,
    # patch supervision kept on (a 1800-step schedule, stopped at 548)
    $PY tools/train/train_vlm.py train --out build-train-3 --init-from build-train-3a/ckpt.pt \
        --steps 1800 --lr 1e-3 --warmup 100 --caption-frac 0.3 --dense-weight 1 --stop-at 548
    cp build-train-3/ckpt.pt build-train-3/ckpt_stage3b.pt
    # stage 3c: stage 3b's weights on a short cosine
    $PY tools/train/train_vlm.py train --out build-train-3c \
        --init-from build-train-3/ckpt_stage3b.pt --steps 500 --lr 5e-4 --warmup 20 \
        --caption-frac 0.3 --dense-weight 1 --max-minutes 60
    # stage 4a: attention scores sharpened 4x (sharpen_attention), 400 steps
    $PY tools/train/train_vlm.py train --out build-train-4a --init-from build-train-3c/ckpt.pt \
        --attn-temp 4 --steps 1000 --lr 5e-4 --warmup 20 --caption-frac 0.3 --dense-weight 1 \
        --val-every 100 --val-n 600 --stop-at 400 --max-minutes 30
    # stage 4b: both lookup hops supervised (attention_targets)
    $PY tools/train/train_vlm.py train --out build-train-4b --init-from build-train-4a/ckpt.pt \
        --steps 2000 --lr 5e-4 --warmup 50 --caption-frac 0.3 --dense-weight 1 \
        --attn-weight 0.5 --val-every 250 --val-n 400 --max-minutes 80
    # stage 4c: the patches' grid positions supervised too (position_loss),
    # a 2800-step schedule stopped at 767
    $PY tools/train/train_vlm.py train --out build-train-4c --init-from build-train-4b/ckpt.pt \
        --steps 2800 --lr 5e-4 --warmup 50 --caption-frac 0.3 --dense-weight 1 \
        --attn-weight 0.5 --position-weight 2 --val-every 400 --val-n 400 --stop-at 767
    # stage 4d: positions weighted towards the object centres
    $PY tools/train/train_vlm.py train --out build-train-4d --init-from build-train-4c/ckpt.pt \
        --steps 2000 --lr 5e-4 --warmup 20 --caption-frac 0.3 --dense-weight 1 \
        --attn-weight 0.5 --position-weight 2 --position-background 0.1 --val-every 400 \
        --val-n 400 --max-minutes 75
    # stage 4e: both relation objects' centres carried by layer 2's output at
    # the answer position (relation_position_loss), a 2000-step schedule
    # stopped at 721
    $PY tools/train/train_vlm.py train --out build-train-4e --init-from build-train-4d/ckpt.pt \
        --steps 2000 --lr 5e-4 --warmup 20 --caption-frac 0.3 --dense-weight 1 \
        --attn-weight 0.5 --position-weight 2 --position-background 0.1 \
        --relation-position-weight 2 --val-every 400 --val-n 400 --stop-at 721
    # stage 4f: the yes-minus-no logit gap of yes/no relations supervised with
    # the signed position difference (relation_answer_loss)
    $PY tools/train/train_vlm.py train --out build-train-4f --init-from build-train-4e/ckpt.pt \
        --steps 1600 --lr 5e-4 --warmup 20 --caption-frac 0.3 --dense-weight 1 \
        --attn-weight 0.5 --position-weight 2 --position-background 0.1 \
        --relation-position-weight 2 --relation-answer-weight 1 --val-every 400 --val-n 400 \
        --max-minutes 68
    # stage 4g: shape, relation_what and size answers (and their attention
    # rows) weighted up (--qtype-weight)
    $PY tools/train/train_vlm.py train --out build-train-4g --init-from build-train-4f/ckpt.pt \
        --steps 2000 --lr 5e-4 --warmup 20 --caption-frac 0.3 --dense-weight 1 \
        --attn-weight 0.5 --position-weight 2 --position-background 0.1 \
        --relation-position-weight 2 --relation-answer-weight 1 \
        --qtype-weight shape=3,relation_what=2,size=1.5 --val-every 500 --val-n 400 \
        --max-minutes 72
    # stage 4h: a short anneal from 4g, shape and size weighted more
    $PY tools/train/train_vlm.py train --out build-train-4h --init-from build-train-4g/ckpt.pt \
        --steps 900 --lr 3e-4 --warmup 20 --caption-frac 0.3 --dense-weight 1 \
        --attn-weight 0.5 --position-weight 2 --position-background 0.1 \
        --relation-position-weight 2 --relation-answer-weight 1 \
        --qtype-weight shape=4,relation_what=2,size=3 --val-every 450 --val-n 400 \
        --max-minutes 31
    # Python-side accuracy per question type (val + held-out), with the reference
    $PY tools/train/train_vlm.py eval --ckpt build-train-4h/ckpt.pt --scenes 1000
    # model directory (config.json, model.safetensors, tokenizer kept) + plot
    $PY tools/train/train_vlm.py export --ckpt build-train-4h/ckpt.pt --model-dir models/tessera-tiny
    # the issue-7 acceptance figures come from the C engine: tools/eval/eval_tiny.py

Training: teacher forcing on the chat-template rendering of a conversation
about one image, `<｜begin▁of▁sentence｜><｜User｜><｜image｜>\\n{prompt}
<｜Assistant｜>{answer}<｜end▁of▁sentence｜>` followed by further
`<｜User｜>{prompt}<｜Assistant｜>{answer}<｜end▁of▁sentence｜>` turns, the image
placeholder expanded to 64 positions carrying the aligner output; loss on
the answer and EOS tokens only. Each conversation is about a fresh "train"
scene (index = step * B + i, so data never repeats and resumes exactly):
with probability --caption-frac a caption prompt (scenes.CAPTION_PROMPTS)
answered by the canonical caption, otherwise up to --turns of the scene's
questions (sample_conversation). AdamW with linear warm-up and cosine decay to 10%, global
grad-norm clip 1, fixed seeds; routed-expert gate biases follow DeepSeek's
aux-loss-free rule (bias += rate * sign(mean load - load)) per step.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import struct
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vlm_model import (EOS_ID, IMAGE_ID, PAD_ID, REPO, TinyVLM,  # noqa: E402
                       init_tensors, model_config)

import scenes  # noqa: E402  (tools/data, on sys.path via vlm_model)

TOKENIZER = REPO / "models" / "tessera-tiny" / "tokenizer.json"
PROMPT_HEAD = "<｜begin▁of▁sentence｜><｜User｜><｜image｜>\n"


class Tok:
    """tokenizers.Tokenizer with memoised encodes (prompts repeat a lot)."""

    def __init__(self, path: Path = TOKENIZER):
        from tokenizers import Tokenizer
        self.tk = Tokenizer.from_file(str(path))
        self.memo: Dict[str, List[int]] = {}

    def enc(self, text: str) -> List[int]:
        ids = self.memo.get(text)
        if ids is None:
            ids = self.tk.encode(text, add_special_tokens=False).ids
            if len(self.memo) < 200000:
                self.memo[text] = ids
        return ids

    def dec(self, ids: List[int]) -> str:
        return self.tk.decode([i for i in ids if i != EOS_ID], skip_special_tokens=True).strip()


def prompt_ids(tok: Tok, text: str, n_img: int) -> List[int]:
    ids = tok.enc(PROMPT_HEAD + text + "<｜Assistant｜>")
    i = ids.index(IMAGE_ID)
    return ids[:i] + [IMAGE_ID] * n_img + ids[i + 1:]


def pixels_of(image: np.ndarray) -> torch.Tensor:
    """uint8 [S, S, 3] -> [3, S, S], (x/255 - 0.5) / 0.5 as Janus normalises."""
    x = torch.from_numpy(image).permute(2, 0, 1).float() * (1.0 / 255.0)
    return (x - 0.5) / 0.5


def pixel_batch(images) -> torch.Tensor:
    """[B, 3, S, S] of pixels_of each image."""
    return torch.stack([pixels_of(im) for im in images])


def sample_conversation(split: str, index: int, seed: int, caption_frac: float,
                        max_turns: int, rng: random.Random, image_size: int
                        ) -> Tuple[np.ndarray, List[Tuple[str, str, str]], list]:
    """(image, [(qtype or "caption", prompt, answer), ...], scene objects) for
    scene `index`.

    With probability caption_frac the conversation is one caption turn.
    Otherwise it is up to max_turns questions about the same image, one per
    question type first (types in random order), then the rest shuffled: the
    64 image positions are paid for once and supervise every answer. Captions
    never share a conversation with questions, since a caption in context
    would answer them without looking at the image."""
    sc = scenes.generate(split, index, seed, image_size)
    if rng.random() < caption_frac or not sc.qa:
        return (sc.image, [("caption", rng.choice(scenes.CAPTION_PROMPTS), sc.captions[0])],
                sc.objects)
    by_type: Dict[str, List[Tuple[str, str]]] = defaultdict(list)
    for qt, q, a in sc.qa:
        by_type[qt].append((q, a))
    if max_turns == 1:
        qt = rng.choice(sorted(by_type))
        return sc.image, [(qt,) + rng.choice(by_type[qt])], sc.objects
    firsts, rest = [], []
    for qt in sorted(by_type):
        qs = by_type[qt][:]
        rng.shuffle(qs)
        firsts.append((qt,) + qs[0])
        rest += [(qt,) + x for x in qs[1:]]
    rng.shuffle(firsts)
    rng.shuffle(rest)
    return sc.image, (firsts + rest)[:max_turns], sc.objects


def conversation_ids(tok: Tok, turns, n_img: int) -> Tuple[List[int], List[int]]:
    """Token ids of the chat-template rendering of `turns` (the image in the
    first user message) and the index ranges [start, end) of every answer +
    EOS span."""
    ids: List[int] = []
    spans = []
    for k, (_, p, a) in enumerate(turns):
        ids += prompt_ids(tok, p, n_img) if k == 0 else tok.enc("<｜User｜>" + p + "<｜Assistant｜>")
        st = len(ids)
        ids += tok.enc(a) + [EOS_ID]
        spans.append((st, len(ids)))
    return ids, spans


def make_batch(tok: Tok, convs, n_img: int):
    """convs: (image, turns, objects) -> ids [B, T] (PAD-right), targets [B, T] (-100
    outside the answer+EOS spans; the target at t is token t+1), pixels
    [B, 3, S, S], and each conversation's conversation_ids (ids, spans)."""
    seqs = [conversation_ids(tok, c[1], n_img) for c in convs]
    T = max(len(s) for s, _ in seqs)
    ids = torch.full((len(seqs), T), PAD_ID, dtype=torch.int64)
    tgt = torch.full((len(seqs), T), -100, dtype=torch.int64)
    for b, (s, spans) in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s)
        for st, en in spans:
            tgt[b, st - 1:en - 1] = torch.tensor(s[st:en])
    return ids, tgt, pixel_batch(c[0] for c in convs), seqs


# Per-question-type weights (--qtype-weight, stage 4g): the answer tokens of
# a question type, and its attention-supervision rows, count this many times
# in their losses. Each type's answers are a small share of the supervised
# tokens (shape 4.4%), so the types still short of the issue-7 targets
# (shape answers name the object by colour and find it with 72% of layer 2's
# mass) get little of the gradient; stage 4f's relation-answer loss showed
# that aiming gradient at one type moves it (yes/no 50% -> 88%). Stages
# 4g-4h took shape from 81.5% to 91.8% and relation_what from 79.5% to
# 88.7% this way (C engine, 1,000 val scenes).
def parse_qtype_weights(spec: Optional[str]) -> Dict[str, float]:
    """"shape=3,size=2" -> {"shape": 3.0, "size": 2.0}; unknown types are an error."""
    out: Dict[str, float] = {}
    for part in filter(None, (spec or "").split(",")):
        name, _, value = part.partition("=")
        if name not in scenes.QTYPES + ("caption",) or not value:
            raise SystemExit(f"--qtype-weight: expected qtype=weight, got {part!r}")
        out[name] = float(value)
    return out


def token_weights(convs, seqs, T: int, weights: Dict[str, float]) -> torch.Tensor:
    """[B, T] weight of each target position (make_batch's layout): the
    weight of its turn's question type, 1 for unlisted types."""
    w = torch.ones(len(seqs), T)
    for b, ((_, turns, _), (_, spans)) in enumerate(zip(convs, seqs)):
        for (qtype, _, _), (st, en) in zip(turns, spans):
            w[b, st - 1:en - 1] = weights.get(qtype, 1.0)
    return w


# Patch supervision (pretrain-tower, and --dense-weight from stage 3b on): a
# linear probe on the image embeddings the backbone receives must name, at
# the patch holding each object's centre, that object's colour, shape and
# size, and "none" elsewhere. Answers alone (stages 1-2) taught the tower
# colour statistics but not shapes: 29% of object patches. The probe is
# training-only (not exported).
DENSE_CLASSES = (("colour", sorted(scenes.COLOURS)), ("shape", list(scenes.SHAPES)),
                 ("size", sorted(scenes.SIZES)))
DENSE_NONE_WEIGHT = 0.1  # background patches outnumber objects ~20:1
# The model's tower and aligner tensors (what pretrain-tower trains).
TOWER_PREFIXES = ("vision_model.", "aligner.")


def centre_cell(o, image_size: int, patch: int) -> int:
    """Index of the patch (= image token) holding object o's centre."""
    g = image_size // patch
    return min(int(o.cy) // patch, g - 1) * g + min(int(o.cx) // patch, g - 1)


def patch_targets(objects, image_size: int, patch: int) -> torch.Tensor:
    """[G*G, 3] class index + 1 per attribute (0 = no object centre there)."""
    g = image_size // patch
    t = torch.zeros(g * g, len(DENSE_CLASSES), dtype=torch.int64)
    for o in objects:
        cell = centre_cell(o, image_size, patch)
        for a, (attr, names) in enumerate(DENSE_CLASSES):
            t[cell, a] = names.index(getattr(o, attr)) + 1
    return t


def patch_target_batch(object_lists, image_size: int, patch: int) -> torch.Tensor:
    """[B, G*G, 3] of patch_targets per scene's objects."""
    return torch.stack([patch_targets(objs, image_size, patch) for objs in object_lists])


# Attention supervision (--attn-weight): at the position that predicts an
# answer's first token, the answer must be looked up in two hops, and each
# hop is taught directly. In --text-layer, head 0 attends to the words of
# the question's subject and head 1 to those of a relation's second object;
# in --attn-layer, head 0 attends to the centre patch(es) of the subject
# (scenes.referents) and head 1 to the second object, and a "no" existence
# question, whose description matches nothing, sends head 0 to the sink.
# With answers alone the answer position never learned either hop: after
# stage 3 its yes-minus-no logit gap was the same for "yes" and "no"
# existence questions (-0.10 +- 0.03 against -0.11 +- 0.02). The image hop
# alone plateaued at 44% of the mass on the right object, and on the image
# for "no" questions, for want of the first hop. tools/train/
# diagnose_lookup.py measures both hops.
def attention_targets(tok: "Tok", convs, seqs, image_start: int, image_size: int,
                      patch: int, T: int, weights: Optional[Dict[str, float]] = None):
    """convs and their conversation_ids `seqs` (make_batch's) -> {"text":
    targets, "image": targets}, each (positions [N, 3] of (t, b, head), key
    mask [N, T], sink [N], row weight [N] from `weights` by question type)."""
    out = {"text": ([], [], [], []), "image": ([], [], [], [])}
    weights = weights or {}

    def add(kind, t, b, head, keys, weight):
        m = torch.zeros(T)
        m[keys] = 1.0
        out[kind][0].append((t, b, head))
        out[kind][1].append(m)
        out[kind][2].append(not keys)
        out[kind][3].append(weight)

    for b, ((_, turns, objs), (ids, spans)) in enumerate(zip(convs, seqs)):
        turn_start = 0
        for (qtype, question, answer), (st, en) in zip(turns, spans):
            if qtype != "caption":
                weight = weights.get(qtype, 1.0)
                words = [tok.tk.id_to_token(i).lstrip("Ġ") for i in ids[turn_start:st]]
                runs = [r for _, r in scenes.description_runs(words)]
                # relation_what's first run is its "which object" (no referent)
                said = runs[-1:] if qtype == "relation_what" else runs
                heads = [1] if qtype == "relation_what" else range(len(said))
                for head, run in zip(heads, said):
                    add("text", st - 1, b, head, [turn_start + i for i in run], weight)
                for head, ref in enumerate(scenes.referents(qtype, question, answer, objs)):
                    add("image", st - 1, b, head,
                        [image_start + centre_cell(objs[i], image_size, patch) for i in ref],
                        weight)
            turn_start = en
    return {k: (torch.tensor(r, dtype=torch.int64).view(-1, 3),
                torch.stack(m) if m else torch.zeros(0, T), torch.tensor(sk, dtype=torch.bool),
                torch.tensor(w, dtype=torch.float32))
            for k, (r, m, sk, w) in out.items()}


def attention_loss(p: torch.Tensor, targets) -> torch.Tensor:
    """Mean over supervised rows of weight * -log of the mass the head puts
    where it should: p [T, B, H, keys] captured probabilities (the sink is
    1 - their sum)."""
    rows, mask, sink, weight = targets
    if rows.shape[0] == 0:
        return p.new_zeros(())
    sel = p[rows[:, 0], rows[:, 1], rows[:, 2]][:, :mask.shape[1]]         # [N, T]
    mass = torch.where(sink, 1.0 - sel.sum(-1), (sel * mask).sum(-1))
    return -(weight * mass.clamp_min(1e-6).log()).mean()


def probe_of(ck: dict) -> Optional[Dict[str, torch.Tensor]]:
    """A checkpoint's probe as trainable tensors (None if it has none)."""
    if ck.get("probe") is None:
        return None
    return {k: v.clone().requires_grad_() for k, v in ck["probe"].items()}


def new_probe(dim: int, seed: int) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 7)
    n = sum(len(names) + 1 for _, names in DENSE_CLASSES)
    return {"weight": (torch.randn(n, dim, generator=g) * dim ** -0.5).requires_grad_(),
            "bias": torch.zeros(n, requires_grad=True)}


def probe_logits(probe: Dict[str, torch.Tensor], img: torch.Tensor):
    """img [B, NI, D] -> (attribute index, name, logits [B, NI, classes + 1])
    for each of DENSE_CLASSES."""
    logits = img @ probe["weight"].T + probe["bias"]
    off = 0
    for a, (attr, names) in enumerate(DENSE_CLASSES):
        yield a, attr, logits[..., off:off + len(names) + 1]
        off += len(names) + 1


def dense_loss(probe: Dict[str, torch.Tensor], img: torch.Tensor, tgt: torch.Tensor
               ) -> torch.Tensor:
    """img [B, NI, D], tgt [B, NI, 3] -> weighted cross-entropy summed over
    the three attributes."""
    w = torch.where(tgt > 0, 1.0, DENSE_NONE_WEIGHT)
    loss = img.new_zeros(())
    for a, _, lg in probe_logits(probe, img):
        ce = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tgt[..., a].reshape(-1),
                             reduction="none")
        loss = loss + (ce * w[..., a].reshape(-1)).sum() / w[..., a].sum()
    return loss


# Position supervision (--position-weight, stage 4c): the same probe's
# "position_*" rows must read every patch's grid (row, col), scaled to
# [-1, 1], linearly from its image embedding. Relations compare two objects'
# positions, yet after stage 4b a least-squares fit from the object patches'
# embeddings to their centres explained none of the variance (R^2 -0.06 for
# x, -0.01 for y on val scenes, diagnose_lookup.position_fit): the tower's
# learned pos_embed had been washed out, and yes/no relations sat at the
# prior (49%) with both objects found. After stage 4d the fit is R^2 0.98.
# The rows start at zero: random ones (std dim^-0.5) read the embeddings'
# RMS ~4 as a loss of 17 whose gradient swamped the clipped update. At the
# base learning rate zero rows took ~50 steps to matter, hence the scale.
ZERO_INIT_PROBES = ("position_", "relation_")  # probe rows that start at zero
ZERO_INIT_LR_SCALE = 10.0


def new_position_probe(dim: int) -> Dict[str, torch.Tensor]:
    return {"position_weight": torch.zeros(2, dim, requires_grad=True),
            "position_bias": torch.zeros(2, requires_grad=True)}


def patch_grid(n_patches: int) -> torch.Tensor:
    """[NI, 2] (row, col) of each patch, scaled to [-1, 1]."""
    g = math.isqrt(n_patches)
    i = torch.arange(n_patches)
    return torch.stack([i // g, i % g], 1).float() * (2.0 / (g - 1)) - 1.0


def position_loss(probe: Dict[str, torch.Tensor], img: torch.Tensor, centres: torch.Tensor,
                  background_weight: float) -> torch.Tensor:
    """img [B, NI, D], centres [B, NI] (True at an object's centre patch) ->
    squared error of the probe's (row, col), object centres weighted 1 and
    other patches `background_weight`.

    Stage 4c weighted every patch alike: the loss fell from 0.43 to 0.04,
    but the fit on object centres reached only R^2 0.18 (x) / 0.32 (y), the
    ~2.5 object patches per image drowned by ~61 background ones; stage 4d
    weights the background 0.1, as the attribute probe does."""
    pred = img @ probe["position_weight"].T + probe["position_bias"]
    err = (pred - patch_grid(img.shape[1])).pow(2).mean(-1)
    w = torch.where(centres, 1.0, background_weight)
    return (err * w).sum() / w.sum()


# Relation-position supervision (--relation-position-weight): at the
# position that predicts a relation question's answer, the output of
# --attn-layer's attention must carry both objects' centres, read linearly
# by the probe's "relation_*" rows. With the positions in the image
# embeddings (after stage 4d, R^2 0.98 on the object patches) yes/no
# relations stayed at chance, and a least-squares fit from the answer
# position's final hidden state to the two centres explained none of their
# variance (R^2 -0.18 to -0.36): the lookup fetched the objects but not
# where they are.
def relation_position_targets(convs, seqs, image_size: int):
    """-> (rows [N, 2] of (t, b), targets [N, 4]: (x, y) of the relation's
    two objects scaled to [-1, 1]) for every relation and relation_what turn."""
    rows, targets = [], []
    for b, ((_, turns, objs), (_, spans)) in enumerate(zip(convs, seqs)):
        for (qtype, question, answer), (st, _) in zip(turns, spans):
            if qtype not in ("relation", "relation_what"):
                continue
            xy = []
            for ref in scenes.referents(qtype, question, answer, objs):
                xy += [sum(objs[i].cx for i in ref) / len(ref),
                       sum(objs[i].cy for i in ref) / len(ref)]
            rows.append((st - 1, b))
            targets.append([v * 2.0 / image_size - 1.0 for v in xy])
    return (torch.tensor(rows, dtype=torch.int64).view(-1, 2),
            torch.tensor(targets, dtype=torch.float32).view(-1, 4))


def relation_position_loss(probe: Dict[str, torch.Tensor], out: torch.Tensor, targets
                           ) -> torch.Tensor:
    """out [B, T, D] attention output -> mean squared error of the probe's
    two centres at the supervised rows."""
    rows, tgt = targets
    if rows.shape[0] == 0:
        return out.new_zeros(())
    pred = out[rows[:, 1], rows[:, 0]] @ probe["relation_weight"].T + probe["relation_bias"]
    return F.mse_loss(pred, tgt)


def new_relation_probe(dim: int) -> Dict[str, torch.Tensor]:
    return {"relation_weight": torch.zeros(4, dim, requires_grad=True),
            "relation_bias": torch.zeros(4, requires_grad=True)}


# Relation-answer supervision (--relation-answer-weight): at a yes/no
# relation question's answer position, the gap logit("yes") - logit("no"),
# divided by ANSWER_GAP_SCALE, must equal how far the relation holds: the
# subject's centre minus the other object's along the relation's axis,
# signed so that it is positive exactly when the answer is "yes". With both
# objects' positions fetched (stage 4e), the greedy answer was "yes" on
# 62-100% of 1,200 val questions, whatever the truth: the answer needs the
# relation word times the difference of the positions, a product the answer
# loss, of which these answers' yes/no tokens are 3% (309 of 9,508
# supervised tokens in 20 batches), did not build. A learned
# zero-initialised readout of the final hidden state (like the position
# rows) stayed at its zero value, 0.88, for 170 steps: with nothing to read
# it did not grow, so no gradient reached the model through it.
ANSWER_GAP_SCALE = 4.0  # a difference of a quarter image -> a logit gap of 2
RELATION_AXES = {"left of": (0, -1.0), "right of": (0, 1.0), "above": (1, -1.0),
                 "below": (1, 1.0)}  # word -> (axis of (x, y), sign of subject - other)


def relation_answer_targets(convs, seqs, image_size: int):
    """-> (rows [N, 2] of (t, b), targets [N, 1]) for every yes/no relation
    turn: sign * (subject - other) along the relation's axis, in units of
    half the image."""
    rows, targets = [], []
    for b, ((_, turns, objs), (_, spans)) in enumerate(zip(convs, seqs)):
        for (qtype, question, answer), (st, _) in zip(turns, spans):
            if qtype != "relation":
                continue
            axis, sign = RELATION_AXES[scenes.relation_word(question)]
            subject, other = (
                sum((objs[i].cx, objs[i].cy)[axis] for i in ref) / len(ref)
                for ref in scenes.referents(qtype, question, answer, objs))
            rows.append((st - 1, b))
            targets.append([sign * (subject - other) * 2.0 / image_size])
    return (torch.tensor(rows, dtype=torch.int64).view(-1, 2),
            torch.tensor(targets, dtype=torch.float32).view(-1, 1))


def relation_answer_loss(gap: torch.Tensor, targets) -> torch.Tensor:
    """gap [B, T] logit("yes") - logit("no") -> mean squared error of
    gap / ANSWER_GAP_SCALE against the signed differences at the supervised
    rows."""
    rows, tgt = targets
    if rows.shape[0] == 0:
        return gap.new_zeros(())
    return F.mse_loss(gap[rows[:, 1], rows[:, 0]] / ANSWER_GAP_SCALE, tgt[:, 0])


def dense_accuracy(probe: Dict[str, torch.Tensor], img: torch.Tensor, tgt: torch.Tensor
                   ) -> Dict[str, float]:
    """Probe accuracy per attribute on the patches holding an object centre."""
    res = {}
    for a, attr, lg in probe_logits(probe, img):
        obj = tgt[..., a] > 0
        res[attr] = float((lg.argmax(-1)[obj] == tgt[..., a][obj]).float().mean())
    return res


def separate_answer_rows(tok: Tok, head: torch.Tensor, words: List[str], seed: int) -> None:
    """Output-head rows of the one-token answers `words` reset to their mean
    plus independent N(0, 0.04/D) noise (norm ~0.2 each; with the final
    hidden state's norm ~15 that starts the yes/no logit gap at ~0.4).

    Why: through stages 1-3b the rows of "yes" and "no" converged (|W_yes -
    W_no| 0.06 against row norms 0.8): the hidden state at a yes/no answer
    gets gradient only along that difference, so with it near zero the
    state stopped depending on the image and the question (std 0.6% of its
    norm across items) and every yes/no answer sat at the 52/48 prior.
    Separating them was meant to give the backbone a gradient again; in the
    one run that tried it (from stage 3b, 258 steps) the answers stayed at
    the prior, so the shipped stages do not use it (model card)."""
    g = torch.Generator().manual_seed(seed + 11)
    ids = []
    for w in words:
        t = tok.enc(w)
        if len(t) != 1:
            raise SystemExit(f"--separate-answers: {w!r} is {len(t)} tokens, not one")
        ids.append(t[0])
    with torch.no_grad():
        mean = head[ids].mean(0)
        for i in ids:
            head[i] = mean + torch.randn(head.shape[1], generator=g) * (0.2 * head.shape[1] ** -0.5)
    print(f"separated output rows of {words}", flush=True)


# --------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------


def save_ckpt(path: Path, model: TinyVLM, opt, step: int, args_d: dict, extra: dict,
              probe: Optional[Dict[str, torch.Tensor]] = None) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, "tensors": {k: v.detach() for k, v in model.t.items()},
                "opt": opt.state_dict() if opt is not None else None,
                "config": model.cfgj, "args": args_d, "extra": extra,
                "probe": None if probe is None else {k: v.detach() for k, v in probe.items()}},
               tmp)
    os.replace(tmp, path)


def load_model(path: Path) -> Tuple[TinyVLM, dict]:
    ck = torch.load(path)
    return TinyVLM(ck["config"], {k: v.clone() for k, v in ck["tensors"].items()}), ck


def make_opt(model: TinyVLM, lr: float, wd: float,
             probe: Optional[Dict[str, torch.Tensor]] = None):
    decay, no_decay = [], []
    for k, v in model.t.items():
        if not v.requires_grad:
            continue
        (decay if v.dim() >= 2 and "pos_embed" not in k and not k.endswith("_fn")
         else no_decay).append(v)
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    if probe is not None:
        groups.append({"params": [v for k, v in probe.items()
                                  if not k.startswith(ZERO_INIT_PROBES)], "weight_decay": 0.0})
        fast = [v for k, v in probe.items() if k.startswith(ZERO_INIT_PROBES)]
        if fast:
            groups.append({"params": fast, "weight_decay": 0.0, "lr_scale": ZERO_INIT_LR_SCALE})
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-8)


def lr_at(step: int, total: int, peak: float, warm: int) -> float:
    if step < warm:
        return peak * (step + 1) / warm
    f = min(1.0, (step - warm) / max(1, total - warm))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * f)))


# --------------------------------------------------------------------------
# evaluation (batched greedy decoding with train_forward, no cache)
# --------------------------------------------------------------------------


def eval_items(split: str, n: int, seed: int, image_size: int, first: int = 0
               ) -> List[Tuple[np.ndarray, str, str, str]]:
    """Every question of scenes first.. until n items, plus one caption item
    per 4 scenes (prompt "Describe the image.")."""
    out = []
    i = first
    while len(out) < n:
        sc = scenes.generate(split, i, seed, image_size)
        for qt, q, a in sc.qa:
            out.append((sc.image, qt, q, a))
        if i % 4 == 0:
            out.append((sc.image, "caption", "Describe the image.", sc.captions[0]))
        i += 1
    return out[:n]


@torch.no_grad()
def greedy_batch(model: TinyVLM, tok: Tok, items, max_new: int) -> List[List[int]]:
    n_img = model.n_img
    prompts = [prompt_ids(tok, p, n_img) for _, _, p, _ in items]
    lens = torch.tensor([len(p) for p in prompts])
    T = int(lens.max()) + max_new
    ids = torch.full((len(items), T), PAD_ID, dtype=torch.int64)
    for b, p in enumerate(prompts):
        ids[b, :len(p)] = torch.tensor(p)
    pix = pixel_batch(it[0] for it in items)
    x_img = model.image_embeds(pix)
    out = [[] for _ in items]
    done = torch.zeros(len(items), dtype=torch.bool)
    cur = lens.clone()
    for _ in range(max_new):
        L = int(cur.max())
        x0 = model.t["embed.weight"][ids[:, :L]]
        x0 = x0.masked_scatter((ids[:, :L] == IMAGE_ID)[..., None], x_img)
        h = model.hidden(x0, ids[:, :L], [], [])
        last = h[torch.arange(len(items)), cur - 1]
        nxt = model.logits(last).argmax(-1)
        for b in range(len(items)):
            if not done[b]:
                out[b].append(int(nxt[b]))
                ids[b, cur[b]] = nxt[b]
                if int(nxt[b]) == EOS_ID:
                    done[b] = True
        cur = torch.where(done, cur, cur + 1)
        if bool(done.all()):
            break
    return out


def f1_caption(pred: str, gold: str) -> float:
    """Attribute F1 of the (size, colour, shape) multisets the captions name."""
    p, g = scenes.caption_objects(pred), scenes.caption_objects(gold)
    tp = sum((p & g).values())
    if not p and not g:
        return 1.0
    prec = tp / max(1, sum(p.values()))
    rec = tp / max(1, sum(g.values()))
    return 0.0 if tp == 0 else 2 * prec * rec / (prec + rec)


def scene_items(split: str, n_scenes: int, seed: int, image_size: int, first: int = 0
                ) -> List[Tuple[np.ndarray, str, str, str]]:
    """Every question of scenes first..first+n_scenes-1 plus one caption item
    per scene (prompt "Describe the image."): the issue-7 evaluation set."""
    out = []
    for i in range(first, first + n_scenes):
        sc = scenes.generate(split, i, seed, image_size)
        out += [(sc.image, qt, q, a) for qt, q, a in sc.qa]
        out.append((sc.image, "caption", "Describe the image.", sc.captions[0]))
    return out


def score(items, preds: List[str]) -> Dict[str, float]:
    """Accuracy per question type (exact match of the decoded answer), per
    issue-7 group, caption exact match and caption attribute F1; n_<key> is
    the item count behind each figure."""
    hits: Dict[str, List[float]] = defaultdict(list)
    for it, pred in zip(items, preds):
        ok = float(pred == it[3])
        hits[it[1]].append(ok)
        if it[1] == "caption":
            hits["caption_f1"].append(f1_caption(pred, it[3]))
        else:
            hits["group_" + scenes.QTYPE_GROUP[it[1]]].append(ok)
            hits["all_qa"].append(ok)
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())} | {
        "n_" + k: len(v) for k, v in sorted(hits.items())}


def greedy_answers(model: TinyVLM, tok: Tok, items, batch: int = 64,
                   quant_sim: bool = False) -> List[str]:
    """Decoded greedy answers of the Python model, in the order of `items`;
    quant_sim: with DeepSeek's FP8 KV / FP4 indexer round trips (the
    inference numerics the C engine implements), else plain f32."""
    order = sorted(range(len(items)), key=lambda i: items[i][1] == "caption")
    preds: List[str] = [""] * len(items)
    model.ref.quant_sim = quant_sim
    try:
        # Captions decode ~30 tokens, answers <= 8: batch them apart.
        for i in range(0, len(order), batch):
            chunk = [items[j] for j in order[i:i + batch]]
            max_new = 40 if any(it[1] == "caption" for it in chunk) else 10
            for j, o in zip(order[i:i + batch], greedy_batch(model, tok, chunk, max_new)):
                preds[j] = tok.dec(o)
    finally:
        model.ref.quant_sim = False  # training runs the f32 numerics
    return preds


def evaluate(model: TinyVLM, tok: Tok, items, batch: int = 64) -> Dict[str, float]:
    return score(items, greedy_answers(model, tok, items, batch))


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------


def sharpen_attention(tensors: Dict[str, torch.Tensor], n_layers: int, factor: float) -> None:
    """Multiply every layer's kv_norm gain by `factor` and wo_a by 1/factor.

    V4 normalises each query head to RMS 1 without a gain, so a score is
    q.k / sqrt(head_dim) <= |k| = sqrt(head_dim) * kv_norm gain: about 5.7 at
    head_dim 32 and gain 1, against 22.6 at the real model's head_dim 512.
    That ceiling keeps attention diffuse, and the gains stayed near 1 through
    stages 1-3 (1.04 on average). Since keys are values, the same gain also
    scales what attention returns; dividing wo_a undoes that, so only the
    score temperature changes."""
    for i in range(n_layers):
        tensors[f"layers.{i}.attn.kv_norm.weight"] = tensors[f"layers.{i}.attn.kv_norm.weight"] * factor
        tensors[f"layers.{i}.attn.wo_a.weight"] = tensors[f"layers.{i}.attn.wo_a.weight"] / factor


def train(args) -> int:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "ckpt.pt"
    log_path = out / "train_log.csv"
    val_path = out / "val_log.csv"
    tok = Tok()
    probe = None
    if ckpt.exists():
        model, ck = load_model(ckpt)
        probe = probe_of(ck)
        opt = make_opt(model, args.lr, args.wd, probe)
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        extra = ck.get("extra", {})
        print(f"resumed from {ckpt} at step {step}", flush=True)
    else:
        torch.manual_seed(args.seed)
        cfgj = model_config(args.window, args.head_dim)
        init = {}
        if args.init_from:  # a new stage: earlier weights, this stage's config + schedule
            init = torch.load(args.init_from)
            tensors = init["tensors"]
            print(f"initialised from {args.init_from}", flush=True)
        else:
            tensors = init_tensors(cfgj, args.seed)
        if args.init_tower_from:  # a fresh backbone over an already trained tower
            init = torch.load(args.init_tower_from)
            tensors.update({k: v for k, v in init["tensors"].items()
                            if k.startswith(TOWER_PREFIXES)})
            print(f"tower and aligner from {args.init_tower_from}", flush=True)
        if args.attn_temp != 1.0:
            sharpen_attention(tensors, cfgj["num_hidden_layers"], args.attn_temp)
        if args.separate_answers:
            separate_answer_rows(tok, tensors["head.weight"], args.separate_answers.split(","),
                                 args.seed)
        model = TinyVLM(cfgj, tensors)
        if args.dense_weight > 0:  # the tower stage's probe carries on
            probe = probe_of(init) or new_probe(cfgj["hidden_size"], args.seed)
        if args.position_weight > 0 and "position_weight" not in (probe or {}):
            probe = {**(probe or {}), **new_position_probe(cfgj["hidden_size"])}
        if args.relation_position_weight > 0 and "relation_weight" not in (probe or {}):
            probe = {**(probe or {}), **new_relation_probe(cfgj["hidden_size"])}
        opt = make_opt(model, args.lr, args.wd, probe)
        step, extra = 0, {"minutes": 0.0}
        with open(log_path, "w", newline="") as f:
            csv.writer(f).writerow(["step", "loss", "aux", "lr", "grad_norm", "sec_per_step",
                                    "wall_min"] + (["dense"] if args.dense_weight > 0 else [])
                                   + (["attn"] if args.attn_weight > 0 else [])
                                   + (["position"] if args.position_weight > 0 else [])
                                   + (["relation"] if args.relation_position_weight > 0 else [])
                                   + (["answer"] if args.relation_answer_weight > 0 else []))
        with open(val_path, "w", newline="") as f:
            csv.writer(f).writerow(["step", "wall_min", "metrics_json"])
    n_params = sum(v.numel() for v in model.t.values() if v.is_floating_point())
    print(f"params {n_params / 1e6:.3f} M", flush=True)
    val_items = eval_items("val", args.val_n, args.seed, args.image_size)
    t_start = time.time()
    minutes0 = extra.get("minutes", 0.0)
    last_save = time.time()
    params = model.parameters() + (list(probe.values()) if probe is not None else [])
    patch = model.vcfg.patch_size
    biases = [L.gate_bias for L in model.ref.layers if not L.hash]
    n_img = model.n_img
    image_start = prompt_ids(tok, "", n_img).index(IMAGE_ID)
    if args.attn_weight > 0:
        model.capture_layers = (args.text_layer, args.attn_layer)
    if args.relation_position_weight > 0:
        model.capture_outputs = (args.attn_layer,)
    yes_id, no_id = tok.enc("yes")[0], tok.enc("no")[0]  # one token each
    qtype_weights = parse_qtype_weights(args.qtype_weight)
    while step < args.steps:
        t0 = time.time()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, args.warmup) * g.get("lr_scale", 1.0)
        rng = random.Random(f"batch/{args.seed}/{step}")
        convs = [sample_conversation("train", step * args.batch + i, args.seed,
                                     args.caption_frac, args.turns, rng, args.image_size)
                 for i in range(args.batch)]
        ids, tgt, pix, seqs = make_batch(tok, convs, n_img)
        h, aux, loads, img = model.train_forward(ids, pix)
        m = tgt != -100
        token_ce = F.cross_entropy(model.logits(h[m]), tgt[m], reduction="none")
        loss = token_ce.mean()  # logged unweighted, comparable across stages
        aux_l = torch.stack(aux).sum() if aux else torch.zeros(())
        weighted = ((token_ce * token_weights(convs, seqs, ids.shape[1], qtype_weights)[m]).mean()
                    if qtype_weights else loss)
        total = weighted + args.aux_weight * aux_l
        if args.attn_weight > 0:
            tg = attention_targets(tok, convs, seqs, image_start, args.image_size, patch,
                                   ids.shape[1], qtype_weights)
            attn = (attention_loss(model.captured[args.attn_layer], tg["image"])
                    + attention_loss(model.captured[args.text_layer], tg["text"]))
            total = total + args.attn_weight * attn
        if probe is not None:
            patch_tgt = patch_target_batch((c[2] for c in convs), args.image_size, patch)
        if args.dense_weight > 0:
            dense = dense_loss(probe, img, patch_tgt)
            total = total + args.dense_weight * dense
        if args.position_weight > 0:
            pos = position_loss(probe, img, patch_tgt[..., 0] > 0, args.position_background)
            total = total + args.position_weight * pos
        if args.relation_position_weight > 0:
            rel = relation_position_loss(probe, model.attn_outputs[args.attn_layer],
                                         relation_position_targets(convs, seqs, args.image_size))
            total = total + args.relation_position_weight * rel
        if args.relation_answer_weight > 0:
            yes_no = model.t["head.weight"][[yes_id, no_id]]
            gap = h @ (yes_no[0] - yes_no[1])
            ans = relation_answer_loss(gap, relation_answer_targets(convs, seqs, args.image_size))
            total = total + args.relation_answer_weight * ans
        opt.zero_grad(set_to_none=True)
        total.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():  # aux-loss-free balancing of the non-hash layers
            nh = [ld for ld, L in zip(loads, model.ref.layers) if not L.hash]
            for b, ld in zip(biases, nh):
                ld = ld.float()
                b += args.bias_rate * torch.sign(ld.mean() - ld)
        step += 1
        dt = time.time() - t0
        wall = minutes0 + (time.time() - t_start) / 60
        with open(log_path, "a", newline="") as f:
            csv.writer(f).writerow([step, f"{loss.item():.5f}", f"{aux_l.item():.5f}",
                                    f"{opt.param_groups[0]['lr']:.3e}", f"{float(gn):.4f}",
                                    f"{dt:.3f}", f"{wall:.2f}"]
                                   + ([f"{dense.item():.5f}"] if args.dense_weight > 0 else [])
                                   + ([f"{attn.item():.5f}"] if args.attn_weight > 0 else [])
                                   + ([f"{pos.item():.5f}"] if args.position_weight > 0 else [])
                                   + ([f"{rel.item():.5f}"] if args.relation_position_weight > 0
                                      else [])
                                   + ([f"{ans.item():.5f}"] if args.relation_answer_weight > 0
                                      else []))
        if step % 10 == 0 or step == 1:
            print(f"step {step} loss {loss.item():.4f} aux {aux_l.item():.4f} "
                  + (f"dense {dense.item():.4f} " if args.dense_weight > 0 else "")
                  + (f"attn {attn.item():.4f} " if args.attn_weight > 0 else "")
                  + (f"position {pos.item():.4f} " if args.position_weight > 0 else "")
                  + (f"relation {rel.item():.4f} " if args.relation_position_weight > 0 else "")
                  + (f"answer {ans.item():.4f} " if args.relation_answer_weight > 0 else "")
                  + f"gn {float(gn):.3f} {dt:.2f}s/step wall {wall:.1f} min", flush=True)
        stop = ((time.time() - t_start) / 60 >= args.max_minutes or step >= args.steps
                or step == args.stop_at)
        if step % args.val_every == 0 or stop:
            t1 = time.time()
            met = evaluate(model, tok, val_items)
            print(f"val step {step}: " + " ".join(
                f"{k}={v:.3f}" for k, v in met.items() if not k.startswith("n_")) +
                f" ({time.time() - t1:.0f}s)", flush=True)
            with open(val_path, "a", newline="") as f:
                csv.writer(f).writerow([step, f"{wall:.2f}", json.dumps(met)])
        if stop or time.time() - last_save > args.save_minutes * 60:
            extra["minutes"] = minutes0 + (time.time() - t_start) / 60
            save_ckpt(ckpt, model, opt, step, vars(args), extra, probe)
            last_save = time.time()
            print(f"saved {ckpt} at step {step}", flush=True)
        if stop:
            break
    return 0


# --------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------


def write_safetensors(path: Path, tensors: Dict[str, torch.Tensor], meta: dict) -> int:
    """F32 (floats) / I64 (tid2eid) safetensors, names sorted, 8-byte aligned."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        if t.is_floating_point():
            a, dt = t.to(torch.float32).numpy(), "F32"
        else:
            a, dt = t.to(torch.int64).numpy(), "I64"
        b = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    return 8 + len(h) + off


def export(args) -> int:
    model, ck = load_model(Path(args.ckpt))
    d = Path(args.model_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(model.cfgj, indent=2, ensure_ascii=False) + "\n")
    n = write_safetensors(d / "model.safetensors", model.t,
                          {"format": "pt", "step": ck["step"], "producer": "tools/train/train_vlm.py"})
    print(f"wrote {d}/model.safetensors ({n / 1e6:.2f} MB) at step {ck['step']}")
    stages = [Path(x) for x in args.log_dirs.split(",")] if args.log_dirs else [
        Path(args.ckpt).parent]
    if all((x / "train_log.csv").exists() for x in stages):
        join_logs(stages, d)
        plot_png(d / "train_log.csv", d / "val_log.csv", d / "training_curve.png")
        print(f"wrote {d}/train_log.csv, val_log.csv, training_curve.png "
              f"({len(stages)} stage logs)")
    if args.check:
        check_dir(d, model)
    return 0


def join_logs(stage_dirs: List[Path], d: Path) -> None:
    """The train / val logs of consecutive stages as one run: each stage's
    steps continue the previous stage's last step (a stage started with
    --init-from counts from 0), its stage directory in a `stage` column;
    train columns are those all stages share."""
    train_rows, val_rows, offset = [], [], 0
    for sd in stage_dirs:
        rows = list(csv.DictReader(open(sd / "train_log.csv")))
        first = int(rows[0]["step"]) if rows else 1
        base = offset if first == 1 else 0
        for r in rows:
            train_rows.append(dict(r, step=int(r["step"]) + base, stage=sd.name))
        if (sd / "val_log.csv").exists():
            for r in csv.DictReader(open(sd / "val_log.csv")):
                val_rows.append(dict(r, step=int(r["step"]) + base, stage=sd.name))
        offset = train_rows[-1]["step"] if train_rows else offset
    cols = [c for c in train_rows[0] if all(c in r for r in train_rows)]
    with open(d / "train_log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(train_rows)
    with open(d / "val_log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["step", "wall_min", "metrics_json", "stage"])
        w.writeheader()
        w.writerows(val_rows)


def check_dir(d: Path, model: TinyVLM) -> None:
    """The exported directory read back by the reference loaders
    (deepseek_v4.DeepSeekV4 and vision.VisionModel.load) gives the training
    model's logits on a val scene."""
    sys.path.insert(0, str(REPO / "tools" / "reference"))
    import deepseek_v4 as v4
    import vision as vis
    tok = Tok()
    img, qt, q, a = eval_items("val", 1, 0, model.vcfg.image_size)[0]
    ids = torch.tensor(prompt_ids(tok, q, model.n_img))
    pix = pixels_of(img)
    with torch.no_grad():
        vm = vis.VisionModel.load(d)
        rows = vm.project(vm.encode(pix[None]))[0]
        ref = v4.DeepSeekV4(d, quant_sim=False)
        from vlm_model import SplicedEmbed
        ref.embed = SplicedEmbed(ref.embed, rows)
        lg = ref.forward(ids)
        mine = model.ref_logits(ids, pix)
        h, _, _, _ = model.train_forward(ids[None], pix[None])
        tr = model.logits(h[0])
    print(f"reload check: max |ref(dir) - ref(ckpt)| = {float((lg - mine).abs().max()):.3g}, "
          f"max |train_forward - ref| = {float((tr - mine).abs().max()):.3g}")


# --------------------------------------------------------------------------
# plot (numpy + zlib PNG, no matplotlib on this machine)
# --------------------------------------------------------------------------

FONT = {  # 3x5 glyphs, rows top to bottom, 3 bits each
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", ".": "000000000000010", "k": "100101110101101",
    "%": "101001010100101", " ": "000000000000000", "-": "000000111000000",
}


def _text(img, x, y, s, col, scale=2):
    for ch in s:
        g = FONT.get(ch, FONT[" "])
        for r in range(5):
            for c in range(3):
                if g[r * 3 + c] == "1":
                    img[y + r * scale:y + (r + 1) * scale, x + c * scale:x + (c + 1) * scale] = col
        x += 4 * scale


def _line(img, xs, ys, col):
    for (x0, y0), (x1, y1) in zip(zip(xs[:-1], ys[:-1]), zip(xs[1:], ys[1:])):
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        for t in np.linspace(0, 1, n):
            x, y = int(round(x0 + (x1 - x0) * t)), int(round(y0 + (y1 - y0) * t))
            img[y:y + 2, x:x + 2] = col


def plot_png(train_csv: Path, val_csv: Path, out: Path) -> None:
    """Left panel: training loss (log10 axis, EMA-smoothed, y ticks as
    values) vs step (x ticks in thousands). Right panel: val accuracy (%) of
    attribute (blue), count (orange), relation (green) groups and caption
    attribute F1 (purple) vs step."""
    rows = list(csv.DictReader(open(train_csv)))
    steps = np.array([int(r["step"]) for r in rows], float)
    loss = np.array([float(r["loss"]) for r in rows])
    ema, a = [], loss[0]
    for v in loss:
        a = 0.95 * a + 0.05 * v
        ema.append(a)
    ema = np.array(ema)
    W, H, pad = 900, 360, 40
    img = np.full((H, W, 3), 255, np.uint8)
    pw = (W - 3 * pad) // 2
    ph = H - 2 * pad
    smax = max(steps.max(), 1)
    lo, hi = math.floor(math.log10(max(ema.min(), 1e-4)) * 2) / 2, math.ceil(
        math.log10(ema.max()) * 2) / 2
    hi = max(hi, lo + 0.5)

    def frame(x0):
        img[pad:pad + ph, x0] = img[pad:pad + ph, x0 + pw] = 0
        img[pad, x0:x0 + pw] = img[pad + ph, x0:x0 + pw + 1] = 0
        for k in range(0, 6):
            xs = x0 + int(pw * k / 5)
            img[pad + ph:pad + ph + 5, xs] = 0
            _text(img, xs - 8, pad + ph + 8, f"{smax * k / 5 / 1000:.1f}k", (0, 0, 0))

    frame(pad)
    v = lo
    while v <= hi + 1e-9:
        y = pad + int(ph * (hi - v) / (hi - lo))
        img[y, pad:pad + pw:3] = 160
        _text(img, 2, y - 5, f"{10 ** v:.2f}" if v < 0 else f"{10 ** v:.1f}", (0, 0, 0), 1)
        v += 0.5
    xs = pad + steps / smax * pw
    ys = pad + (hi - np.log10(np.maximum(ema, 1e-4))) / (hi - lo) * ph
    _line(img, xs, np.clip(ys, pad, pad + ph - 2), (200, 30, 30))
    x0 = 2 * pad + pw
    frame(x0)
    for pct in (0, 25, 50, 75, 90, 100):
        y = pad + int(ph * (100 - pct) / 100)
        img[y, x0:x0 + pw:3] = 160
        _text(img, x0 + pw + 3, y - 5, f"{pct}", (0, 0, 0), 1)
    if val_csv.exists():
        vrows = list(csv.DictReader(open(val_csv)))
        if vrows:
            vs = np.array([int(r["step"]) for r in vrows], float)
            for key, col in (("group_attribute", (40, 75, 215)), ("group_count", (240, 120, 20)),
                             ("group_relation", (30, 150, 55)), ("caption_f1", (135, 55, 185))):
                vals = np.array([json.loads(r["metrics_json"]).get(key, 0.0) for r in vrows])
                _line(img, x0 + vs / smax * pw, pad + (1 - vals) * (ph - 2), col)
    out.write_bytes(scenes.png_bytes(img))


# --------------------------------------------------------------------------


# The issue-7 evaluation sets: fresh in-distribution scenes (split "val" far
# past the indices training validates on, seed + 1) and the held-out
# compositional split. tools/eval/eval_tiny.py uses the same sets.
EVAL_SPLITS = (("val", 100000), ("heldout", 0))


def eval_sets(n_scenes: int, seed: int) -> Dict[str, list]:
    return {split: scene_items(split, n_scenes, seed + 1, 64, first)
            for split, first in EVAL_SPLITS}


def eval_cmd(args) -> int:
    torch.set_num_threads(args.threads)
    model, ck = load_model(Path(args.ckpt))
    tok = Tok()
    res = {"step": ck["step"]}
    sets = eval_sets(args.scenes, args.seed)
    for split, items in sets.items():
        t0 = time.time()
        res[split] = evaluate(model, tok, items)
        print(split, json.dumps(res[split]), f"({time.time() - t0:.0f}s)", flush=True)
    if args.ref_n:
        items = sets["val"][:args.ref_n]
        outs = greedy_batch(model, tok, items, 40)
        agree = 0
        for it, o in zip(items, outs):
            r = model.ref_greedy(torch.tensor(prompt_ids(tok, it[2], model.n_img)),
                                 pixels_of(it[0]), 40, quant_sim=True)
            agree += r == o
        res["ref_quant_sim_agreement"] = agree / len(items)
        print(f"batched (f32) vs reference forward with FP8/FP4 round trips: "
              f"{agree}/{len(items)} greedy outputs identical", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


def pretrain_tower(args) -> int:
    """Stage 3a: a fresh vision tower + aligner (init_tensors, --seed) trained
    alone on the patch supervision, the backbone tensors carried over from
    --init-from untouched. Data: train scenes 10,000,000 + step * batch + i
    (disjoint from the conversation stages' indices). Writes --out/ckpt.pt
    (with the probe) for `train --init-from`; prints the probe's accuracy
    on object patches of 256 val scenes every 100 steps."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    ck = torch.load(args.init_from)
    cfgj = ck["config"]
    fresh = init_tensors(cfgj, args.seed)
    tensors = {k: (fresh[k] if k.startswith(TOWER_PREFIXES) else v)
               for k, v in ck["tensors"].items()}
    model = TinyVLM(cfgj, tensors)
    probe = new_probe(cfgj["hidden_size"], args.seed)
    tower = [v for k, v in model.t.items()
             if k.startswith(TOWER_PREFIXES) and v.requires_grad]
    opt = torch.optim.AdamW([{"params": tower, "weight_decay": args.wd},
                             {"params": list(probe.values()), "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    patch, size = model.vcfg.patch_size, args.image_size
    val = [scenes.generate("val", 5000 + i, args.seed, size) for i in range(256)]
    val_pix = pixel_batch(sc.image for sc in val)
    val_tgt = patch_target_batch((sc.objects for sc in val), size, patch)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, args.warmup) * g.get("lr_scale", 1.0)
        batch = [scenes.generate("train", 10_000_000 + step * args.batch + i, args.seed, size)
                 for i in range(args.batch)]
        loss = dense_loss(probe, model.image_embeds(pixel_batch(sc.image for sc in batch)),
                          patch_target_batch((sc.objects for sc in batch), size, patch))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tower + list(probe.values()), 1.0)
        opt.step()
        if (step + 1) % 100 == 0 or step + 1 == args.steps:
            with torch.no_grad():
                acc = dense_accuracy(probe, model.image_embeds(val_pix), val_tgt)
            print(f"step {step + 1} loss {loss.item():.4f} object-patch accuracy " +
                  " ".join(f"{k} {v:.3f}" for k, v in acc.items()) +
                  f" wall {(time.time() - t0) / 60:.1f} min", flush=True)
    save_ckpt(out / "ckpt.pt", model, None, 0, vars(args),
              {"minutes": 0.0, "tower_minutes": (time.time() - t0) / 60}, probe)
    print(f"saved {out / 'ckpt.pt'}", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", default=str(REPO / "build-train"))
    t.add_argument("--steps", type=int, default=2400, help="schedule length (total)")
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--wd", type=float, default=0.05)
    t.add_argument("--warmup", type=int, default=200)
    t.add_argument("--caption-frac", type=float, default=0.2)
    t.add_argument("--turns", type=int, default=8, help="max questions per conversation")
    t.add_argument("--window", type=int, default=256, help="sliding_window of the new model")
    t.add_argument("--init-from", help="start a new stage from this checkpoint's weights")
    t.add_argument("--init-tower-from", help="a new run whose tower + aligner (and probe) "
                   "come from this checkpoint")
    t.add_argument("--head-dim", type=int, default=32, help="head_dim of a new backbone")
    t.add_argument("--attn-temp", type=float, default=1.0,
                   help="a new stage's attention score scale (sharpen_attention)")
    t.add_argument("--separate-answers", help="comma-separated one-token answers whose "
                   "output rows are re-separated at the start of a new stage (e.g. yes,no)")
    t.add_argument("--dense-weight", type=float, default=0.0,
                   help="weight of the patch supervision of the image embeddings (new runs)")
    t.add_argument("--attn-weight", type=float, default=0.0,
                   help="weight of the attention supervision (attention_targets)")
    t.add_argument("--position-weight", type=float, default=0.0,
                   help="weight of the patch (row, col) supervision (position_loss)")
    t.add_argument("--relation-position-weight", type=float, default=0.0,
                   help="weight of the relation-position supervision of --attn-layer's "
                   "output (relation_position_loss)")
    t.add_argument("--relation-answer-weight", type=float, default=0.0,
                   help="weight of the relation-answer supervision of the yes-minus-no "
                   "logit gap (relation_answer_loss)")
    t.add_argument("--qtype-weight", help="comma-separated qtype=weight: that question "
                   "type's answer tokens and attention rows count this many times")
    t.add_argument("--position-background", type=float, default=1.0,
                   help="position_loss weight of patches without an object centre")
    t.add_argument("--attn-layer", type=int, default=2, help="the layer that finds the object")
    t.add_argument("--text-layer", type=int, default=0,
                   help="the layer that reads the question's description words")
    t.add_argument("--aux-weight", type=float, default=0.1)
    t.add_argument("--bias-rate", type=float, default=1e-3)
    t.add_argument("--image-size", type=int, default=64)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1,
                   help="1: with the 2 cores shared, 2 OpenMP threads ran 5-10x slower")
    t.add_argument("--max-minutes", type=float, default=100.0)
    t.add_argument("--stop-at", type=int, help="stop (and save) at this step")
    t.add_argument("--save-minutes", type=float, default=5.0)
    t.add_argument("--val-every", type=int, default=250)
    t.add_argument("--val-n", type=int, default=200)
    tw = sub.add_parser("pretrain-tower")
    tw.add_argument("--init-from", required=True, help="checkpoint whose backbone is kept")
    tw.add_argument("--out", required=True)
    tw.add_argument("--steps", type=int, default=1500)
    tw.add_argument("--batch", type=int, default=64)
    tw.add_argument("--lr", type=float, default=2e-3)
    tw.add_argument("--wd", type=float, default=0.05)
    tw.add_argument("--warmup", type=int, default=50)
    tw.add_argument("--image-size", type=int, default=64)
    tw.add_argument("--seed", type=int, default=0)
    tw.add_argument("--threads", type=int, default=1)
    e = sub.add_parser("eval")
    e.add_argument("--ckpt", default=str(REPO / "build-train" / "ckpt.pt"))
    e.add_argument("--scenes", type=int, default=1000, help="scenes per split")
    e.add_argument("--ref-n", type=int, default=0, help="items to cross-check with the "
                   "reference cached forward (quant_sim on)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--json")
    x = sub.add_parser("export")
    x.add_argument("--ckpt", default=str(REPO / "build-train" / "ckpt.pt"))
    x.add_argument("--model-dir", default=str(REPO / "models" / "tessera-tiny"))
    x.add_argument("--check", action="store_true")
    x.add_argument("--log-dirs", help="comma-separated stage directories whose train/val "
                   "logs are joined into the model directory's (default: the ckpt's)")
    args = ap.parse_args()
    return {"train": train, "pretrain-tower": pretrain_tower, "eval": eval_cmd,
            "export": export}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
