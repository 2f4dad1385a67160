#!/usr/bin/env bash
# One command on a fresh machine: set up, then run the main demo
# (plain vs self-distilled CNN on Fashion-MNIST, offline, CPU).
# Extra arguments go to the demo, e.g. `bash scripts/demo.sh --epochs 1`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python examples/fashion_mnist_demo.py "$@"
