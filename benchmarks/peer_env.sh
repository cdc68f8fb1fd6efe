#!/usr/bin/env bash
# The peer's environment: a venv of benchmarks/requirements-peer.txt (timm, PyTorch's CPU build),
# cached like .ci/run's venvs, keyed by the file's hash, with a stub torchvision beside it.
# Prints the venv's directory; run the peer with
#   PYTHONPATH="$VENV/torchvision-stub" "$VENV/bin/python" -m benchmarks.peer_timm
# The stub comes from make_tv_stub.py in the shared folder beside the repository (../shared/peers/),
# or from MAKE_TV_STUB.
set -euo pipefail
cd "$(dirname "$0")/.."
pins=benchmarks/requirements-peer.txt
venv="${XDG_CACHE_HOME:-$HOME/.cache}/keras-mixer/venv-peer-$(sha256sum "$pins" | cut -c1-12)"
make_stub="${MAKE_TV_STUB:-../shared/peers/make_tv_stub.py}"
if [ ! -f "$venv/.complete" ]; then
  if [ ! -f "$make_stub" ]; then
    echo "peer_env.sh: no $make_stub (it writes the stub torchvision that timm imports);" \
      "set MAKE_TV_STUB to its path" >&2
    exit 1
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q -r <(grep -v '^timm==' "$pins") >&2
  "$venv/bin/python" -m pip install -q --no-deps "$(grep '^timm==' "$pins")" >&2
  "$venv/bin/python" "$make_stub" "$venv/torchvision-stub" >&2
  touch "$venv/.complete"
fi
echo "$venv"
