#!/usr/bin/env bash
# Build an isolated virtual environment with neural-tangents 0.6.5 and its old pins, then run a
# script in it. neural-tangents 0.6.5 imports only with jax 0.4.26 / numpy < 2; these pins must
# never enter gdeq's own environment, so the venv lives in an ignored folder (default
# .venv-neural-tangents/ at the repo root; override with NT_VENV=...).
#
#   bash benchmarks/neural_tangents_env.sh                                  # writes tests/data/ntk_reference.npz
#   bash benchmarks/neural_tangents_env.sh benchmarks/bench_lazy_nt.py ...  # any script, in that venv
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${NT_VENV:-$ROOT/.venv-neural-tangents}"
PY="${NT_PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import neural_tangents" 2>/dev/null; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet "jax==0.4.26" "jaxlib==0.4.26" "numpy<2" "scipy<1.14" "tf2jax==0.3.6" \
      "neural-tangents==0.6.5"
fi
SCRIPT="${1:-$ROOT/benchmarks/neural_tangents_reference.py}"
shift || true
cd "$ROOT"
JAX_ENABLE_X64=1 JAX_PLATFORMS=cpu "$VENV/bin/python" "$SCRIPT" "$@"
