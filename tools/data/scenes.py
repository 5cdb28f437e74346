#!/usr/bin/python3
"""Synthetic scenes with captions and question/answer pairs for the tiny
vision-language model (issue 7; design in MULTIMODAL.md §7).

    /usr/bin/python3 tools/data/scenes.py --split train --count 8 --out DIR \
        [--seed 0] [--start 0] [--image-size 64]

writes DIR/<split>_<index>.png and DIR/<split>.jsonl (one JSON object per
scene: objects, captions, qa).

A scene is a pure function of (split, index, seed, image_size): the random
stream comes from Python's `random.Random` seeded with a SHA-256 of those
arguments (stable across Python versions), background noise from numpy's
PCG64 with the same seed. Nothing global is consulted, so data can be
generated on the fly, in any order, by any number of workers (~2 ms per
64×64 scene on one core, ~8 ms at 128×128; ~0.4 ms without rendering).
image_size only scales positions: objects and text do not depend on it.

Scene content
- 1-4 objects, each a (size, colour, shape) from SIZES × COLOURS × SHAPES,
  in distinct cells of a 3×3 grid with jitter. Every object fits inside its
  bounding circle (radius `r`), and jitter keeps that circle inside its cell,
  so objects never overlap and objects in different columns (rows) are at
  least ~0.6 cell apart horizontally (vertically): left/right/above/below
  are defined by grid column/row and are unambiguous in the pixels.
- Light backgrounds (BACKGROUNDS), half of them with faint Gaussian noise.
- Rendered with numpy at 4×4 supersampling (anti-aliased edges); the pixel
  at an object's centre has exactly the object's colour.

Splits
- "train", "val", "test": no object has a (colour, shape) in HELDOUT, and no
  question mentions one.
- "heldout": the compositional test. The first object always has a HELDOUT
  combination; each question's subject (the object asked about, the first
  object of a yes/no relation, the reference object of "what is left of the
  X") has one, and "no" existence questions name an absent HELDOUT pair.

Text (all lowercase except questions, which start with a capital and end in
"?"). `captions[0]` is the canonical caption: objects in reading order,
identical ones grouped ("a small red circle, two large blue squares and a
small green star"); `caption_objects()` parses it back. Other captions are
alternative phrasings. `qa` holds (qtype, question, answer) with qtype in
QTYPES; answers are a single word ("red", "circle", "small", "yes", "three")
except relation_what, which answers "a small red circle".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import struct
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

# ---------------------------------------------------------------- vocabulary

SHAPES: Tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles",
          "star": "stars", "cross": "crosses"}
# Saturated colours, each far from every background and from each other.
COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (30, 150, 55),
    "blue": (40, 75, 215),
    "yellow": (235, 190, 15),
    "purple": (135, 55, 185),
    "orange": (240, 120, 20),
    "brown": (120, 75, 35),
    "black": (25, 25, 25),
}
# Bounding radius as a fraction of the grid cell side.
SIZES: Dict[str, float] = {"small": 0.24, "large": 0.40}
BACKGROUNDS: Dict[str, Tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "gray": (224, 224, 224),
    "cream": (246, 239, 218),
    "sky": (221, 233, 246),
    "mint": (225, 242, 228),
}
# (colour, shape) pairs never drawn or mentioned outside the "heldout" split.
# Each colour appears at most once and each shape at most twice, so every
# colour and every shape is still seen in training with other partners.
HELDOUT = frozenset({("red", "triangle"), ("green", "star"), ("blue", "cross"),
                     ("yellow", "circle"), ("purple", "square"), ("black", "triangle")})
SPLITS = ("train", "val", "test", "heldout")
GRID = 3
NUMBERS = ("zero", "one", "two", "three", "four")
QTYPES = ("colour", "shape", "size", "exist", "count", "relation", "relation_what")
# How issue 7 groups question types for its accuracy thresholds.
QTYPE_GROUP = {"colour": "attribute", "shape": "attribute", "size": "attribute",
               "exist": "attribute", "count": "count", "relation": "relation",
               "relation_what": "relation"}
# User prompts that ask for a caption (the answer is captions[0] or another
# caption); shared by training and the tokenizer corpus.
CAPTION_PROMPTS = ("Describe the image.", "What is in the image?", "What do you see?",
                   "Describe this picture.", "Caption this image.", "What is shown here?")
POSITIONS = (("at the top left", "at the top", "at the top right"),
             ("on the left", "in the center", "on the right"),
             ("at the bottom left", "at the bottom", "at the bottom right"))
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Object:
    shape: str
    colour: str
    size: str
    row: int        # grid row, 0 = top
    col: int        # grid column, 0 = left
    cx: float       # centre x in pixels (pixel p covers [p, p+1))
    cy: float       # centre y in pixels
    r: float        # bounding radius in pixels

    @property
    def heldout(self) -> bool:
        return (self.colour, self.shape) in HELDOUT

    def phrase(self, size: bool = True) -> str:
        """"small red circle" (or "red circle" without size)."""
        return f"{self.size} {self.colour} {self.shape}" if size else f"{self.colour} {self.shape}"

    def to_json(self) -> dict:
        return {"shape": self.shape, "colour": self.colour, "size": self.size, "row": self.row,
                "col": self.col, "cx": round(self.cx, 3), "cy": round(self.cy, 3),
                "r": round(self.r, 3)}


@dataclass
class Scene:
    split: str
    index: int
    seed: int
    background: str
    objects: List[Object]
    image: Optional[np.ndarray]           # (H, W, 3) uint8; None if not rendered
    captions: List[str] = field(default_factory=list)
    qa: List[Tuple[str, str, str]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"split": self.split, "index": self.index, "seed": self.seed,
                "image_size": None if self.image is None else int(self.image.shape[0]),
                "background": self.background,
                "objects": [o.to_json() for o in self.objects], "captions": self.captions,
                "qa": [list(t) for t in self.qa]}


# ---------------------------------------------------------------- relations

def left_of(a: Object, b: Object) -> bool:
    return a.col < b.col


def above(a: Object, b: Object) -> bool:
    return a.row < b.row


# relation word -> predicate(a, b) meaning "a <word> b"
RELATIONS = {
    "left of": left_of,
    "right of": lambda a, b: left_of(b, a),
    "above": above,
    "below": lambda a, b: above(b, a),
}
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def relation_word(question: str) -> str:
    """The RELATIONS word a relation or relation_what question asks about."""
    return next(w for w in RELATIONS if f" {w} " in f" {question} ")

# ---------------------------------------------------------------- sampling


def scene_seed(split: str, index: int, seed: int) -> int:
    digest = hashlib.sha256(f"tessera-scenes/{split}/{index}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _sample_objects(rng: random.Random, split: str, image_size: int) -> List[Object]:
    n = rng.randint(1, 4)
    cells = rng.sample(range(GRID * GRID), n)
    cell = image_size / GRID
    drawn: List[Tuple[str, str]] = []
    objs: List[Object] = []
    for i, c in enumerate(cells):
        if split == "heldout" and i == 0:
            colour, shape = rng.choice(sorted(HELDOUT))
        else:
            while True:
                # Repeat an earlier shape or colour now and then, so counts
                # of 2-4 of a kind and same-shape/other-colour scenes occur.
                shape = rng.choice(drawn)[1] if drawn and rng.random() < 0.35 else rng.choice(SHAPES)
                colour = (rng.choice(drawn)[0] if drawn and rng.random() < 0.35
                          else rng.choice(sorted(COLOURS)))
                if split == "heldout" or (colour, shape) not in HELDOUT:
                    break
        drawn.append((colour, shape))
        size = rng.choice(sorted(SIZES))
        r = SIZES[size] * cell
        jmax = min(cell / 2 - r - 1.0, 0.2 * cell)
        row, col = divmod(c, GRID)
        cx = (col + 0.5) * cell + rng.uniform(-jmax, jmax)
        cy = (row + 0.5) * cell + rng.uniform(-jmax, jmax)
        objs.append(Object(shape, colour, size, row, col, cx, cy, r))
    return objs


# ---------------------------------------------------------------- rendering

def _polygon(px: np.ndarray, py: np.ndarray, vx: Sequence[float], vy: Sequence[float]) -> np.ndarray:
    """Even-odd point-in-polygon test for every (px, py)."""
    px, py = np.broadcast_arrays(px, py)
    inside = np.zeros(px.shape, bool)
    n = len(vx)
    for i in range(n):
        x0, y0, x1, y1 = vx[i], vy[i], vx[(i + 1) % n], vy[(i + 1) % n]
        if y0 == y1:
            continue
        crosses = (y0 > py) != (y1 > py)
        xcross = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (px < xcross)
    return inside


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """True where offset (dx, dy) from the centre (y down) lies inside the
    shape; every shape lies inside the circle of radius r."""
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        s = 0.7 * r
        return (np.abs(dx) <= s) & (np.abs(dy) <= s)
    if shape == "triangle":  # equilateral, pointing up, centroid at the centre
        a = np.radians([-90.0, 30.0, 150.0])
        return _polygon(dx, dy, r * np.cos(a), r * np.sin(a))
    if shape == "star":  # five points, inner radius 0.45 r
        a = np.radians(-90.0 + 36.0 * np.arange(10))
        rad = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        return _polygon(dx, dy, rad * np.cos(a), rad * np.sin(a))
    if shape == "cross":  # plus sign, arms 0.64 r wide
        arm, w = 0.95 * r, 0.32 * r
        ax, ay = np.abs(dx), np.abs(dy)
        return ((ax <= arm) & (ay <= w)) | ((ax <= w) & (ay <= arm))
    raise ValueError(f"unknown shape {shape!r}")


def render(objects: Sequence[Object], background: Tuple[int, int, int], image_size: int,
           noise_seed: Optional[int]) -> np.ndarray:
    """(image_size, image_size, 3) uint8. Objects are flat colours composited
    with their supersampled coverage; noise (σ 2.5 levels) only on the
    background."""
    img = np.empty((image_size, image_size, 3), np.float32)
    img[:] = background
    if noise_seed is not None:
        gen = np.random.Generator(np.random.PCG64(noise_seed))
        img += 2.5 * gen.standard_normal((image_size, image_size, 1), dtype=np.float32)
    ss = SUPERSAMPLE
    for o in objects:
        x0, x1 = max(int(o.cx - o.r) - 1, 0), min(int(o.cx + o.r) + 2, image_size)
        y0, y1 = max(int(o.cy - o.r) - 1, 0), min(int(o.cy + o.r) + 2, image_size)
        xs = (np.arange(x0 * ss, x1 * ss) + 0.5) / ss - o.cx
        ys = (np.arange(y0 * ss, y1 * ss) + 0.5) / ss - o.cy
        mask = shape_mask(o.shape, xs[None, :], ys[:, None], o.r)
        cov = mask.reshape(y1 - y0, ss, x1 - x0, ss).mean(axis=(1, 3), dtype=np.float32)[..., None]
        patch = img[y0:y1, x0:x1]
        img[y0:y1, x0:x1] = patch * (1 - cov) + np.asarray(COLOURS[o.colour], np.float32) * cov
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- captions

def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _np(count: int, phrase_words: str, shape: str) -> str:
    """Noun phrase for `count` objects described by "... shape"."""
    if count == 1:
        return f"{_article(phrase_words)} {phrase_words}"
    return f"{NUMBERS[count]} {phrase_words[: -len(shape)]}{PLURAL[shape]}"


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _grouped(objs: Sequence[Object], size: bool) -> List[str]:
    """Noun phrases in reading order, identical descriptions grouped."""
    order = sorted(objs, key=lambda o: (o.row, o.col))
    counts = Counter(o.phrase(size) for o in order)
    seen, out = set(), []
    for o in order:
        p = o.phrase(size)
        if p not in seen:
            seen.add(p)
            out.append(_np(counts[p], p, o.shape))
    return out


def canonical_caption(objs: Sequence[Object]) -> str:
    return _join(_grouped(objs, size=True))


def captions(objs: Sequence[Object], rng: random.Random) -> List[str]:
    out = [canonical_caption(objs)]
    n = len(objs)
    if n == 1:
        out.append(f"there is {_np(1, objs[0].phrase(), objs[0].shape)}")
    else:
        out.append(f"there are {NUMBERS[n]} objects: {_join(_grouped(objs, size=True))}")
    out.append(_join(_grouped(objs, size=False)))
    order = sorted(objs, key=lambda o: (o.row, o.col))
    if n == 2:
        a, b = order if rng.random() < 0.5 else order[::-1]
        rels = [w for w, f in RELATIONS.items() if f(a, b)]
        w = rng.choice(rels)
        out.append(f"{_np(1, a.phrase(), a.shape)} {w} {_np(1, b.phrase(), b.shape)}")
    else:
        out.append(_join([f"{_np(1, o.phrase(), o.shape)} {POSITIONS[o.row][o.col]}" for o in order]))
    return list(dict.fromkeys(out))


_CAPTION_ITEM = re.compile(
    r"\b(a|an|one|two|three|four) (?:(%s) )?(?:(%s) )?(%s)\b" % (
        "|".join(SIZES), "|".join(COLOURS),
        "|".join(sorted(set(SHAPES) | set(PLURAL.values()), key=len, reverse=True))))
_SINGULAR = {p: s for s, p in PLURAL.items()}


def caption_objects(text: str) -> Counter:
    """Multiset of (size, colour, shape) named in a caption (None for an
    attribute left out), for caption attribute F1 in evaluation."""
    out: Counter = Counter()
    for m in _CAPTION_ITEM.finditer(text):
        det, size, colour, shape = m.groups()
        count = 1 if det in ("a", "an") else NUMBERS.index(det)
        out[(size, colour, _SINGULAR.get(shape, shape))] += count
    return out


# ---------------------------------------------------------------- questions

def _refs(o: Object, objs: Sequence[Object], omit: str) -> List[str]:
    """Descriptions "X" (for "the X") that pick out exactly o in the scene,
    not using attribute `omit` ("colour", "shape", "size" or "")."""
    forms = []
    for attrs in (("shape",), ("colour", "shape"), ("size", "shape"), ("size", "colour", "shape")):
        if omit in attrs:
            continue
        key = lambda x: tuple(getattr(x, a) for a in attrs)  # noqa: E731
        if sum(key(x) == key(o) for x in objs) == 1:
            forms.append(" ".join(getattr(o, a) for a in attrs))
    return forms


def _pick_target(objs: Sequence[Object], rng: random.Random, heldout_only: bool) -> List[Object]:
    """Objects in the order to try as a question's subject: in the held-out
    split only objects with a held-out combination (object 0 always is)."""
    order = [o for o in objs if o.heldout or not heldout_only]
    rng.shuffle(order)
    return order


def _q_colour(objs, rng, hf):
    for o in _pick_target(objs, rng, hf):
        refs = _refs(o, objs, "colour")
        if refs:
            ref = rng.choice(refs)
            q = rng.choice(["What color is the {}?", "What is the color of the {}?",
                            "What colour is the {}?", "Which color does the {} have?"])
            return q.format(ref), o.colour
    return None


def _q_shape(objs, rng, hf):
    for o in _pick_target(objs, rng, hf):
        # _refs always names the shape, so refer by colour ("red object").
        refs = []
        for attrs in (("colour",), ("size", "colour")):
            key = lambda x: tuple(getattr(x, a) for a in attrs)  # noqa: E731
            if sum(key(x) == key(o) for x in objs) == 1:
                refs.append(" ".join(getattr(o, a) for a in attrs) + " object")
        if refs:
            ref = rng.choice(refs)
            q = rng.choice(["What shape is the {}?", "What is the shape of the {}?",
                            "Which shape is the {}?"])
            return q.format(ref), o.shape
    return None


def _q_size(objs, rng, hf):
    for o in _pick_target(objs, rng, hf):
        refs = _refs(o, objs, "size")
        if refs:
            ref = rng.choice(refs)
            q = rng.choice(["Is the {} small or large?", "What size is the {}?",
                            "Is the {} large or small?"])
            return q.format(ref), o.size
    return None


def _allowed(split: str, colour: Optional[str], shape: Optional[str]) -> bool:
    return split == "heldout" or colour is None or shape is None or (colour, shape) not in HELDOUT


def _q_exist(objs, rng, hf, split):
    if rng.random() < 0.5:  # yes
        o = _pick_target(objs, rng, hf)[0]
        form = rng.choice([("shape",), ("colour", "shape"), ("size", "colour", "shape")])
    else:  # no: a description that matches nothing in the scene
        for _ in range(100):
            if hf:  # the held-out split asks about absent held-out pairs
                colour, shape = rng.choice(sorted(HELDOUT))
                form = rng.choice([("colour", "shape"), ("size", "colour", "shape")])
            else:
                colour, shape = rng.choice(sorted(COLOURS)), rng.choice(SHAPES)
                form = rng.choice([("shape",), ("colour", "shape"), ("colour", "shape"),
                                   ("size", "colour", "shape")])
            cand = Object(shape, colour, rng.choice(sorted(SIZES)), 0, 0, 0.0, 0.0, 0.0)
            key = lambda x: tuple(getattr(x, a) for a in form)  # noqa: E731
            if (_allowed(split, cand.colour if "colour" in form else None, cand.shape)
                    and not any(key(x) == key(cand) for x in objs)):
                o = cand
                break
        else:
            return None
    desc = " ".join(getattr(o, a) for a in form)
    if rng.random() < 0.5:
        q = f"Is there {_article(desc)} {desc}?"
    else:
        q = f"Are there any {desc[: -len(o.shape)]}{PLURAL[o.shape]}?"
    key = lambda x: tuple(getattr(x, a) for a in form)  # noqa: E731
    return q, "yes" if any(key(x) == key(o) for x in objs) else "no"


def _q_count(objs, rng, hf):
    o = _pick_target(objs, rng, hf)[0]
    shapes = rng.choice(["shapes", "objects"])
    cands = [  # (question, count); every count is at least one
        (rng.choice([f"How many {shapes} are there?", "How many objects are in the image?"]),
         len(objs)),
        (rng.choice(["How many {} are there?", "How many {} are in the image?"]).format(
            PLURAL[o.shape]), sum(x.shape == o.shape for x in objs)),
        (f"How many {o.colour} {shapes} are there?", sum(x.colour == o.colour for x in objs)),
        (f"How many {o.colour} {PLURAL[o.shape]} are there?",
         sum(x.colour == o.colour and x.shape == o.shape for x in objs)),
    ]
    # Most attribute counts are one; prefer larger counts half of the time so
    # answers two to four are not rare.
    many = [c for c in cands if c[1] > 1]
    q, n = rng.choice(many if many and rng.random() < 0.5 else cands)
    return q, NUMBERS[n]


def _q_relation(objs, rng, hf):
    pairs = [(a, b) for a in _pick_target(objs, rng, hf) for b in objs if a is not b]
    for a, b in pairs:
        ra, rb = _refs(a, objs, ""), _refs(b, objs, "")
        words = [w for w, f in RELATIONS.items() if f(a, b)]
        if not (ra and rb and words):
            continue
        w = rng.choice(words)
        if rng.random() < 0.5:
            w = OPPOSITE[w]  # the pair is in different columns/rows, so this is false
        tmpl = "Is the {a} {w} the {b}?"
        if w.endswith(" of") and rng.random() < 0.3:
            tmpl = "Is the {a} to the {w} the {b}?"
        q = tmpl.format(a=rng.choice(ra), w=w, b=rng.choice(rb))
        return q, "yes" if RELATIONS[w](a, b) else "no"
    return None


def _q_relation_what(objs, rng, hf):
    for b in _pick_target(objs, rng, hf):
        rb = _refs(b, objs, "")
        if not rb:
            continue
        words = list(RELATIONS)
        rng.shuffle(words)
        for w in words:
            hits = [a for a in objs if a is not b and RELATIONS[w](a, b)]
            if len(hits) != 1:
                continue
            a = hits[0]
            tmpl = rng.choice(["What is {w} the {b}?", "Which object is {w} the {b}?"])
            if w.endswith(" of") and rng.random() < 0.3:
                tmpl = "What is to the {w} the {b}?"
            return tmpl.format(w=w, b=rng.choice(rb)), _np(1, a.phrase(), a.shape)
    return None


def questions(objs: Sequence[Object], rng: random.Random, split: str) -> List[Tuple[str, str, str]]:
    """At most one question per qtype (count twice), in QTYPES order."""
    hf = split == "heldout"
    makers = [("colour", lambda: _q_colour(objs, rng, hf)),
              ("shape", lambda: _q_shape(objs, rng, hf)),
              ("size", lambda: _q_size(objs, rng, hf)),
              ("exist", lambda: _q_exist(objs, rng, hf, split)),
              ("count", lambda: _q_count(objs, rng, hf)),
              ("count", lambda: _q_count(objs, rng, hf)),
              ("relation", lambda: _q_relation(objs, rng, hf)),
              ("relation_what", lambda: _q_relation_what(objs, rng, hf))]
    out: List[Tuple[str, str, str]] = []
    for qtype, make in makers:
        got = make()
        if got is not None and (qtype, got[0], got[1]) not in out:
            out.append((qtype, got[0], got[1]))
    return out


# ---------------------------------------------------------------- API

_GENERIC = ("object", "objects", "shapes")


def description_runs(words: Sequence[str]) -> List[Tuple[Dict[str, str], List[int]]]:
    """The object descriptions in a question or answer split into words, in
    order, each as ({attribute: value}, [word indices]): "Is the small red
    circle left of the star?" -> [({size: small, colour: red, shape:
    circle}, [2, 3, 4]), ({shape: star}, [8])]. A description is a run of
    size, colour and shape words (plural shapes and "object"/"shapes"
    included); "small or large" asks for a size and names none."""
    words = [w.lower().strip("?,") for w in words]
    out: List[Tuple[Dict[str, str], List[int]]] = []
    run: Optional[Tuple[Dict[str, str], List[int]]] = None
    for i, w in enumerate(words):
        if w in SIZES and "or" in words[max(i - 1, 0):i + 2]:
            w = ""  # "small or large": the question, not a description
        shape = _SINGULAR.get(w, w)
        attr = ("size" if w in SIZES else "colour" if w in COLOURS
                else "shape" if shape in SHAPES else "any" if w in _GENERIC else None)
        if attr is None:
            run = None
            continue
        if run is None:
            run = ({}, [])
            out.append(run)
        if attr != "any":
            run[0][attr] = shape if attr == "shape" else w
        run[1].append(i)
    return out


def descriptions(text: str) -> List[Dict[str, str]]:
    """description_runs of a text, without the word indices."""
    return [d for d, _ in description_runs(text.split())]


def matching(desc: Dict[str, str], objs: Sequence[Object]) -> List[int]:
    """Indices of the objects that fit a description from descriptions()."""
    return [i for i, o in enumerate(objs) if all(getattr(o, a) == v for a, v in desc.items())]


def referents(qtype: str, question: str, answer: str, objs: Sequence[Object]
              ) -> List[List[int]]:
    """The objects a question is about, as index lists: [subject] for the
    attribute, existence and count questions (empty when a "no" existence
    question names nothing present), [a, b] for "is the a left of the b",
    and [answer object, b] for "what is left of the b". Training uses them
    to supervise where the answer position attends."""
    descs = descriptions(question)
    if qtype == "relation":
        return [matching(descs[0], objs), matching(descs[1], objs)]
    if qtype == "relation_what":
        b = matching(descs[-1], objs)
        rel = RELATIONS[relation_word(question)]
        return [[a for a in matching(descriptions(answer)[0], objs)
                 if any(rel(objs[a], objs[j]) for j in b)], b]
    return [matching(descs[0], objs)]


def generate(split: str, index: int, seed: int = 0, image_size: int = 64,
             render_image: bool = True) -> Scene:
    """The scene number `index` of `split` for `seed`; a pure function of its
    arguments. image_size is the square side in pixels (64, 96, 128, ...).
    render_image=False skips drawing (image None) for text-only uses; the
    objects and text are the same either way."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if image_size < 48:
        raise ValueError("image_size must be at least 48")
    s = scene_seed(split, index, seed)
    rng = random.Random(s)
    objs = _sample_objects(rng, split, image_size)
    bg = rng.choice(sorted(BACKGROUNDS))
    noisy = rng.random() < 0.5
    image = render(objs, BACKGROUNDS[bg], image_size, s if noisy else None) if render_image else None
    return Scene(split, index, seed, bg, objs, image, captions(objs, rng), questions(objs, rng, split))


# ---------------------------------------------------------------- PNG I/O

def png_bytes(image: np.ndarray) -> bytes:
    """8-bit RGB PNG, filter 0 on every row, zlib level 9 (deterministic)."""
    h, w, c = image.shape
    if c != 3 or image.dtype != np.uint8:
        raise ValueError("expected (H, W, 3) uint8")
    raw = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_png(path: Path, image: np.ndarray) -> None:
    Path(path).write_bytes(png_bytes(image))


# ---------------------------------------------------------------- CLI

def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", choices=SPLITS, default="train")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--start", type=int, default=0, help="first scene index")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(args.out / f"{args.split}.jsonl", "w", encoding="utf-8") as f:
        for i in range(args.start, args.start + args.count):
            sc = generate(args.split, i, args.seed, args.image_size)
            name = f"{args.split}_{i:06d}.png"
            write_png(args.out / name, sc.image)
            f.write(json.dumps({"file": name, **sc.to_json()}, ensure_ascii=False) + "\n")
    dt = time.perf_counter() - t0
    print(f"wrote {args.count} {args.split} scenes to {args.out} in {dt:.2f} s "
          f"({1e3 * dt / max(args.count, 1):.2f} ms/scene)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
