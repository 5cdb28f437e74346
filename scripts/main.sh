#!/usr/bin/env bash
# The main job: builds Tessera, answers one question about an example image
# with the shipped default model (models/tessera-tiny), then starts the
# OpenAI-compatible service on it at http://127.0.0.1:${TESSERA_PORT:-8080}
# (Ctrl-C stops it). Assumes scripts/install-deps.sh has run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
./build/tessera version
echo "Q: How many shapes are there?  (docs/examples/ex2_count.png)"
printf 'A: '
./build/tessera ask -m models/tessera-tiny -i docs/examples/ex2_count.png \
  -p "How many shapes are there?" -n 16
echo
exec ./build/tessera serve -m models/tessera-tiny --port "${TESSERA_PORT:-8080}"
