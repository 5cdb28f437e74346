"""Tests of the tiny model's data and tokenizer: tools/data/scenes.py (scene
generator) and models/tessera-tiny/tokenizer.json (from
tools/train/train_tokenizer.py).

Run by ctest with the project venv Python (PyPI `tokenizers`, Jinja2; sees
Debian's numpy), or directly: .venv/bin/python tests/test_data_py.py.
Answers are checked by an independent solver here that parses each question
and recomputes the answer from the scene's objects. Prints the measured
figures; exits non-zero on any failure.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(os.environ.get("TSR_SOURCE_DIR", Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(ROOT / "tools" / "data"))
import scenes  # noqa: E402

MODEL = ROOT / "models" / "tessera-tiny"
N_SCENES = 2000
SINGULAR = {p: s for s, p in scenes.PLURAL.items()}


N_RENDERED = 500
_TEXT = {}


def text_scenes(split, n=N_SCENES):
    """Scenes 0..n-1 of split (seed 0) without images, cached across tests."""
    if len(_TEXT.get(split, ())) < n:
        _TEXT[split] = [scenes.generate(split, i, 0, render_image=False) for i in range(n)]
    return _TEXT[split][:n]


# ------------------------------------------------------------- the solver

def matches(o, words):
    """o fits a description like ["small", "red", "circle"] or ["red", "object"]."""
    for w in words:
        w = SINGULAR.get(w, w)
        if w in ("object", "objects", "shape", "shapes"):
            continue
        if w not in (o.size, o.colour, o.shape):
            return False
    return True


def the(objs, desc):
    hits = [o for o in objs if matches(o, desc.split())]
    if len(hits) != 1:
        raise AssertionError(f"'the {desc}' names {len(hits)} objects")
    return hits[0]


def rel(a, b, word):
    return {"left of": a.col < b.col, "right of": a.col > b.col,
            "above": a.row < b.row, "below": a.row > b.row}[word]


REL = r"(?:to the )?(left of|right of|above|below)"


def solve(qtype, q, objs):
    """The answer to question q about objs, from the text alone."""
    if qtype == "colour":
        m = re.fullmatch(r"(?:What colou?r is|What is the color of|Which color does) the (.+?)"
                         r"(?: have)?\?", q)
        return the(objs, m[1]).colour
    if qtype == "shape":
        m = re.fullmatch(r"(?:What shape is|What is the shape of|Which shape is) the (.+ object)\?", q)
        return the(objs, m[1]).shape
    if qtype == "size":
        m = (re.fullmatch(r"Is the (.+) (?:small or large|large or small)\?", q)
             or re.fullmatch(r"What size is the (.+)\?", q))
        return the(objs, m[1]).size
    if qtype == "exist":
        m = re.fullmatch(r"Is there an? (.+)\?", q) or re.fullmatch(r"Are there any (.+)\?", q)
        return "yes" if any(matches(o, m[1].split()) for o in objs) else "no"
    if qtype == "count":
        m = re.fullmatch(r"How many (.+) are (?:there|in the image)\?", q)
        return scenes.NUMBERS[sum(matches(o, m[1].split()) for o in objs)]
    if qtype == "relation":
        m = re.fullmatch(r"Is the (.+?) " + REL + r" the (.+)\?", q)
        return "yes" if rel(the(objs, m[1]), the(objs, m[3]), m[2]) else "no"
    if qtype == "relation_what":
        m = re.fullmatch(r"(?:What is|Which object is) " + REL + r" the (.+)\?", q)
        b = the(objs, m[2])
        hits = [a for a in objs if a is not b and rel(a, b, m[1])]
        if len(hits) != 1:
            raise AssertionError(f"{q} has {len(hits)} answers")
        a = hits[0]
        return ("an " if a.size[0] in "aeiou" else "a ") + a.phrase()
    raise AssertionError(f"unknown qtype {qtype}")


# ------------------------------------------------------------- scenes

class TestScenes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t0 = time.perf_counter()
        cls.rendered = [scenes.generate("train", i, 0) for i in range(N_RENDERED)]
        dt = time.perf_counter() - t0
        print(f"\ngeneration: {1e3 * dt / N_RENDERED:.2f} ms per 64x64 scene with text")
        cls.train = text_scenes("train")

    def test_deterministic_and_pure(self):
        for split in scenes.SPLITS:
            for i in (0, 7, 1234):
                a = scenes.generate(split, i, 3)
                b = scenes.generate(split, i, 3)
                self.assertEqual(a.image.tobytes(), b.image.tobytes())
                self.assertEqual(scenes.png_bytes(a.image), scenes.png_bytes(b.image))
                self.assertEqual(json.dumps(a.to_json()), json.dumps(b.to_json()))
                t = scenes.generate(split, i, 3, render_image=False)
                self.assertEqual(t.captions, a.captions)
                self.assertEqual(t.qa, a.qa)
        # Interleaving other calls changes nothing (no global state).
        x = scenes.generate("train", 5, 0)
        self.assertEqual(x.image.tobytes(), self.rendered[5].image.tobytes())
        self.assertEqual(x.qa, self.train[5].qa)
        # Different index, seed or split give different scenes.
        imgs = {self.rendered[0].image.tobytes(), scenes.generate("train", 0, 1).image.tobytes(),
                scenes.generate("val", 0, 0).image.tobytes(), self.rendered[1].image.tobytes()}
        self.assertEqual(len(imgs), 4)

    def test_image_sizes(self):
        for size in (64, 96, 128):
            sc = scenes.generate("test", 11, 0, image_size=size)
            self.assertEqual(sc.image.shape, (size, size, 3))
            self.assertEqual(sc.image.dtype, np.uint8)
            self.check_pixels(sc)
            self.assertEqual(sc.qa, scenes.generate("test", 11, 0).qa)

    def test_heldout_never_in_train(self):
        pair = re.compile(r"\b(%s) (%s)" % ("|".join(scenes.COLOURS),
                                             "|".join(list(scenes.SHAPES) + list(scenes.PLURAL.values()))))
        for split in ("train", "val", "test"):
            scs = self.train if split == "train" else text_scenes(split)
            for sc in scs:
                for o in sc.objects:
                    self.assertNotIn((o.colour, o.shape), scenes.HELDOUT, (split, sc.index))
                for text in sc.captions + [q for _, q, _ in sc.qa] + [a for _, _, a in sc.qa]:
                    for m in pair.finditer(text):
                        self.assertNotIn((m[1], SINGULAR.get(m[2], m[2])), scenes.HELDOUT, text)
        held = text_scenes("heldout", 500)
        self.assertTrue(all(sc.objects[0].heldout for sc in held))
        seen = Counter((sc.objects[0].colour, sc.objects[0].shape) for sc in held)
        self.assertEqual(set(seen), set(scenes.HELDOUT))
        # Single-object questions in the held-out split are about a held-out object.
        n_about = n_single = 0
        for sc in held:
            for qtype, q, _ in sc.qa:
                if qtype in ("colour", "shape", "size"):
                    n_single += 1
                    desc = re.fullmatch(r".*the (.+?)(?: have| small or large| large or small)?\?", q)[1]
                    n_about += the(sc.objects, desc).heldout
        self.assertEqual(n_about, n_single)
        # Every colour and every shape still appears in training.
        c = Counter((o.colour, o.shape) for sc in self.train for o in sc.objects)
        self.assertEqual(len(c), len(scenes.COLOURS) * len(scenes.SHAPES) - len(scenes.HELDOUT))

    def test_answers_follow_from_objects(self):
        n = Counter()
        for sc in self.train + text_scenes("heldout", 500):
            for qtype, q, a in sc.qa:
                self.assertIn(qtype, scenes.QTYPES)
                self.assertEqual(solve(qtype, q, sc.objects), a, (sc.split, sc.index, q))
                n[qtype] += 1
        print("questions checked per type:", dict(n))

    def test_referents_name_the_objects_asked_about(self):
        """scenes.referents (the targets of training's attention supervision)
        against the answers: the subject of an attribute question has the
        answered attribute, counts are the answers, a "no" names nothing."""
        n = 0
        for sc in self.train + text_scenes("heldout", 500):
            objs = sc.objects
            for qtype, q, a in sc.qa:
                refs = scenes.referents(qtype, q, a, objs)
                where = (sc.split, sc.index, q, refs)
                if qtype in ("colour", "shape", "size"):
                    self.assertEqual(len(refs), 1, where)
                    self.assertEqual(len(refs[0]), 1, where)
                    self.assertEqual(getattr(objs[refs[0][0]], qtype), a, where)
                elif qtype == "exist":
                    self.assertEqual(bool(refs[0]), a == "yes", where)
                elif qtype == "count":
                    self.assertEqual(scenes.NUMBERS[len(refs[0])], a, where)
                else:  # relation, relation_what: one object each side
                    self.assertEqual([len(r) for r in refs], [1, 1], where)
                    first, second = objs[refs[0][0]], objs[refs[1][0]]
                    word = re.search(REL, q)[1]
                    if qtype == "relation":
                        self.assertEqual(rel(first, second, word), a == "yes", where)
                    else:
                        self.assertTrue(rel(first, second, word), where)
                        self.assertTrue(a.endswith(first.phrase()), where)
                n += 1
        self.assertGreater(n, 15000)
        self.assertEqual(scenes.descriptions("Is the red circle small or large?"),
                         [{"colour": "red", "shape": "circle"}])
        self.assertEqual(scenes.descriptions("How many shapes are there?"), [{}])

    def test_captions_match_objects(self):
        for sc in self.train:
            full = Counter((o.size, o.colour, o.shape) for o in sc.objects)
            self.assertEqual(sc.captions[0], scenes.canonical_caption(sc.objects))
            self.assertEqual(scenes.caption_objects(sc.captions[0]), full, sc.captions[0])
            self.assertEqual(scenes.caption_objects(sc.captions[1]), full, sc.captions[1])
            no_size = Counter((None, o.colour, o.shape) for o in sc.objects)
            self.assertEqual(scenes.caption_objects(sc.captions[2]), no_size, sc.captions[2])
            # The relation/position phrasing names every object once.
            self.assertEqual(sum(scenes.caption_objects(sc.captions[-1]).values()),
                             len(sc.objects), sc.captions[-1])
            if len(sc.objects) == 2:
                m = re.fullmatch(r"an? (\w+ \w+ \w+) (left of|right of|above|below) an? (\w+ \w+ \w+)",
                                 sc.captions[-1])
                a, b = sc.objects
                self.assertTrue(any(rel(x, y, m[2]) for x, y in ((a, b), (b, a))
                                    if (x.phrase(), y.phrase()) == (m[1], m[3])), sc.captions[-1])

    def test_layout_non_overlapping_and_unambiguous(self):
        min_gap = min_col_sep = float("inf")
        for sc in self.train:
            size = 64
            self.assertTrue(1 <= len(sc.objects) <= 4)
            self.assertEqual(len({(o.row, o.col) for o in sc.objects}), len(sc.objects))
            for o in sc.objects:
                self.assertTrue(o.r <= o.cx <= size - o.r and o.r <= o.cy <= size - o.r)
            for i, a in enumerate(sc.objects):
                for b in sc.objects[i + 1:]:
                    d = np.hypot(a.cx - b.cx, a.cy - b.cy)
                    min_gap = min(min_gap, d - a.r - b.r)
                    if a.col != b.col:
                        self.assertEqual(a.col < b.col, a.cx < b.cx)
                        min_col_sep = min(min_col_sep, abs(a.cx - b.cx))
                    if a.row != b.row:
                        self.assertEqual(a.row < b.row, a.cy < b.cy)
        print(f"min gap between objects {min_gap:.2f} px, min centre distance across "
              f"columns {min_col_sep:.2f} px (64 px images)")
        self.assertGreater(min_gap, 1.0)
        self.assertGreater(min_col_sep, 10.0)

    def check_pixels(self, sc):
        bg = np.asarray(scenes.BACKGROUNDS[sc.background], float)
        for o in sc.objects:
            col = np.asarray(scenes.COLOURS[o.colour])
            # The centre pixel is fully covered: exactly the object's colour.
            np.testing.assert_array_equal(sc.image[int(o.cy), int(o.cx)], col)
            # Pixels nearer the object colour than the background, within
            # the bounding circle, give the shape's area.
            yy, xx = np.mgrid[:sc.image.shape[0], :sc.image.shape[1]]
            near = np.hypot(xx + 0.5 - o.cx, yy + 0.5 - o.cy) <= o.r + 1
            px = sc.image[near].astype(float)
            area = np.sum(np.linalg.norm(px - col, axis=1) < np.linalg.norm(px - bg, axis=1))
            expect = {"circle": np.pi, "square": 1.96, "triangle": 3 * np.sqrt(3) / 4,
                      "star": 5 * np.sin(np.radians(36)) * 0.45, "cross": 4 * 0.95 * 0.32 * 2
                      - (2 * 0.32) ** 2}[o.shape] * o.r ** 2
            self.assertLess(abs(area - expect), 0.15 * expect + 3, (o, area, expect))

    def test_pixels(self):
        for sc in self.rendered:
            self.check_pixels(sc)
        # Background: the named colour (± noise) away from objects.
        for sc in self.rendered[:50]:
            mask = np.ones(sc.image.shape[:2], bool)
            yy, xx = np.mgrid[:64, :64]
            for o in sc.objects:
                mask &= np.hypot(xx + 0.5 - o.cx, yy + 0.5 - o.cy) > o.r + 1.5
            dev = np.abs(sc.image[mask].astype(int) - scenes.BACKGROUNDS[sc.background]).max()
            self.assertLessEqual(dev, 15)

    def test_distribution(self):
        qa = [(t, a) for sc in self.train for t, _, a in sc.qa]
        types = Counter(t for t, _ in qa)
        for t in scenes.QTYPES:
            self.assertGreater(types[t], N_SCENES * 0.3, t)
        for t in ("exist", "relation"):
            yes = sum(a == "yes" for tt, a in qa if tt == t) / types[t]
            self.assertTrue(0.4 < yes < 0.6, (t, yes))
        counts = Counter(a for t, a in qa if t == "count")
        self.assertEqual(set(counts), {"one", "two", "three", "four"})
        self.assertGreater(min(counts.values()), types["count"] * 0.05)
        n_obj = Counter(len(sc.objects) for sc in self.train)
        self.assertEqual(set(n_obj), {1, 2, 3, 4})
        self.assertEqual({sc.background for sc in self.train}, set(scenes.BACKGROUNDS))
        objs = [o for sc in self.train for o in sc.objects]
        self.assertEqual({o.size for o in objs}, set(scenes.SIZES))
        self.assertEqual({o.shape for o in objs}, set(scenes.SHAPES))
        self.assertEqual({o.colour for o in objs}, set(scenes.COLOURS))
        print("qa per scene %.2f, count answers %s, objects per scene %s"
              % (len(qa) / N_SCENES, dict(sorted(counts.items())), dict(sorted(n_obj.items()))))

    def test_png_and_cli(self):
        sc = self.rendered[3]
        data = scenes.png_bytes(sc.image)
        self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n")
        w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        self.assertEqual((w, h), (64, 64))
        idat_len = int.from_bytes(data[33:37], "big")
        self.assertEqual(data[37:41], b"IDAT")
        raw = np.frombuffer(zlib.decompress(data[41:41 + idat_len]), np.uint8).reshape(64, 1 + 64 * 3)
        self.assertTrue((raw[:, 0] == 0).all())
        np.testing.assert_array_equal(raw[:, 1:].reshape(64, 64, 3), sc.image)
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([sys.executable, str(ROOT / "tools" / "data" / "scenes.py"), "--split",
                            "val", "--count", "3", "--start", "5", "--out", d], check=True,
                           capture_output=True)
            lines = (Path(d) / "val.jsonl").read_text().splitlines()
            self.assertEqual(len(lines), 3)
            rec = json.loads(lines[1])
            self.assertEqual(rec["index"], 6)
            ref = scenes.generate("val", 6, 0)
            self.assertEqual((Path(d) / rec["file"]).read_bytes(), scenes.png_bytes(ref.image))
            self.assertEqual(rec["qa"], [list(t) for t in ref.qa])
            try:
                from PIL import Image
            except ImportError:
                return
            np.testing.assert_array_equal(np.asarray(Image.open(Path(d) / rec["file"])), ref.image)

    def test_docs_examples_reproduce(self):
        records = json.loads((ROOT / "docs" / "examples" / "examples.json").read_text())
        self.assertGreaterEqual(len(records), 3)
        for r in records:
            sc = scenes.generate(r["split"], r["index"], r["seed"])
            png = (ROOT / "docs" / "examples" / r["image"]).read_bytes()
            self.assertEqual(png, scenes.png_bytes(sc.image), r["image"])
            self.assertIn((r["qtype"], r["question"], r["answer"]), sc.qa)
            self.assertEqual(solve(r["qtype"], r["question"], sc.objects), r["answer"])
            self.assertEqual(r["caption"], sc.captions[0])


# ------------------------------------------------------------- tokenizer

class TestTokenizer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from tokenizers import Tokenizer
        cls.tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
        cls.cfg = json.loads((MODEL / "tokenizer_config.json").read_text(encoding="utf-8"))
        cls.scenes = text_scenes("train") + text_scenes("heldout", 500)  # shared cache

    def test_special_tokens(self):
        specials = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜User｜>",
                    "<｜Assistant｜>", "<｜image｜>"]
        for i, s in enumerate(specials):
            self.assertEqual(self.tok.token_to_id(s), i)
            self.assertEqual(self.tok.encode(s).ids, [i])
            self.assertEqual(self.cfg["added_tokens_decoder"][str(i)]["content"], s)
        self.assertEqual(self.cfg["bos_token"]["content"], specials[0])
        self.assertEqual(self.cfg["eos_token"]["content"], specials[1])
        self.assertEqual(self.cfg["pad_token"]["content"], specials[2])
        self.assertEqual(self.cfg["image_token"], specials[5])
        vocab = self.tok.get_vocab_size()
        self.assertTrue(2000 <= vocab <= 4096, vocab)
        print(f"\nvocab size {vocab}")

    def test_round_trip_and_compact(self):
        tok = self.tok
        n_q = n_a = n_c = tq = ta = tc = 0
        seq_lens = []
        for sc in self.scenes:
            for c in sc.captions:
                ids = tok.encode(c).ids
                self.assertEqual(tok.decode(ids), c)
                n_c += 1
                tc += len(ids)
            for _, q, a in sc.qa:
                qi, ai = tok.encode(q).ids, tok.encode(a).ids
                self.assertEqual(tok.decode(qi), q)
                self.assertEqual(tok.decode(ai), a)
                if " " not in a:
                    self.assertEqual(len(ai), 1, a)  # one-word answers are one token
                n_q, n_a, tq, ta = n_q + 1, n_a + 1, tq + len(qi), ta + len(ai)
                # A whole training sequence: specials split out, text intact.
                seq = ("<｜begin▁of▁sentence｜><｜User｜><｜image｜>\n" + q + "<｜Assistant｜>" + a
                       + "<｜end▁of▁sentence｜>")
                ids = tok.encode(seq).ids
                self.assertEqual(ids[:3], [0, 3, 5])
                self.assertEqual(ids[-1], 1)
                self.assertEqual(tok.decode(ids, skip_special_tokens=False), seq)
                self.assertEqual(ids[3:-1].count(4), 1)
                seq_lens.append(len(ids))
        # Every word of the grammar is a single token after a space.
        for w in (list(scenes.COLOURS) + list(scenes.SHAPES) + list(scenes.PLURAL.values())
                  + list(scenes.SIZES) + list(scenes.NUMBERS[1:])):
            self.assertEqual(len(tok.encode("the " + w).ids), 2, w)
        for text in ("The quick brown fox jumps over the lazy dog. Héllo 😀 \t\n x",
                     "¿Qué? 東京 1234567 <｜User｜ not special"):
            self.assertEqual(tok.decode(tok.encode(text).ids), text)
        print(f"tokens per question {tq / n_q:.2f}, per answer {ta / n_a:.2f}, per caption "
              f"{tc / n_c:.2f}; text tokens per QA sequence {np.mean(seq_lens):.2f} "
              f"(max {max(seq_lens)}) + image tokens")
        self.assertLess(tq / n_q, 10)
        self.assertLess(ta / n_a, 1.6)
        self.assertLess(tc / n_c, 20)

    def test_chat_template(self):
        try:
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:
            self.skipTest("Jinja2 not installed")
        # transformers renders chat templates with these settings.
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        tpl = env.from_string(self.cfg["chat_template"])
        bos = self.cfg["bos_token"]["content"]
        msgs = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}},
                                             {"type": "text", "text": "What color is the circle?"}]},
                {"role": "assistant", "content": "red"},
                {"role": "user", "content": "And the star?"}]
        self.assertEqual(tpl.render(messages=msgs, bos_token=bos, add_generation_prompt=True),
                         "<｜begin▁of▁sentence｜>Be brief.<｜User｜><｜image｜>\nWhat color is the "
                         "circle?<｜Assistant｜>red<｜end▁of▁sentence｜><｜User｜>And the star?"
                         "<｜Assistant｜>")
        self.assertEqual(tpl.render(messages=msgs[1:2], bos_token=bos, add_generation_prompt=False),
                         "<｜begin▁of▁sentence｜><｜User｜><｜image｜>\nWhat color is the circle?")

    def test_training_reproduces_committed_file(self):
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, str(ROOT / "tools" / "train" / "train_tokenizer.py"),
                                  "--out", d], check=True, capture_output=True, text=True).stdout
            dt = time.perf_counter() - t0
            sha = re.search(r"sha256 ([0-9a-f]{64})", out)[1]
            if sha != self.cfg["tessera_corpus_sha256"]:
                self.skipTest("this machine's /usr/share/common-licenses differs from the one the "
                              "committed tokenizer was trained on")
            for name in ("tokenizer.json", "tokenizer_config.json"):
                self.assertEqual((Path(d) / name).read_bytes(), (MODEL / name).read_bytes(), name)
            print(f"tokenizer retrained in {dt:.1f} s: identical files")


# ------------------------------------------------------ training targets

class TestPositionTargets(unittest.TestCase):
    """train_vlm's position supervision: every patch's grid (row, col) in
    [-1, 1], read linearly off its image embedding (stage 4c); the two
    objects' centres at a relation's answer position (4e); the signed
    position difference a yes/no relation's answer gap must match (4f)."""

    def test_grid_and_loss(self):
        import torch
        sys.path.insert(0, str(ROOT / "tools" / "train"))
        import train_vlm as tv
        grid = tv.patch_grid(64)
        self.assertEqual(grid.shape, (64, 2))
        self.assertEqual(grid[0].tolist(), [-1.0, -1.0])
        self.assertEqual(grid[63].tolist(), [1.0, 1.0])
        self.assertAlmostEqual(grid[9, 0].item(), -1 + 2 / 7, places=6)  # row 1
        self.assertAlmostEqual(grid[9, 1].item(), -1 + 2 / 7, places=6)  # col 1
        self.assertEqual(grid[7].tolist(), [-1.0, 1.0])  # top right: row 0, col 7
        probe = tv.new_position_probe(16)
        img = torch.randn(3, 64, 16)
        centres = torch.zeros(3, 64, dtype=torch.bool)
        # a zero probe's loss is the targets' mean square: 2 (1 + 25 + 9 + 1) / 49 / 8
        self.assertAlmostEqual(tv.position_loss(probe, img, centres, 1.0).item(), 24 / 56, places=5)
        centres[:, 0] = True  # only the top-left patch (target (-1, -1)) counts
        self.assertAlmostEqual(tv.position_loss(probe, img, centres, 0.0).item(), 1.0, places=6)
        img[..., :2] = grid  # embeddings that carry (row, col) in two features
        probe["position_weight"].data[:, :2] = torch.eye(2)
        self.assertLess(tv.position_loss(probe, img, centres, 0.1).item(), 1e-12)

    @staticmethod
    def relation_batch():
        """train_vlm, the tokenizer, and a batch of 80 conversations of up to
        four relation, relation_what and colour questions (make_batch's)."""
        sys.path.insert(0, str(ROOT / "tools" / "train"))
        import train_vlm as tv
        tok = tv.Tok(MODEL / "tokenizer.json")
        convs = []
        for i in range(80):
            sc = scenes.generate("train", i, 0, 64)
            turns = [qa for qa in sc.qa if qa[0] in ("relation", "relation_what", "colour")][:4]
            convs.append((sc.image, turns, sc.objects))
        ids, tgt, _, seqs = tv.make_batch(tok, convs, 64)
        return tv, tok, convs, ids, tgt, seqs

    def test_relation_position_targets(self):
        """The two centres supervised at a relation's answer position agree
        with its answer, at the token that predicts it."""
        tv, tok, convs, ids, tgt, seqs = self.relation_batch()
        rows, targets = tv.relation_position_targets(convs, seqs, 64)
        expected = [(b, qa) for b, c in enumerate(convs) for qa in c[1] if qa[0] != "colour"]
        self.assertEqual(rows.shape[0], len(expected))
        self.assertGreater(len(expected), 60)
        self.assertTrue(bool((targets.abs() <= 1).all()))
        checked = 0
        for (t, b), xy, (b2, (qtype, question, answer)) in zip(rows.tolist(), targets, expected):
            self.assertEqual(b, b2)
            first = tok.enc(answer)[0]
            self.assertEqual(int(tgt[b, t]), first)  # position t predicts the answer
            said = {"yes": True, "no": False}.get(answer, True)  # relation_what: "a" <rel> "b"
            for word, (axis, sign) in {"left of": (0, 1), "right of": (0, -1),
                                       "above": (1, 1), "below": (1, -1)}.items():
                if f" {word} " in f" {question} ":
                    self.assertEqual(bool(sign * (xy[axis + 2] - xy[axis]) > 0), said, question)
                    checked += 1
        self.assertEqual(checked, len(expected))

    def test_relation_answer_targets(self):
        """The signed difference supervised at a yes/no relation's answer
        position is positive exactly for "yes", at the token that predicts
        the answer, and a logit gap of ANSWER_GAP_SCALE times it has zero loss."""
        import torch
        tv, tok, convs, ids, tgt, seqs = self.relation_batch()
        rows, targets = tv.relation_answer_targets(convs, seqs, 64)
        expected = [(b, qa) for b, c in enumerate(convs) for qa in c[1] if qa[0] == "relation"]
        self.assertEqual(rows.shape, (len(expected), 2))
        self.assertGreater(len(expected), 40)
        answers = [qa[2] for _, qa in expected]
        self.assertGreater(answers.count("yes"), 10)
        self.assertGreater(answers.count("no"), 10)
        for (t, b), (d,), (b2, (_, _, answer)) in zip(rows.tolist(), targets.tolist(), expected):
            self.assertEqual(b, b2)
            self.assertEqual(int(tgt[b, t]), tok.enc(answer)[0])
            self.assertEqual(d > 0, answer == "yes")
            self.assertLessEqual(abs(d), 2.0)
        gap = torch.zeros(len(convs), ids.shape[1])
        self.assertAlmostEqual(tv.relation_answer_loss(gap, (rows, targets)).item(),
                               targets.pow(2).mean().item(), places=6)
        gap[rows[:, 1], rows[:, 0]] = targets[:, 0] * tv.ANSWER_GAP_SCALE
        self.assertLess(tv.relation_answer_loss(gap, (rows, targets)).item(), 1e-12)

    def test_qtype_weights(self):
        """--qtype-weight scales exactly the target positions of the named
        type's answers and that type's attention rows; a bad spec is refused."""
        import torch
        tv, tok, convs, ids, tgt, seqs = self.relation_batch()
        weights = tv.parse_qtype_weights("relation_what=3,colour=0.5")
        self.assertEqual(weights, {"relation_what": 3.0, "colour": 0.5})
        for bad in ("shape", "shapes=2", "shape="):
            with self.assertRaises(SystemExit):
                tv.parse_qtype_weights(bad)
        w = tv.token_weights(convs, seqs, ids.shape[1], weights)
        counted = {3.0: 0, 0.5: 0, 1.0: 0}
        for b, ((_, turns, _), (s, spans)) in enumerate(zip(convs, seqs)):
            for (qtype, _, answer), (st, en) in zip(turns, spans):
                span = w[b, st - 1:en - 1]
                self.assertEqual(span.tolist(), [weights.get(qtype, 1.0)] * (en - st))
                self.assertEqual(int(tgt[b, st - 1]), tok.enc(answer)[0])
                counted[weights.get(qtype, 1.0)] += 1
        self.assertGreater(counted[3.0], 40)
        self.assertGreater(counted[0.5], 40)
        self.assertEqual(counted[1.0], sum(len(c[1]) for c in convs) - counted[3.0] - counted[0.5])
        # outside the answer spans every weight stays 1
        self.assertTrue(bool((w[tgt == -100] == 1.0).all()))
        plain = tv.attention_targets(tok, convs, seqs, 2, 64, 8, ids.shape[1])
        scaled = tv.attention_targets(tok, convs, seqs, 2, 64, 8, ids.shape[1], weights)
        self.assertTrue(bool((plain["image"][3] == 1).all()))
        self.assertEqual(set(scaled["image"][3].tolist()), {3.0, 0.5, 1.0})
        rows = plain["image"][0]
        p = torch.rand(ids.shape[1], len(convs), 4, ids.shape[1])
        per_row = tv.attention_loss(p, tuple(x[:1] for x in plain["image"]))
        self.assertAlmostEqual(
            tv.attention_loss(p, tuple(x[:1] for x in scaled["image"])).item(),
            scaled["image"][3][0].item() * per_row.item(), places=5)
        self.assertEqual(rows.shape[0], scaled["image"][0].shape[0])


if __name__ == "__main__":
    t0 = time.perf_counter()
    prog = unittest.main(exit=False, verbosity=2)
    print(f"total {time.perf_counter() - t0:.1f} s")
    sys.exit(0 if prog.result.wasSuccessful() else 1)
