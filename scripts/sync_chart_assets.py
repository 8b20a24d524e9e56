#!/usr/bin/env python3
"""Copy the project's single sources into the Helm chart and the kustomize base.

Helm and kustomize only read files inside their own folder, so these copies are generated:

  crds/*.yaml                               -> charts/unsubscribe-sync-operator/files/crds/
                                               deploy/base/crds/
  monitoring/alerts.yaml                    -> charts/unsubscribe-sync-operator/files/monitoring/alerts.yaml
  monitoring/dashboards/unsubscribe-sync.json -> charts/unsubscribe-sync-operator/files/monitoring/
  deploy/base/rbac.yaml (ClusterRole rules) -> charts/unsubscribe-sync-operator/files/rbac-rules.yaml
  deploy/base (kubectl kustomize)           -> deploy/install.yaml            (with --install)

Usage:
  scripts/sync_chart_assets.py            write the copies
  scripts/sync_chart_assets.py --check    exit 1 and list the copies that are out of date
  scripts/sync_chart_assets.py --install  also render deploy/install.yaml (needs kubectl; see scripts/fetch-helm.sh)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = Path("charts/unsubscribe-sync-operator")
INSTALL_HEADER = (
    "# unsubscribe-sync-operator: plain manifests (CRD, namespace, RBAC, operator, metrics Service).\n"
    "# Generated from deploy/base by scripts/sync_chart_assets.py --install; do not edit by hand.\n"
    "# kubectl apply -f deploy/install.yaml\n"
)


def rbac_rules_document(rbac_yaml: str) -> str:
    """The rules of the operator's ClusterRole in deploy/base/rbac.yaml, as the chart's rules file."""
    roles = [d for d in yaml.safe_load_all(rbac_yaml) if d and d.get("kind") == "ClusterRole"]
    if len(roles) != 1:
        raise ValueError(f"deploy/base/rbac.yaml must hold exactly one ClusterRole, found {len(roles)}")
    header = "# Generated from deploy/base/rbac.yaml by scripts/sync_chart_assets.py; do not edit by hand.\n"
    return header + yaml.safe_dump({"rules": roles[0].get("rules") or []}, sort_keys=False)


def planned_copies(root: Path = ROOT) -> dict[Path, bytes]:
    """Every generated file (relative path) and the bytes it must hold."""
    out: dict[Path, bytes] = {}
    for crd in sorted((root / "crds").glob("*.yaml")):
        out[CHART / "files/crds" / crd.name] = crd.read_bytes()
        out[Path("deploy/base/crds") / crd.name] = crd.read_bytes()
    out[CHART / "files/monitoring/alerts.yaml"] = (root / "monitoring/alerts.yaml").read_bytes()
    dashboard = root / "monitoring/dashboards/unsubscribe-sync.json"
    out[CHART / "files/monitoring/unsubscribe-sync.json"] = dashboard.read_bytes()
    rbac = root / "deploy/base/rbac.yaml"
    if rbac.exists():
        out[CHART / "files/rbac-rules.yaml"] = rbac_rules_document(rbac.read_text()).encode()
    return out


def stale(root: Path = ROOT) -> list[Path]:
    """Generated files whose content differs from what planned_copies() wants (or that are missing)."""
    result = []
    for rel, content in planned_copies(root).items():
        path = root / rel
        if not path.exists() or path.read_bytes() != content:
            result.append(rel)
    return result


def find_kubectl(root: Path = ROOT) -> str | None:
    local = root / ".tools/bin/kubectl"
    if local.exists() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("kubectl")


def render_install(root: Path = ROOT, kubectl: str | None = None) -> str:
    """deploy/base rendered by kustomize, with a header: the content of deploy/install.yaml."""
    kubectl = kubectl or find_kubectl(root)
    if kubectl is None:
        raise RuntimeError("kubectl not found: run scripts/fetch-helm.sh (puts one in .tools/bin)")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(root / "deploy/base")], check=True, capture_output=True, text=True
    ).stdout
    return INSTALL_HEADER + rendered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report out-of-date copies")
    parser.add_argument("--install", action="store_true", help="also render deploy/install.yaml")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for rel in out_of_date:
            print(f"out of date: {rel}", file=sys.stderr)
        return 1 if out_of_date else 0
    for rel, content in planned_copies().items():
        path = ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
            print(f"wrote {rel}")
    if args.install:
        (ROOT / "deploy/install.yaml").write_text(render_install())
        print("wrote deploy/install.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
