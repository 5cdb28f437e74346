#!/usr/bin/python3
"""Where tessera-tiny looks when it answers: the figures behind the model
card's "What it cannot do".

For N val questions of each type (one question per scene, val scenes from
100000 with seed 1, as tools/eval draws them), at the position that
predicts the answer:
  - first-token accuracy of the greedy answer;
  - text hop: the mass layer --text-layer's supervised heads put on the
    question's description words (train_vlm.attention_targets);
  - image hop: the mass layer --attn-layer's supervised heads put on the
    named objects' centre patches, or on the sink for a "no";
and for existence questions the image hop split by answer plus the
yes-minus-no logit gap; how much of the objects' positions their centre
patches' image embeddings carry linearly (position_fit), which relations
compare; for shape questions, which other objects draw the lookup
(lookup_distractors); and, for yes/no relation questions, how often the model says
"yes" and what the answer position carries linearly (relation_readout).

    .venv/bin/python tools/train/diagnose_lookup.py --ckpt build-train-4b/ckpt.pt
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_vlm as tv  # noqa: E402
from vlm_model import IMAGE_ID  # noqa: E402

import scenes  # noqa: E402  (tools/data, on sys.path via vlm_model)


def val_questions(keep, n: int, image_size: int):
    """The first question `keep(qtype, question)` accepts from each val scene,
    n conversations of one turn."""
    convs, index = [], 100000
    while len(convs) < n:
        sc = scenes.generate("val", index, 1, image_size)
        index += 1
        for qt, q, a in sc.qa:
            if keep(qt, q):
                convs.append((sc.image, [(qt, q, a)], sc.objects))
                break
    return convs


class Probe:
    def __init__(self, ckpt: Path, text_layer: int, attn_layer: int):
        self.model, _ = tv.load_model(ckpt)
        self.tok = tv.Tok()
        self.layers = {"text": text_layer, "image": attn_layer}
        self.model.capture_layers = (text_layer, attn_layer)
        self.image_start = tv.prompt_ids(self.tok, "", self.model.n_img).index(IMAGE_ID)

    def run(self, convs):
        """-> (answer-position hidden [N, D], its logits [N, V], attention
        targets, the supervised heads' captured probabilities per hop, the
        answer positions [N])."""
        ids, _, pix, seqs = tv.make_batch(self.tok, convs, self.model.n_img)
        with torch.no_grad():
            h, *_ = self.model.train_forward(ids, pix)
        at = torch.tensor([spans[0][0] - 1 for _, spans in seqs])
        h = h[torch.arange(len(convs)), at]
        vc = self.model.vcfg
        targets = tv.attention_targets(self.tok, convs, seqs, self.image_start, vc.image_size,
                                       vc.patch_size, ids.shape[1])
        probs = {}
        for kind, (rows, mask, *_) in targets.items():
            p = self.model.captured[self.layers[kind]]
            probs[kind] = p[rows[:, 0], rows[:, 1], rows[:, 2]][:, :mask.shape[1]]
        return h, self.model.logits(h), targets, probs, at


def hop_mass(targets, probs):
    """Per supervised row: mass on the target keys, or the sink's mass."""
    _, mask, sink, _ = targets
    return torch.where(sink, 1.0 - probs.sum(-1), (probs * mask).sum(-1))


def position_fit(model, n_fit: int, n_test: int):
    """R^2 on val scenes of the least-squares map, fitted on train scenes,
    from an object's centre-patch image embedding to its centre (x, y)."""
    vc = model.vcfg

    def objects(split, start, n):
        scs = [scenes.generate(split, start + i, 1, vc.image_size) for i in range(n)]
        with torch.no_grad():
            img = model.image_embeds(tv.pixel_batch(s.image for s in scs))
        rows = [(img[b, tv.centre_cell(o, vc.image_size, vc.patch_size)], (o.cx, o.cy))
                for b, s in enumerate(scs) for o in s.objects]
        x = torch.stack([r[0] for r in rows])
        return torch.cat([x, torch.ones(len(x), 1)], 1), torch.tensor([r[1] for r in rows])

    a, y = objects("train", 0, n_fit)
    a2, y2 = objects("val", 100000, n_test)
    pred = a2 @ torch.linalg.lstsq(a, y.float()).solution
    return 1 - ((pred - y2) ** 2).sum(0) / ((y2 - y2.mean(0)) ** 2).sum(0)


def lookup_distractors(pr: Probe, qtype: str, n: int):
    """Where --attn-layer's head 0 looks for n val questions of `qtype` (a
    one-word answer):
    -> ({objects in the scene: first-token accuracy}, {"right"/"wrong":
    (mass on the named object's centre, mass on the other objects'
    centres)} over scenes of 3+ objects, (distractors of the same size as
    the named object, distractors, share of all other objects that are of
    its size)), a distractor being the other object with the most mass when
    that mass exceeds 0.3."""
    convs = val_questions(lambda qt, q: qt == qtype, n, pr.model.vcfg.image_size)
    vc = pr.model.vcfg
    image = slice(pr.image_start, pr.image_start + pr.model.n_img)
    by_count, mass = defaultdict(list), defaultdict(list)
    same = distractors = 0
    same_size_others = []
    for s in range(0, n, 100):
        part = convs[s:s + 100]
        _, logits, targets, probs, _ = pr.run(part)
        rows, mask, _, _ = targets["image"]
        first = [pr.tok.dec([int(i)]) for i in logits.argmax(-1)]
        for r, (_, b, head) in enumerate(rows.tolist()):
            if head != 0:
                continue
            (_, [(_, _, answer)], objs) = part[b]
            ok = first[b] == answer.split()[0]
            by_count[len(objs)].append(ok)
            img = probs["image"][r, image]
            named = mask[r, image] > 0
            cells = [tv.centre_cell(o, vc.image_size, vc.patch_size) for o in objs]
            others = [(img[c].item(), o) for c, o in zip(cells, objs) if not named[c]]
            if len(objs) >= 3:
                mass["right" if ok else "wrong"].append(
                    (img[named].sum().item(), sum(m for m, _ in others)))
            target = next(o for c, o in zip(cells, objs) if named[c])
            same_size_others += [o.size == target.size for _, o in others]
            top = max(others, key=lambda x: x[0], default=None)
            if top is not None and top[0] > 0.3:
                distractors += 1
                same += top[1].size == target.size
    acc = {k: sum(v) / len(v) for k, v in sorted(by_count.items())}
    means = {k: tuple(sum(x[i] for x in v) / len(v) for i in range(2)) + (len(v),)
             for k, v in mass.items()}
    return acc, means, (same, distractors, sum(same_size_others) / len(same_size_others))


def relation_readout(pr: Probe, n: int, attn_layer: int):
    """For n yes/no relation val questions: (accuracy, share answered
    "yes", {feature: {target: held-out sign/class accuracy}}) where a
    least-squares map fitted on the first 3/4 reads, from --attn-layer's
    attention output or the final hidden state at the answer position, the
    answer, the sign of the subject-minus-other centre difference in x and
    y, and the relation word (argmax of a one-hot fit)."""
    pr.model.capture_outputs = (attn_layer,)
    convs = val_questions(lambda qt, q: qt == "relation", n, pr.model.vcfg.image_size)
    feats, gaps = {"attention": [], "final": []}, []
    yes, no = pr.tok.enc("yes")[0], pr.tok.enc("no")[0]
    for s in range(0, n, 100):
        part = convs[s:s + 100]
        h, logits, _, _, at = pr.run(part)
        feats["attention"].append(pr.model.attn_outputs[attn_layer][torch.arange(len(at)), at])
        feats["final"].append(h)
        gaps.append(logits[:, yes] - logits[:, no])
    said_yes = torch.cat(gaps) > 0
    truth = torch.tensor([c[1][0][2] == "yes" for c in convs])
    words = list(tv.RELATION_AXES)
    word, dx, dy = [], [], []
    for _, [(qt, q, a)], objs in convs:
        word.append(words.index(scenes.relation_word(q)))
        sub, other = (objs[r[0]] for r in scenes.referents(qt, q, a, objs))
        dx.append(sub.cx - other.cx)
        dy.append(sub.cy - other.cy)
    targets = {"answer": truth.float()[:, None] * 2 - 1,
               "sign dx": torch.tensor(dx).float().sign()[:, None],
               "sign dy": torch.tensor(dy).float().sign()[:, None],
               "relation word": torch.nn.functional.one_hot(torch.tensor(word), 4).float()}
    m = n * 3 // 4
    fits = {}
    for name, x in feats.items():
        x = torch.cat([torch.cat(x), torch.ones(n, 1)], 1)
        fits[name] = {}
        for tname, y in targets.items():
            # gelsd: the minimum-norm solution. The attention outputs span
            # ~50 of 128 dimensions, and the default driver's answer to a
            # rank-deficient system changed from run to run.
            pred = x[m:] @ torch.linalg.lstsq(x[:m], y[:m], driver="gelsd").solution
            hit = (pred.argmax(1) == y[m:].argmax(1)) if y.shape[1] > 1 else (pred.sign() == y[m:])
            fits[name][tname] = hit.float().mean().item()
    return (said_yes == truth).float().mean().item(), said_yes.float().mean().item(), fits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--n", type=int, default=64, help="questions per type")
    ap.add_argument("--text-layer", type=int, default=0)
    ap.add_argument("--attn-layer", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    pr = Probe(Path(args.ckpt), args.text_layer, args.attn_layer)
    tok = pr.tok
    for qtype in scenes.QTYPES:
        convs = val_questions(lambda qt, q: qt == qtype, args.n, pr.model.vcfg.image_size)
        _, logits, targets, probs, _ = pr.run(convs)
        first = [tok.dec([int(i)]) for i in logits.argmax(-1)]
        acc = sum(f == c[1][0][2].split()[0] for f, c in zip(first, convs)) / len(convs)
        print(f"{qtype:14s} first-token accuracy {acc:.2f}   text hop {hop_mass(targets['text'], probs['text']).mean():.2f}"
              f"   image hop {hop_mass(targets['image'], probs['image']).mean():.2f}")
        if qtype == "exist":
            _, mask, sink, _ = targets["image"]
            on = (probs["image"] * mask).sum(-1)
            out = 1.0 - probs["image"].sum(-1)
            yes_no = logits[:, tok.enc("yes")[0]] - logits[:, tok.enc("no")[0]]
            said_yes = torch.tensor([c[1][0][2] == "yes" for c in convs])
            print(f"{'':14s} 'yes' items: {on[~sink].mean():.2f} on the object, {out[~sink].mean():.2f} on the sink;"
                  f" 'no' items: {out[sink].mean():.2f} on the sink")
            print(f"{'':14s} logit(yes) - logit(no): 'yes' items {yes_no[said_yes].mean():.2f}"
                  f" ± {yes_no[said_yes].std():.2f}, 'no' items {yes_no[~said_yes].mean():.2f}"
                  f" ± {yes_no[~said_yes].std():.2f}")
    # shape questions name the object by colour alone (or size and colour)
    acc, means, (same, distractors, base) = lookup_distractors(pr, "shape", 4 * args.n)
    print(f"shape ({4 * args.n}) accuracy by objects in the scene: "
          + "  ".join(f"{k}: {v:.3f}" for k, v in acc.items()))
    for k, (on, off, cnt) in sorted(means.items()):
        print(f"{'':14s} {k} answers, 3+ objects ({cnt}): {on:.2f} of head 0's mass on the"
              f" named object, {off:.2f} on the others")
    print(f"{'':14s} distractors (another object > 0.3 of the mass) of the named object's"
          f" size: {same} of {distractors} (of all other objects: {base:.2f})")
    r2 = position_fit(pr.model, 8 * args.n, 4 * args.n)
    print(f"object centre from its patch embedding (least squares): R^2 x {r2[0]:.2f}, y {r2[1]:.2f}")
    n_rel = 16 * args.n
    acc, yes_share, fits = relation_readout(pr, n_rel, args.attn_layer)
    print(f"yes/no relations ({n_rel}): accuracy {acc:.3f}, answered 'yes' {yes_share:.3f}; "
          f"read linearly (fit on {n_rel * 3 // 4}, accuracy on the rest):")
    for name, row in fits.items():
        print(f"  {name:9s} " + "   ".join(f"{k} {v:.2f}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
