#!/usr/bin/env python3
"""Release checks: one version everywhere, the tag that publishes it, and its CHANGELOG notes.

The one place the version is written is ``__version__`` in operator/unsubscribe_sync/__init__.py.
setuptools reads it into the package metadata (pyproject.toml ``dynamic = ["version"]``), the CLI
prints it (``--version``) and ``DEFAULT_IMAGE`` carries it as its tag. Helm cannot read Python, so the
chart's ``version``/``appVersion`` and the static manifests under deploy/ are copies: this script
names every copy that disagrees, and the release workflow refuses a tag that is not ``v<version>``.

Usage:
  scripts/release.py version              print the version
  scripts/release.py check [--tag vX.Y.Z] exit 1 naming every place that disagrees (and the tag)
  scripts/release.py notes VERSION        print that version's CHANGELOG.md section (the release notes)

The package is read, not imported, so this runs before any install; `check` needs PyYAML, the others
only the standard library.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_INIT = Path("operator/unsubscribe_sync/__init__.py")
CHART = Path("charts/unsubscribe-sync-operator")
CHANGELOG = Path("CHANGELOG.md")
IMAGE_REPOSITORY = "ghcr.io/optout-dev/unsubscribe-sync"
STATIC_MANIFESTS = (Path("deploy/base/operator.yaml"), Path("deploy/install.yaml"))
README = Path("README.md")  # "Install a released version" sets VERSION=X.Y.Z

# X.Y.Z only: the same string is a PEP 440 version, a SemVer chart version and an image tag.
# (A pre-release would need one spelling per format; add that mapping here when one is wanted.)
VERSION_PATTERN = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")


def package_version(root: Path = ROOT) -> str:
    """``__version__`` of the package, read from its source (no import, no installed metadata)."""
    tree = ast.parse((root / PACKAGE_INIT).read_text())
    for node in tree.body:
        names = [t.id for t in node.targets if isinstance(t, ast.Name)] if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.Assign) and "__version__" in names:
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return node.value.value
            raise ValueError(f"{PACKAGE_INIT}: __version__ must be a plain string literal")
    raise ValueError(f"{PACKAGE_INIT}: no __version__ assignment")


def version_problems(version: str) -> list[str]:
    if VERSION_PATTERN.fullmatch(version):
        return []
    return [f"{PACKAGE_INIT}: __version__ {version!r} is not X.Y.Z (digits, no leading zeros)"]


def _images_and_versions(doc: Any) -> tuple[list[str], list[str]]:
    """Every container image / --image= argument and every app.kubernetes.io/version label in a manifest."""
    images: list[str] = []
    versions: list[str] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("image"), str):
                images.append(node["image"])
            labels = node.get("labels")
            if isinstance(labels, dict) and "app.kubernetes.io/version" in labels:
                versions.append(str(labels["app.kubernetes.io/version"]))
            for key in ("args", "command"):
                for arg in node.get(key) or []:
                    if isinstance(arg, str) and arg.startswith("--image="):
                        images.append(arg.removeprefix("--image="))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return images, versions


def copies_that_disagree(version: str, root: Path = ROOT) -> list[str]:
    """Each copy of the version (chart, chart values, static manifests) that does not say ``version``."""
    import yaml  # only here: `version` and `notes` run on a bare Python

    problems: list[str] = []
    chart = yaml.safe_load((root / CHART / "Chart.yaml").read_text())
    for key in ("version", "appVersion"):
        if str(chart.get(key)) != version:
            problems.append(f"{CHART}/Chart.yaml: {key} is {chart.get(key)!r}, the package is {version!r}")
    image = (yaml.safe_load((root / CHART / "values.yaml").read_text()) or {}).get("image") or {}
    if image.get("repository") != IMAGE_REPOSITORY:
        problems.append(f"{CHART}/values.yaml: image.repository is {image.get('repository')!r}, not {IMAGE_REPOSITORY}")
    if image.get("tag") not in ("", None, version):
        problems.append(f"{CHART}/values.yaml: image.tag is {image.get('tag')!r}; leave it empty (= appVersion)")
    expected_image = f"{IMAGE_REPOSITORY}:{version}"
    for manifest in STATIC_MANIFESTS:
        path = root / manifest
        if not path.exists():
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            images, labels = _images_and_versions(doc)
            problems += [f"{manifest}: image {i}, expected {expected_image}" for i in images if i != expected_image]
            problems += [f"{manifest}: version label {v}, expected {version}" for v in labels if v != version]
    readme = root / README
    if readme.exists():
        shown = re.findall(r"^VERSION=(\S+)$", readme.read_text(), re.MULTILINE)
        problems += [f"{README}: install commands say VERSION={v}, expected {version}" for v in shown if v != version]
    return problems


def tag_problems(tag: str, version: str) -> list[str]:
    """The git tag that publishes a release must be exactly ``v`` + the package version."""
    if tag == f"v{version}":
        return []
    return [f"tag {tag!r} does not match the package version {version!r} (expected 'v{version}')"]


def changelog_section(text: str, version: str) -> str | None:
    """The body of the ``## [version]`` (or ``## version``) section of a Keep a Changelog file."""
    heading = re.compile(rf"^## \[?{re.escape(version)}\]?(?:\s|$).*$", re.MULTILINE)
    match = heading.search(text)
    if match is None:
        return None
    following = re.compile(r"^## ", re.MULTILINE).search(text, match.end())
    end = following.start() if following else len(text)
    body = text[match.end() : end]
    body = re.sub(r"^\[[^\]]+\]:\s*\S+\s*$", "", body, flags=re.MULTILINE)  # link references at the end
    return body.strip() or None


def all_problems(root: Path = ROOT, tag: str | None = None) -> list[str]:
    version = package_version(root)
    problems = version_problems(version) + copies_that_disagree(version, root)
    if tag is not None:
        problems += tag_problems(tag, version)
    changelog = root / CHANGELOG
    if not changelog.is_file() or changelog_section(changelog.read_text(), version) is None:
        problems.append(f"{CHANGELOG}: no section for {version}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version")
    check = sub.add_parser("check", help="every copy of the version agrees (and the tag, when given)")
    check.add_argument("--tag", help="the git tag being released, e.g. v0.1.0")
    notes = sub.add_parser("notes", help="print a version's CHANGELOG.md section")
    notes.add_argument("version")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(package_version())
        return 0
    if args.command == "notes":
        section = changelog_section((ROOT / CHANGELOG).read_text(), args.version)
        if section is None:
            print(f"{CHANGELOG}: no section for {args.version}", file=sys.stderr)
            return 1
        print(section)
        return 0
    problems = all_problems(tag=args.tag)
    for problem in problems:
        print(f"release: {problem}", file=sys.stderr)
    if not problems:
        print(f"release: version {package_version()} agrees everywhere")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
