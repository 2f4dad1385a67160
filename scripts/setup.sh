#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian/Ubuntu machine
# (or any machine with pip; the apt step is skipped where it cannot run).
set -euo pipefail
cd "$(dirname "$0")/.."

FASHION_MNIST=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$FASHION_MNIST" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "== installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "== Fashion-MNIST package not installed (needs apt-get as root);" \
         "the demo will download it with keras.datasets instead"
  fi
fi

echo "== installing keras-selfdistill with CPU TensorFlow, JAX and CPU torch (the"\
     "test suite runs on each), test tools, and the examples', plots' and docs' extras"
python -m pip install -q -c scripts/constraints.txt -e ".[cpu,backends,test,examples,plots,docs]"
