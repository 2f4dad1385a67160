#!/usr/bin/env bash
# One command on a fresh machine: set up, then run the whole test suite once
# per Keras backend (TensorFlow, JAX, torch), each in its own process, and
# fail if any pass fails.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k losses`.
# KERAS_BACKENDS picks the passes, e.g. `KERAS_BACKENDS=tensorflow bash
# scripts/test.sh` (space- or comma-separated; CI runs all three).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

backends="${KERAS_BACKENDS:-tensorflow jax torch}"
backends="${backends//,/ }"
failed=()
timings=()
for backend in $backends; do
  case "$backend" in
    tensorflow|jax|torch) ;;
    *) echo "Unknown backend in KERAS_BACKENDS: '$backend' (use tensorflow, jax, torch)" >&2
       exit 2 ;;
  esac
  echo
  echo "==================== pytest, KERAS_BACKEND=$backend ===================="
  start=$SECONDS
  # A pass that stops making progress fails here, with every thread's stack
  # (faulthandler), instead of running into CI's wall-clock limit.
  if KERAS_BACKEND="$backend" timeout "${KSD_TEST_PASS_TIMEOUT:-1800}" \
      python -m pytest -q -p no:cacheprovider -o faulthandler_timeout=600 "$@"; then
    result=passed
  else
    result=FAILED
    failed+=("$backend")
  fi
  timings+=("$(printf '%-10s %-6s %5d s' "$backend" "$result" $((SECONDS - start)))")
done
echo
echo "==================== per-backend wall time ===================="
printf '%s\n' "${timings[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED on: ${failed[*]}" >&2
  exit 1
fi

# -- docs: the documentation site builds with no warning (broken
# links, undocumented parameters). Output goes to a temporary directory.
echo "== mkdocs build --strict"
docs_site="$(mktemp -d)"
python -m mkdocs build --strict --quiet --site-dir "$docs_site"
rm -rf "$docs_site"
