"""Structural lint of the Containerfile (no container engine runs here): multi-stage, pinned bases,
non-root user, exec-form entrypoint of the console script, OCI labels, a tight build context."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

import pytest

from tests.fixtures.deploy import CONTAINERFILE, DOCKERIGNORE, REPO_ROOT, Stage, expand, parse


@pytest.fixture(scope="module")
def parsed() -> tuple[dict[str, str], list[Stage]]:
    return parse(CONTAINERFILE.read_text())


def test_multi_stage_with_a_builder_and_a_slim_python_312_runtime(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    global_args, stages = parsed
    assert len(stages) >= 2
    assert stages[0].name == "builder"
    runtime = expand(stages[-1].base, global_args)
    assert re.fullmatch(r"(docker\.io/library/)?python:3\.12-slim(-\w+)?", runtime), runtime
    assert any("--from=builder" in args for args in stages[-1].all("COPY"))
    assert any("pip wheel" in args for args in stages[0].all("RUN"))


def test_base_images_are_pinned_never_latest(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    global_args, stages = parsed
    names = {s.name for s in stages if s.name}
    for stage in stages:
        image = expand(stage.base, global_args)
        if image in names:
            continue
        assert "$" not in image, f"unresolved variable in FROM {stage.base}"
        assert ":" in image.rsplit("/", 1)[-1] or "@sha256:" in image, f"{image} has no tag"
        assert not image.endswith(":latest"), image


def test_runtime_runs_as_non_root_uid_65532(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = parsed
    users = stages[-1].all("USER")
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid == "65532" and gid in {"", "65532"}
    # nothing after USER needs root
    keywords_after_user = [kw for kw, _ in stages[-1].instructions][
        [kw for kw, _ in stages[-1].instructions].index("USER") :
    ]
    assert "RUN" not in keywords_after_user


def test_entrypoint_is_the_console_script_in_exec_form(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = parsed
    (entrypoint,) = stages[-1].all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["unsubscribe-sync"]
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "unsubscribe-sync" in scripts


def test_read_only_root_friendly_environment(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = parsed
    env = " ".join(stages[-1].all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "TMPDIR=/tmp" in env
    assert not stages[-1].all("VOLUME"), "VOLUME makes anonymous volumes; pods mount what they need"
    assert not [a for s in stages for a in s.all("ADD") if "://" in a], "no remote ADD"


def test_oci_labels(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = parsed
    labels = " ".join(stages[-1].all("LABEL"))
    for key in ("title", "description", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def dockerignore_allows(path: str, patterns: list[str]) -> bool:
    allowed = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/"):
            allowed = negate
    return allowed


def test_build_context_holds_what_copy_needs_and_nothing_else(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = parsed
    patterns = [p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]
    sources = []
    for stage in stages:
        for args in stage.all("COPY"):
            if "--from=" in args:
                continue
            sources += args.split()[:-1]
    assert sources
    for source in sources:
        assert dockerignore_allows(source.rstrip("/"), patterns), f"{source} is excluded by .dockerignore"
    for secret_or_bulk in (".venv", ".git", "tests", ".tools", "ledger.db", ".env"):
        assert not dockerignore_allows(secret_or_bulk, patterns), f"{secret_or_bulk} would enter the build context"
