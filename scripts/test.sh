#!/usr/bin/env bash
# One command on a fresh machine: set up, then run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k losses`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
echo "== pytest (KERAS_BACKEND=$KERAS_BACKEND)"
python -m pytest -q -p no:cacheprovider "$@"

# -- docs (issue 7): the documentation site builds with no warning (broken
# links, undocumented parameters). Output goes to a temporary directory.
echo "== mkdocs build --strict"
docs_site="$(mktemp -d)"
python -m mkdocs build --strict --quiet --site-dir "$docs_site"
rm -rf "$docs_site"
