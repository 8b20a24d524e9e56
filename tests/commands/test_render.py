"""`unsubscribe-sync render`: the command line, run as a user runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.fixtures.commands import GOOD, REPO, run_render


def write(tmp_path: Path, text: str, name: str = "cr.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_render_from_stdin_with_an_image(tmp_path: Path) -> None:
    result = run_render("-f", "-", "--image", "registry.example/usync:9", stdin=GOOD)
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in docs] == ["ConfigMap", "PersistentVolumeClaim", "Service", "Deployment", "CronJob"]
    deployment = docs[3]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/usync:9"
    # Defaults were applied as the API server would: the schedule, zone and field target.
    cron = docs[4]
    assert (cron["spec"]["schedule"], cron["spec"]["timeZone"]) == ("0 20 * * *", "America/Los_Angeles")
    assert yaml.safe_load(docs[0]["data"]["config.yaml"])["optOut"]["target"] == "EmailOptOut"
    assert "&id" not in result.stdout  # plain YAML, no anchors


def test_render_carries_the_change_guard_into_the_config(tmp_path: Path) -> None:
    text = GOOD.replace("pushWorker:", "nightlySync: {maxChangeRatio: 0.1, maxChanges: 20000}\n  pushWorker:")
    result = run_render("-f", write(tmp_path, text))
    assert result.returncode == 0, result.stderr
    config_map = next(d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "ConfigMap")
    nightly = yaml.safe_load(config_map["data"]["config.yaml"])["nightly"]
    assert nightly == {"enabled": True, "maxChangeRatio": 0.1, "maxChanges": 20000}


def test_render_namespace_option_applies_when_the_cr_has_none(tmp_path: Path) -> None:
    cr = GOOD.replace("metadata: {name: acme, namespace: sales}", "metadata: {name: acme}")
    result = run_render("-f", write(tmp_path, cr), "-n", "team-a")
    assert result.returncode == 0, result.stderr
    assert {d["metadata"]["namespace"] for d in yaml.safe_load_all(result.stdout)} == {"team-a"}
    result = run_render("-f", write(tmp_path, GOOD), "-n", "team-a")
    assert {d["metadata"]["namespace"] for d in yaml.safe_load_all(result.stdout)} == {"sales"}


def test_render_crd_matches_the_committed_file() -> None:
    result = run_render("--crd")
    assert result.returncode == 0
    assert result.stdout == (REPO / "crds" / "optout.dev_unsubscribesyncs.yaml").read_text()


def test_render_several_documents(tmp_path: Path) -> None:
    second = GOOD.replace("name: acme,", "name: beta,")
    result = run_render("-f", write(tmp_path, GOOD + "---\n" + second))
    assert result.returncode == 0, result.stderr
    instances = {d["metadata"]["labels"]["app.kubernetes.io/instance"] for d in yaml.safe_load_all(result.stdout)}
    assert instances == {"acme", "beta"}


BAD_CASES = [
    pytest.param(
        GOOD.replace("pushWorker:", "optOutField: {target: Marketo}\n  pushWorker:"),
        "spec.optOutField.target: must be one of EmailOptOut, MarketoSalesOptOut",
        id="target-enum",
    ),
    pytest.param(
        GOOD.replace(
            "webhookSecretRef: {name: acme-webhook}", "webhookSecretRef: {name: acme-webhook}\n    replicas: 3"
        ),
        "spec.pushWorker.replicas: a SQLite ledger",
        id="sqlite-needs-one-replica",
    ),
    pytest.param(
        GOOD.replace("credentialsSecretRef: {name: acme-salesforce}", "loginUrl: http://login.salesforce.com"),
        "spec.salesforce.credentialsSecretRef: required field is missing",
        id="missing-credentials",
    ),
    pytest.param(
        GOOD.replace("salesforce:", "salesforce:\n    loginUrl: http://login.salesforce.com"),
        "spec.salesforce.loginUrl: invalid value",
        id="http-login-url",
    ),
    pytest.param(
        GOOD.replace("pushWorker:", "nightly: {enabled: false}\n  pushWorker:"),
        "spec.nightly: unknown field",
        id="unknown-field",
    ),
    pytest.param(
        GOOD.replace("salesforce:", "salesforce:\n    objects: [Contact, Account]"),
        "spec.salesforce.objects[1]: must be one of Contact, Lead",
        id="object-enum",
    ),
    pytest.param(
        GOOD.replace("pushWorker:", "nightlySync: {timeZone: Pacific/Nowhere}\n  pushWorker:"),
        "spec.nightlySync.timeZone: unknown time zone",
        id="time-zone",
    ),
    pytest.param(
        GOOD.replace("pushWorker:", "optOutField: {marketoSalesOptOutField: Opt_Out__c}\n  pushWorker:"),
        "spec.optOutField.marketoSalesOptOutField: can only be set when target is MarketoSalesOptOut",
        id="marketo-field-without-target",
    ),
    pytest.param(
        GOOD.replace("pushWorker:", "nightlySync: {maxChangeRatio: 0}\n  pushWorker:"),
        "spec.nightlySync.maxChangeRatio: must be greater than 0, not 0",
        id="guard-ratio-zero",
    ),
    pytest.param(
        GOOD.replace("pushWorker:", "nightlySync: {maxChangeRatio: 1.5}\n  pushWorker:"),
        "spec.nightlySync.maxChangeRatio: must be at most 1, not 1.5",
        id="guard-ratio-over-one",
    ),
    pytest.param(
        GOOD.replace("pushWorker:", "nightlySync: {maxChangeRatio: '10%'}\n  pushWorker:"),
        "spec.nightlySync.maxChangeRatio: must be",
        id="guard-ratio-string",
    ),
    pytest.param(
        GOOD.replace("pushWorker:", "nightlySync: {maxChanges: -1}\n  pushWorker:"),
        "spec.nightlySync.maxChanges: must be at least 0, not -1",
        id="guard-count-negative",
    ),
    pytest.param(
        GOOD.replace("pushWorker:", "nightlySync: {maxChanges: 2.5}\n  pushWorker:"),
        "spec.nightlySync.maxChanges: must be",
        id="guard-count-fraction",
    ),
    pytest.param(GOOD.replace("kind: UnsubscribeSync", "kind: Deployment"), "kind: must be UnsubscribeSync", id="kind"),
    pytest.param(GOOD.replace("name: acme,", "name: Acme_Inc,"), "metadata.name: must be a DNS-1035 label", id="name"),
    pytest.param("spec: [1, 2\n", "not valid YAML", id="yaml"),
    pytest.param("# nothing\n", "no UnsubscribeSync manifest found", id="empty"),
    pytest.param(GOOD + "---\n" + GOOD.replace("acme-webhook}", "''}"), "document 2: spec.pushWorker", id="2nd-doc"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CASES)
def test_bad_cr_is_rejected_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    result = run_render("-f", path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert result.stderr.startswith(f"error: {path}: ")
    assert "Traceback" not in result.stderr


def test_missing_file(tmp_path: Path) -> None:
    result = run_render("-f", str(tmp_path / "nope.yaml"))
    assert (result.returncode, result.stdout) == (2, "")
    assert "cannot read" in result.stderr


def test_render_needs_a_source() -> None:
    result = run_render()
    assert result.returncode == 2  # argparse usage error
    assert "-f" in result.stderr
