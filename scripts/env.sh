# Sourced by the project's scripts: puts the project's pinned tools first on PATH and sets the
# variables that make worker-build and wrangler work offline and non-interactively.
ORPHEUS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ORPHEUS_TOOLS=${ORPHEUS_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/orpheus-relay}
# The virtual environment of the Python SDKs the tests drive the HTTP endpoint with.
ORPHEUS_PYTHON_ENV=$ORPHEUS_TOOLS/python
export ORPHEUS_ROOT ORPHEUS_TOOLS ORPHEUS_PYTHON_ENV
export PATH="$ORPHEUS_TOOLS/node22/node_modules/.bin:$ORPHEUS_ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# worker-build would download these from GitHub; it reads these variables first.
export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen"
export WASM_OPT_BIN="$ORPHEUS_ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$ORPHEUS_ROOT/node_modules/.bin/esbuild"
# wrangler: no login, no metrics, no fetching of request.cf from the internet.
export CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_SEND_METRICS=false
