# Sourced by the GPU scripts: install the carried wheels and the project once per machine, and
# restore the committed autotune results (scripts/gpu/README.md).
export PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1
if ! python3 -c "import fla, pydantic, prismbench.cli" 2>/dev/null; then
  python3 -m pip install -q --no-deps --no-index .carry/*.whl &&
  python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 3
fi
if [ -f scripts/gpu/autotune-cache.tgz ] && [ ! -f ~/.triton/.autotune-restored ]; then
  mkdir -p ~/.triton/cache && tar xzf scripts/gpu/autotune-cache.tgz -C ~/.triton/cache && touch ~/.triton/.autotune-restored
fi

save_autotune_cache() {  # the grown cache, for scripts/gpu/autotune-cache.tgz
  (cd ~/.triton/cache 2>/dev/null && find . -name '*.autotune.json' | tar czf "${OUT:-/tmp}/autotune-cache.tgz" -T -)
}
