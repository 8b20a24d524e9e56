"""`unsubscribe-sync render -f CR.yaml`: print the child manifests the operator would apply.

The CR is defaulted and validated as the API server would (schema, CEL rules), then rendered by the
same builders the operator uses. A bad CR prints its problems on stderr and exits 2, printing nothing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from unsubscribe_sync.api.constants import DEFAULT_IMAGE
from unsubscribe_sync.api.crd import crd_yaml
from unsubscribe_sync.api.validation import DEFAULT_NAMESPACE, InvalidResourceError, validate_unsubscribe_sync
from unsubscribe_sync.resources.children import desired_children

EXIT_INVALID = 2


class _ManifestDumper(yaml.SafeDumper):
    """Multi-line strings (the config file) as literal blocks, so they read like the file they hold."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _represent_str)


def dump_manifests(manifests: list[dict[str, Any]]) -> str:
    """Multi-document YAML, keys in builder order."""
    return yaml.dump_all(manifests, Dumper=_ManifestDumper, sort_keys=False, explicit_start=True, width=120)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-f", "--filename", metavar="FILE", help="UnsubscribeSync manifest(s) to render ('-' = stdin)")
    source.add_argument("--crd", action="store_true", help="print the UnsubscribeSync CustomResourceDefinition")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help=f"image of the worker and nightly job ({DEFAULT_IMAGE})")
    parser.add_argument(
        "-n",
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help="namespace for manifests that name none (default: %(default)s)",
    )


def _read(filename: str) -> str:
    if filename == "-":
        return sys.stdin.read()
    with open(filename, encoding="utf-8") as handle:
        return handle.read()


def _fail(source: str, problems: list[str]) -> int:
    for problem in problems:
        print(f"error: {source}: {problem}", file=sys.stderr)
    return EXIT_INVALID


def run(args: argparse.Namespace) -> int:
    if args.crd:
        sys.stdout.write(crd_yaml())
        return 0
    source = "stdin" if args.filename == "-" else args.filename
    try:
        documents = [doc for doc in yaml.safe_load_all(_read(args.filename)) if doc is not None]
    except OSError as exc:
        return _fail(source, [f"cannot read: {exc.strerror}"])
    except yaml.YAMLError as exc:
        return _fail(source, [f"not valid YAML: {exc}"])
    if not documents:
        return _fail(source, ["no UnsubscribeSync manifest found"])
    manifests: list[dict[str, Any]] = []
    problems: list[str] = []
    for index, doc in enumerate(documents):
        where = f"document {index + 1}: " if len(documents) > 1 else ""
        try:
            resource = validate_unsubscribe_sync(doc, default_namespace=args.namespace)
        except InvalidResourceError as exc:
            problems += [where + problem for problem in exc.problems]
            continue
        manifests += desired_children(resource.name, resource.namespace, resource.spec, image=args.image)
    if problems:
        return _fail(source, problems)
    sys.stdout.write(dump_manifests(manifests))
    return 0
