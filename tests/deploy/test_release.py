"""Release engineering, checked without a container engine: one version everywhere, an image whose user,
commands and writable paths are the ones the rendered pods expect, and workflows that publish what the
README tells users to pull (pinned actions, multi-arch image, SBOM, signature, OCI chart, e2e)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.fixtures.deploy import (
    CHART_DIR,
    CONTAINERFILE,
    REPO_ROOT,
    Stage,
    by_kind,
    expand,
    helm_template,
    parse,
    tool_path,
)
from unsubscribe_sync import __version__
from unsubscribe_sync.api.config import parse_config
from unsubscribe_sync.api.constants import DEFAULT_IMAGE, SQLITE_DIR
from unsubscribe_sync.api.spec import UnsubscribeSyncSpec
from unsubscribe_sync.cli import build_parser
from unsubscribe_sync.resources import desired_children

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
CHANGELOG = REPO_ROOT / "CHANGELOG.md"


def load_release_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release", REPO_ROOT / "scripts/release.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


release = load_release_script()


# ---- one version ------------------------------------------------------------------------------------


def test_the_package_source_is_the_one_place_the_version_is_written() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "pyproject.toml must not repeat the version"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "unsubscribe_sync.__version__"}
    assert release.package_version() == __version__
    assert release.version_problems(__version__) == []


def test_installed_metadata_carries_the_source_version() -> None:
    # A stale editable install says otherwise: `make venv` reinstalls when pyproject.toml changes.
    assert importlib.metadata.version("unsubscribe-sync-operator") == __version__


def test_default_image_is_the_released_image_of_this_version() -> None:
    image, _, tag = DEFAULT_IMAGE.rpartition(":")
    assert (image, tag) == (release.IMAGE_REPOSITORY, __version__)


def test_chart_values_and_static_manifests_agree_with_the_package_version() -> None:
    assert release.copies_that_disagree(__version__) == []
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (__version__, __version__)


def test_readme_installs_the_released_chart_and_image_of_this_version() -> None:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("### Install a released version", 1)[1].split("\n### ", 1)[0]
    assert f"VERSION={__version__}\n" in section
    (rel,) = [w for w in workflows().values() if "tags" in (triggers(w).get("push") or {})]
    assert f"{rel['env']['CHART_REPOSITORY']}/unsubscribe-sync-operator" in section
    assert f"{release.IMAGE_REPOSITORY}:$VERSION" in section
    assert ".github/workflows/release.yml@refs/tags/v$VERSION" in section  # the identity cosign checks


def test_a_copy_that_disagrees_is_named(tmp_path: Path) -> None:
    for relative in ("Chart.yaml", "values.yaml"):
        target = tmp_path / release.CHART / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((CHART_DIR / relative).read_text())
    chart = tmp_path / release.CHART / "Chart.yaml"
    chart.write_text(chart.read_text().replace(f'appVersion: "{__version__}"', 'appVersion: "9.9.9"'))
    (problem,) = release.copies_that_disagree(__version__, tmp_path)
    assert "appVersion" in problem and "9.9.9" in problem


@pytest.mark.parametrize(
    ("tag", "version", "ok"),
    [
        ("v0.1.0", "0.1.0", True),
        ("0.1.0", "0.1.0", False),  # tags carry the v
        ("v0.1.1", "0.1.0", False),  # a tag for a version the files do not say
        ("v0.1.0-rc.1", "0.1.0", False),
    ],
    ids=["matching tag", "tag without v", "other version", "pre-release tag"],
)
def test_release_tag_must_be_v_plus_the_package_version(tag: str, version: str, ok: bool) -> None:
    problems = release.tag_problems(tag, version)
    assert (problems == []) is ok
    if not ok:
        assert tag in problems[0] and version in problems[0]


@pytest.mark.parametrize(
    ("version", "ok"),
    [("0.1.0", True), ("1.20.3", True), ("0.1", False), ("0.1.0rc1", False), ("01.0.0", False), ("v0.1.0", False)],
)
def test_version_must_be_plain_x_y_z(version: str, ok: bool) -> None:
    assert (release.version_problems(version) == []) is ok


def test_changelog_keeps_unreleased_and_has_this_version() -> None:
    text = CHANGELOG.read_text()
    assert re.search(r"^## \[Unreleased\]", text, re.MULTILINE)
    notes = release.changelog_section(text, __version__)
    assert notes and "### Added" in notes
    assert release.all_problems(tag=f"v{__version__}") == []


def test_changelog_section_stops_at_the_next_version() -> None:
    text = "# Changelog\n\n## [Unreleased]\n\n## [0.2.0] - 2027-01-01\n\n- two\n\n## [0.1.0] - 2026-12-03\n\n- one\n"
    assert release.changelog_section(text, "0.2.0") == "- two"
    assert release.changelog_section(text, "0.1.0") == "- one"
    assert release.changelog_section(text, "0.3.0") is None


# ---- the image against the pods that run it ---------------------------------------------------------


def runtime_stage() -> Stage:
    global_args, stages = parse(CONTAINERFILE.read_text())
    stage = stages[-1]
    stage.instructions = [(kw, expand(args, global_args)) for kw, args in stage.instructions]
    return stage


def image_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = expand(value, {**env, "PATH": "/usr/local/bin:/usr/bin:/bin"})
    return env


def image_user(stage: Stage) -> tuple[int, int]:
    uid, _, gid = stage.all("USER")[-1].partition(":")
    return int(uid), int(gid or uid)


def children_pods() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(what, pod spec, config file) of the worker and the nightly job, SQLite and PostgreSQL mode."""
    base: dict[str, Any] = {
        "salesforce": {"loginUrl": "https://acme.my.salesforce.com", "credentialsSecretRef": {"name": "acme-sf"}},
        "pushWorker": {"webhookSecretRef": {"name": "acme-webhook", "key": "token"}},
    }
    postgres = {"ledger": {"databaseSecretRef": {"name": "db", "key": "url"}}}
    pods = []
    for mode, extra in (("sqlite", {}), ("postgresql", postgres)):
        children = desired_children("acme", "sales", UnsubscribeSyncSpec.model_validate({**base, **extra}))
        (config_map,) = by_kind(children, "ConfigMap")
        config = yaml.safe_load(config_map["data"]["config.yaml"])
        (deployment,) = by_kind(children, "Deployment")
        (cronjob,) = by_kind(children, "CronJob")
        pods.append((f"push worker ({mode})", deployment["spec"]["template"]["spec"], config))
        pods.append((f"nightly job ({mode})", cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"], config))
    return pods


def operator_pods() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    docs = list(yaml.safe_load_all((REPO_ROOT / "deploy/base/operator.yaml").read_text()))
    pods = [("operator (deploy/base)", by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"], {})]
    if tool_path("helm") is not None:
        (deployment,) = by_kind(helm_template(), "Deployment")
        pods.append(("operator (chart)", deployment["spec"]["template"]["spec"], {}))
    return pods


PODS = children_pods() + operator_pods()
POD_IDS = [what for what, _, _ in PODS]


def effective_argv(container: dict[str, Any], stage: Stage) -> list[str]:
    """What the container runs: Kubernetes `command` replaces ENTRYPOINT, `args` replaces CMD."""
    if container.get("command"):
        return [*container["command"], *container.get("args", [])]
    entrypoint = json.loads(stage.all("ENTRYPOINT")[-1])
    cmd = json.loads(stage.all("CMD")[-1]) if stage.all("CMD") else []
    return [*entrypoint, *(container.get("args") or cmd)]


def under(path: str, mounts: list[str]) -> bool:
    return any(PurePosixPath(path).is_relative_to(mount) for mount in mounts)


@pytest.mark.parametrize(("what", "pod", "config"), PODS, ids=POD_IDS)
def test_image_user_is_the_non_root_uid_the_pod_runs_as(what: str, pod: dict[str, Any], config: Any) -> None:
    uid, gid = image_user(runtime_stage())
    assert uid != 0 and gid != 0
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True
    assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid), what
    # fsGroup = the image's group: mounted volumes (the ledger PVC) are writable by the image user.
    assert context["fsGroup"] == gid


@pytest.mark.parametrize(("what", "pod", "config"), PODS, ids=POD_IDS)
def test_pod_command_is_a_console_script_of_the_image_and_the_cli_accepts_it(
    what: str, pod: dict[str, Any], config: Any
) -> None:
    stage = runtime_stage()
    (container,) = pod["containers"]
    argv = effective_argv(container, stage)
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert argv[0] in scripts, f"{what} runs {argv[0]}, not a console script of the package"
    # The console script lands in the venv the builder fills and the runtime copies; it is on PATH.
    assert any("/opt/venv" in args and "--from=builder" in args for args in stage.all("COPY"))
    assert "/opt/venv/bin" in image_env(stage)["PATH"].split(":")
    args = build_parser(argv[1:]).parse_args(argv[1:])  # SystemExit here means the CLI rejects the pod's argv
    assert args.command in {"operator", "worker", "nightly"}
    if args.command in {"worker", "nightly"}:
        assert argv[2:4] == ["--config", "/etc/unsubscribe-sync/config/config.yaml"]
        config_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
        assert under(argv[3], [config_mount["mountPath"]])


def test_the_pods_run_the_three_commands() -> None:
    stage = runtime_stage()
    commands = {effective_argv(pod["containers"][0], stage)[1] for _, pod, _ in PODS}
    assert commands == {"operator", "worker", "nightly"}


@pytest.mark.parametrize(("what", "pod", "config"), PODS, ids=POD_IDS)
def test_read_only_root_leaves_tmp_and_the_ledger_writable(what: str, pod: dict[str, Any], config: Any) -> None:
    stage = runtime_stage()
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
    for path in writable:
        (name,) = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == path]
        assert {"emptyDir", "persistentVolumeClaim"} & set(volumes[name]), f"{what}: {path} is not a volume"
    assert set(writable) <= {"/tmp", SQLITE_DIR}, f"{what}: unexpected writable mounts {writable}"
    env = image_env(stage)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"  # no __pycache__ writes next to the code
    for key in ("TMPDIR", "HOME"):
        assert under(env[key], writable), f"{what}: the image's {key}={env[key]} is not writable in the pod"
    assert under(stage.all("WORKDIR")[-1], writable)
    ledger_url = ((config.get("ledger") or {}).get("url")) or ""
    if ledger_url.startswith("sqlite:") and what.startswith("push worker"):
        ledger_dir = str(PurePosixPath(parse_config(config).ledger.url.removeprefix("sqlite:///")).parent)
        assert under(ledger_dir, writable), f"{what}: the SQLite ledger directory {ledger_dir} is read-only"
        assert volumes[next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == SQLITE_DIR)][
            "persistentVolumeClaim"
        ]


def test_image_creates_the_ledger_directory_for_its_user() -> None:
    """Without a mounted volume (`docker run`), the worker can still write its SQLite ledger."""
    stage = runtime_stage()
    uid, gid = image_user(stage)
    runs = " ".join(stage.all("RUN"))
    assert re.search(rf"install -d -o {uid} -g {gid} -m 07[0-7]0 {re.escape(SQLITE_DIR)}(\s|$)", runs), runs


def test_image_labels_take_the_version_from_the_build_not_a_copy() -> None:
    stage = runtime_stage()
    version_args = [a for a in stage.all("ARG") if a.split("=")[0] == "VERSION"]
    assert version_args == ["VERSION=unknown"], "the release workflow passes --build-arg VERSION; no copy here"


# ---- the workflows ----------------------------------------------------------------------------------


def workflows() -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(WORKFLOWS.glob("*.y*ml"))}


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    return workflow.get("on", workflow.get(True)) or {}  # YAML 1.1 reads a bare `on` as true


def steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, spec in workflow["jobs"].items() for step in spec.get("steps", [])]


def run_text(workflow: dict[str, Any], job: str | None = None) -> str:
    return "\n".join(s.get("run", "") for j, s in steps(workflow) if job in (None, j))


def test_every_action_is_pinned_by_full_commit_sha_with_its_version() -> None:
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert files
    for path in files:
        for line in path.read_text().splitlines():
            match = re.match(r"\s*-?\s*uses:\s*(\S+)(.*)$", line)
            if not match or match.group(1).startswith("./"):
                continue
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", match.group(1)), f"{path.name}: {line.strip()}"
            assert re.fullmatch(r"\s+# v\d+(\.\d+)*", match.group(2)), f"{path.name}: no version comment: {line}"


def test_pull_requests_run_make_test_with_postgres_and_promtool_and_the_chart_checks() -> None:
    (ci,) = [w for w in workflows().values() if "pull_request" in triggers(w)]
    text = run_text(ci)
    assert re.search(r"apt-get install[^\n]*postgresql[^\n]*prometheus", text), "as .ci/run installs them"
    assert re.search(r"^make test\b", text, re.MULTILINE)
    assert "helm lint" in text and "--strict" in text
    assert "helm package" in text


def test_a_version_tag_publishes_a_signed_multi_arch_image_a_chart_and_runs_e2e_first() -> None:
    (rel,) = [w for w in workflows().values() if "tags" in (triggers(w).get("push") or {})]
    assert triggers(rel)["push"]["tags"] == ["v*"]
    assert "scripts/release.py check --tag" in run_text(rel)
    builds = [(job, s) for job, s in steps(rel) if s.get("uses", "").startswith("docker/build-push-action@")]
    (image_job, build), *_ = builds
    options = build["with"]
    assert set(options["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert options["file"] == "Containerfile"
    assert options["sbom"] is True and str(options["provenance"]).startswith("mode=")
    assert "VERSION=" in options["build-args"] and "REVISION=" in options["build-args"]
    assert "${{ steps.meta.outputs.labels }}" in options["labels"]  # OCI labels from docker/metadata-action
    uses = {s.get("uses", "").split("@")[0] for _, s in steps(rel)}
    assert {"docker/setup-qemu-action", "docker/setup-buildx-action", "sigstore/cosign-installer"} <= uses
    assert "cosign sign --yes" in run_text(rel, image_job)
    assert rel["jobs"][image_job]["permissions"]["id-token"] == "write"  # keyless: GitHub OIDC
    assert rel["env"]["IMAGE"] == release.IMAGE_REPOSITORY
    (e2e_job,) = [j for j in rel["jobs"] if re.search(r"^make e2e\b", run_text(rel, j), re.MULTILINE)]
    assert image_job in rel["jobs"][e2e_job]["needs"]
    assert "E2E_BUILD" in json.dumps(rel["jobs"][e2e_job])  # the pushed image, not a rebuild
    (publish_job,) = [j for j in rel["jobs"] if "helm push" in run_text(rel, j)]
    assert e2e_job in rel["jobs"][publish_job]["needs"]  # nothing is tagged before e2e passes
    assert rel["env"]["CHART_REPOSITORY"] == "oci://ghcr.io/optout-dev/charts"
    assert re.search(r'helm push \S+ "\$CHART_REPOSITORY"', run_text(rel, publish_job))
    assert "imagetools create" in run_text(rel, publish_job)
    assert rel.get("permissions") == {"contents": "read"}
