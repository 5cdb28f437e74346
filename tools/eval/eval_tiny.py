#!/usr/bin/python3
"""Issue-7 evaluation of a tessera-tiny model directory through the C engine.

Starts `tessera serve` on the model directory, sends every evaluation item as
an OpenAI chat request (the scene as a PNG data URL, then the question;
temperature 0) with several requests in flight, so the answers come from the
real serving path: PNG decode, Janus preprocessing, the C vision tower and
aligner, the chat template, continuous batching and the C V4 backbone.

The evaluation sets are train_vlm.eval_sets: per split, every question of
`--scenes` freshly generated scenes plus one caption request ("Describe the
image.") per scene; "val" is in-distribution, "heldout" the compositional
split whose (colour, shape) pairs training never shows. Prints accuracy per
question type and per issue-7 group, caption exact match and caption
attribute F1, and (with --python) how often the C answer equals the Python
model's greedy answer on the same items (tools/reference modules, batched,
with DeepSeek's FP8 KV / FP4 indexer round trips as the C engine does).

    .venv/bin/python tools/eval/eval_tiny.py --model-dir models/tessera-tiny \\
        --scenes 1000 --python --json build-train/eval_c.json
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "train"))
import train_vlm as tv  # noqa: E402

import scenes  # noqa: E402  (tools/data, put on sys.path by vlm_model)

# Target per issue-7 group (caption_f1 is a score, not an accuracy).
TARGETS = {"group_attribute": 0.95, "group_count": 0.90, "group_relation": 0.85,
           "caption_f1": 0.95}


def ask_image(port: int, url: str, question: str, max_tokens: int) -> str:
    """One image (a data URL) and one question to /v1/chat/completions at
    temperature 0, as the README's curl example sends them; the answer text.
    Raises RuntimeError on a non-200 answer."""
    body = {"model": "tiny", "temperature": 0, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": question}]}]}
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    c.request("POST", "/v1/chat/completions", json.dumps(body),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {data[:300]!r}")
    return json.loads(data)["choices"][0]["message"]["content"].strip()


class Server:
    """`tessera serve` on a free loopback port, stopped with SIGTERM."""

    def __init__(self, tessera: str, model_dir: str, threads: int, log: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [tessera, "serve", "-m", model_dir, "--port", str(self.port), "--threads",
             str(threads), "--model-id", "tiny"], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"tessera serve exited: {log.read_text()}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/v2/health/ready")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)  # not listening yet, or 503 while the model loads
        raise SystemExit("tessera serve not ready within 60 s")

    def ask(self, png: bytes, question: str, max_tokens: int) -> str:
        return ask_image(self.port, "data:image/png;base64," + base64.b64encode(png).decode(),
                         question, max_tokens)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def c_answers(server: Server, items, concurrency: int) -> List[str]:
    pngs: Dict[int, bytes] = {}
    for it in items:  # scenes share images: encode each once
        if id(it[0]) not in pngs:
            pngs[id(it[0])] = scenes.png_bytes(it[0])
    with ThreadPoolExecutor(concurrency) as ex:
        return list(ex.map(lambda it: server.ask(pngs[id(it[0])], it[2],
                                                 40 if it[1] == "caption" else 10), items))


def table(res: Dict[str, Dict[str, float]]) -> str:
    keys = ["colour", "shape", "size", "exist", "count", "relation", "relation_what",
            "group_attribute", "group_count", "group_relation", "all_qa", "caption",
            "caption_f1"]
    splits = list(res)
    lines = [f"{'':16}" + "".join(f"{s:>18}" for s in splits) + "   target"]
    for k in keys:
        row = f"{k:16}"
        for s in splits:
            v, n = res[s].get(k), res[s].get("n_" + k, 0)
            row += f"{'-':>18}" if v is None else f"{100 * v:>10.1f}% ({n:>4})"
        t = TARGETS.get(k)
        lines.append(row + (f"   >= {100 * t:.0f}%" if t else ""))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", default=str(REPO / "models" / "tessera-tiny"))
    ap.add_argument("--tessera", default=str(REPO / "build" / "tessera"))
    ap.add_argument("--scenes", type=int, default=1000, help="scenes per split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="server worker threads")
    ap.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    ap.add_argument("--python", action="store_true",
                    help="also decode with the Python model and report agreement")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    sets = tv.eval_sets(args.scenes, args.seed)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"eval_tiny_serve_{os.getpid()}.log"
    server = Server(args.tessera, args.model_dir, args.threads, log)
    res: Dict[str, Dict[str, float]] = {}
    preds: Dict[str, List[str]] = {}
    try:
        for split, items in sets.items():
            t0 = time.time()
            preds[split] = c_answers(server, items, args.concurrency)
            res[split] = tv.score(items, preds[split])
            print(f"C engine, {split}: {len(items)} items in {time.time() - t0:.0f} s",
                  flush=True)
    finally:
        server.stop()
    out: Dict[str, object] = {"model_dir": args.model_dir, "scenes_per_split": args.scenes,
                              "c_engine": res}
    print(table(res))
    if args.python:
        import torch
        from safetensors.torch import load_file
        torch.set_num_threads(os.cpu_count() or 1)
        cfgj = json.loads((Path(args.model_dir) / "config.json").read_text())
        model = tv.TinyVLM(cfgj, load_file(str(Path(args.model_dir) / "model.safetensors")))
        tok = tv.Tok(Path(args.model_dir) / "tokenizer.json")
        agree = {}
        for split, items in sets.items():
            t0 = time.time()
            py = tv.greedy_answers(model, tok, items, quant_sim=True)
            same = sum(a == b for a, b in zip(py, preds[split]))
            agree[split] = {"same": same, "n": len(items), "rate": same / len(items)}
            print(f"C vs Python greedy answers, {split}: {same}/{len(items)} identical "
                  f"({100 * same / len(items):.2f}%, Python {time.time() - t0:.0f} s)", flush=True)
            for it, a, b in zip(items, preds[split], py):
                if a != b:
                    print(f"  differs: {it[2]!r}: C {a!r} / Python {b!r}")
        out["c_vs_python"] = agree
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
