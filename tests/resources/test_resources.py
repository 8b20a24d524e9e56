"""The pure builders: an UnsubscribeSync spec in, the desired child manifests out."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.fixtures.resources import (
    BASE,
    K8S_VERSION,
    NAME,
    NAMESPACE,
    POSTGRES,
    config_of,
    make_spec,
    mounts,
    one,
    pod_spec,
    render,
)
from unsubscribe_sync.api.config import ConfigError, parse_config
from unsubscribe_sync.api.constants import (
    CONFIG_DIR,
    CONFIG_FILE,
    DEFAULT_IMAGE,
    LEDGER_URL_DIR,
    LEDGER_URL_FILE,
    SALESFORCE_CREDENTIALS_DIR,
    SQLITE_DIR,
    SQLITE_URL,
    WEBHOOK_TOKEN_DIR,
    WEBHOOK_TOKEN_FILE,
)
from unsubscribe_sync.api.spec import OptOutTarget
from unsubscribe_sync.resources import ChildNames, desired_children
from unsubscribe_sync.resources.workloads import CONFIG_CHECKSUM_ANNOTATION, DEFAULT_WORKER_RESOURCES


# ---- the set of children per branch of the spec ---------------------------------------------------------
def test_sqlite_mode_children() -> None:
    children = render()
    assert sorted(children) == [
        ("ConfigMap", "acme-config"),
        ("CronJob", "acme-nightly-sync"),
        ("Deployment", "acme-push-worker"),
        ("PersistentVolumeClaim", "acme-ledger"),
        ("Service", "acme-push-worker"),
    ]
    deployment = one(children, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    volume, mount = mounts(deployment)[SQLITE_DIR]
    assert volume["persistentVolumeClaim"] == {"claimName": "acme-ledger"}
    assert not mount.get("readOnly")
    assert LEDGER_URL_DIR not in mounts(deployment)
    config = config_of(children)
    assert config.ledger.url == SQLITE_URL and config.ledger.urlFile is None
    # The nightly job asks the worker: it gets the config and the webhook token, not the volume.
    cron_mounts = mounts(one(children, "CronJob"))
    assert set(cron_mounts) == {CONFIG_DIR, WEBHOOK_TOKEN_DIR, "/tmp"}


def test_sqlite_pvc_takes_size_and_class_from_the_spec() -> None:
    pvc = one(render({"ledger": {"storage": {"size": "5Gi", "storageClassName": "fast"}}}), "PersistentVolumeClaim")
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": "fast",
    }
    assert "storageClassName" not in one(render(), "PersistentVolumeClaim")["spec"]


def test_postgresql_mode_children() -> None:
    children = render(POSTGRES)
    assert ("PersistentVolumeClaim", "acme-ledger") not in children
    deployment = one(children, "Deployment")
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    volume, _ = mounts(deployment)[LEDGER_URL_DIR]
    assert volume["secret"]["secretName"] == "acme-db"
    assert volume["secret"]["items"] == [{"key": "dsn", "path": "url"}]
    assert SQLITE_DIR not in mounts(deployment)
    config = config_of(children)
    assert config.ledger.url is None
    assert str(config.ledger.urlFile) == LEDGER_URL_FILE
    # The nightly job opens the ledger and talks to Salesforce itself.
    cron_mounts = mounts(one(children, "CronJob"))
    assert {LEDGER_URL_DIR, SALESFORCE_CREDENTIALS_DIR, CONFIG_DIR} <= set(cron_mounts)
    assert SQLITE_DIR not in cron_mounts


@pytest.mark.parametrize(("replicas", "has_pdb"), [(1, False), (2, True), (3, True)])
def test_pdb_only_with_several_replicas(replicas: int, has_pdb: bool) -> None:
    children = render(POSTGRES, {"pushWorker": {**BASE["pushWorker"], "replicas": replicas}})
    deployment = one(children, "Deployment")
    assert deployment["spec"]["replicas"] == replicas
    pdbs = [c for (kind, _), c in children.items() if kind == "PodDisruptionBudget"]
    assert bool(pdbs) is has_pdb
    if has_pdb:
        [pdb] = pdbs
        assert pdb["metadata"]["name"] == "acme-push-worker"
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
        assert deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]


@pytest.mark.parametrize(
    ("overlay", "cron_suspended", "worker_replicas"),
    [
        ({}, False, 1),
        ({"nightlySync": {"enabled": False}}, True, 1),
        ({"suspend": True}, True, 0),
        ({"suspend": True, "nightlySync": {"enabled": False}}, True, 0),
    ],
)
def test_nightly_off_and_suspend(overlay: dict[str, Any], cron_suspended: bool, worker_replicas: int) -> None:
    children = render(overlay)
    assert one(children, "CronJob")["spec"]["suspend"] is cron_suspended
    assert one(children, "Deployment")["spec"]["replicas"] == worker_replicas


def test_cronjob_settings() -> None:
    cron = one(render({"nightlySync": {"schedule": "30 2 * * 1-5", "timeZone": "Europe/Paris"}}), "CronJob")
    spec = cron["spec"]
    assert spec["schedule"] == "30 2 * * 1-5"
    assert spec["timeZone"] == "Europe/Paris"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] >= 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    assert container["command"] == ["unsubscribe-sync", "nightly", "--config", CONFIG_FILE]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_cronjob_defaults_to_20_pacific() -> None:
    spec = one(render(), "CronJob")["spec"]
    assert (spec["schedule"], spec["timeZone"]) == ("0 20 * * *", "America/Los_Angeles")


def test_worker_container() -> None:
    children = render(image="registry.example/unsubscribe-sync:1.2.3")
    deployment = one(children, "Deployment")
    [container] = pod_spec(deployment)["containers"]
    assert container["image"] == "registry.example/unsubscribe-sync:1.2.3"
    assert one(children, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example/unsubscribe-sync:1.2.3"
    )
    assert container["command"] == ["unsubscribe-sync", "worker", "--config", CONFIG_FILE]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = one(children, "Service")
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_default_image() -> None:
    [container] = pod_spec(one(render(), "Deployment"))["containers"]
    assert container["image"] == DEFAULT_IMAGE


def test_worker_resources() -> None:
    [container] = pod_spec(one(render(), "Deployment"))["containers"]
    assert container["resources"] == DEFAULT_WORKER_RESOURCES
    given = {"requests": {"cpu": "200m", "memory": "300Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}}
    worker = {"pushWorker": {**BASE["pushWorker"], "resources": given}}
    [container] = pod_spec(one(render(worker), "Deployment"))["containers"]
    assert container["resources"] == given


def test_secrets_are_mounted_by_name() -> None:
    children = render(POSTGRES)
    deployment = one(children, "Deployment")
    worker_mounts = mounts(deployment)
    credentials, _ = worker_mounts[SALESFORCE_CREDENTIALS_DIR]
    assert credentials["secret"]["secretName"] == "acme-salesforce"
    assert "items" not in credentials["secret"]  # every key becomes a file
    token, _ = worker_mounts[WEBHOOK_TOKEN_DIR]
    assert token["secret"] == {
        "secretName": "acme-webhook",
        "defaultMode": 0o440,
        "items": [{"key": "hook-token", "path": "token"}],
    }
    config = config_of(children)
    assert str(config.salesforce.credentialsDir) == SALESFORCE_CREDENTIALS_DIR
    assert str(config.worker.tokenFile) == WEBHOOK_TOKEN_FILE
    for obj in children.values():
        if obj["kind"] in ("Deployment", "CronJob"):
            for container in pod_spec(obj)["containers"]:
                assert "env" not in container and "envFrom" not in container  # no Secret values in the env
                assert all(not m.get("subPath") for m in container["volumeMounts"])  # rotations reach pods


def test_configmap_holds_the_config_and_no_secret_values() -> None:
    children = render(POSTGRES, {"optOutField": {"target": "MarketoSalesOptOut"}})
    config = config_of(children)
    assert config.salesforce.loginUrl == "https://acme.my.salesforce.com"
    assert config.salesforce.objects == ["Contact", "Lead"]
    assert config.optOut.target is OptOutTarget.MARKETO_SALES_OPT_OUT
    assert config.nightly.enabled is True
    assert config.worker.url == "http://acme-push-worker.sales.svc:8080"
    assert config.worker.port == 8080
    text = one(children, "ConfigMap")["data"]["config.yaml"]
    flat = yaml.safe_load(text)
    leaves: list[tuple[str, Any]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else key)
        else:
            leaves.append((path, node))

    walk(flat, "")
    secretish = [(p, v) for p, v in leaves if any(w in p.lower() for w in ("secret", "password", "token", "key"))]
    assert secretish == [("worker.tokenFile", WEBHOOK_TOKEN_FILE)]
    assert "postgresql://" not in text and "acme-db" not in text and "acme-salesforce" not in text


@pytest.mark.parametrize(
    ("overlay", "target", "field"),
    [
        ({}, OptOutTarget.EMAIL_OPT_OUT, None),
        ({"optOutField": {"target": "MarketoSalesOptOut"}}, OptOutTarget.MARKETO_SALES_OPT_OUT, None),
        (
            {"optOutField": {"target": "MarketoSalesOptOut", "marketoSalesOptOutField": "ToutApp__Opt_Out__c"}},
            OptOutTarget.MARKETO_SALES_OPT_OUT,
            "ToutApp__Opt_Out__c",
        ),
    ],
)
def test_target_choice_in_the_config(overlay: dict[str, Any], target: OptOutTarget, field: str | None) -> None:
    config = config_of(render(overlay))
    assert config.optOut.target is target
    assert config.optOut.marketoSalesOptOutField == field


def test_nightly_disabled_reaches_the_config() -> None:
    config = config_of(render({"nightlySync": {"enabled": False}, "optOutField": {"target": "MarketoSalesOptOut"}}))
    assert config.nightly.enabled is False
    assert config.optOut.target is OptOutTarget.MARKETO_SALES_OPT_OUT  # the worker applies seed rule 2


def test_change_guard_reaches_the_config() -> None:
    children = render({"nightlySync": {"maxChangeRatio": 0.25, "maxChanges": 5000}})
    config = config_of(children)
    assert config.nightly.maxChangeRatio == 0.25 and config.nightly.maxChanges == 5000
    flat = yaml.safe_load(one(children, "ConfigMap")["data"]["config.yaml"])
    assert flat["nightly"] == {"enabled": True, "maxChangeRatio": 0.25, "maxChanges": 5000}
    only_count = config_of(render({"nightlySync": {"maxChanges": 0}}))
    assert only_count.nightly.maxChanges == 0 and only_count.nightly.maxChangeRatio is None


def test_no_change_guard_leaves_the_keys_out_of_the_config() -> None:
    children = render()
    flat = yaml.safe_load(one(children, "ConfigMap")["data"]["config.yaml"])
    assert flat["nightly"] == {"enabled": True}
    config = config_of(children)
    assert config.nightly.maxChangeRatio is None and config.nightly.maxChanges is None


@pytest.mark.parametrize(
    ("nightly", "key"),
    [
        ({"maxChangeRatio": 0}, "nightly.maxChangeRatio"),
        ({"maxChangeRatio": 1.5}, "nightly.maxChangeRatio"),
        ({"maxChanges": -1}, "nightly.maxChanges"),
    ],
)
def test_config_rejects_a_bad_change_guard(nightly: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"nightly": nightly})
    assert [k for k, _ in caught.value.problems] == [key]


def test_config_change_rolls_the_deployment() -> None:
    def checksum(*overlays: dict[str, Any]) -> str:
        template = one(render(*overlays), "Deployment")["spec"]["template"]
        return str(template["metadata"]["annotations"][CONFIG_CHECKSUM_ANNOTATION])

    base = checksum()
    assert checksum() == base
    assert checksum({"optOutField": {"target": "MarketoSalesOptOut"}}) != base
    assert checksum({"salesforce": {**BASE["salesforce"], "objects": ["Lead"]}}) != base
    assert checksum({"suspend": True}) == base  # not part of the config


@pytest.mark.parametrize("enabled", [True, False])
def test_service_monitor_toggle(enabled: bool) -> None:
    monitoring = {"serviceMonitor": {"enabled": enabled, "interval": "15s", "labels": {"release": "prom"}}}
    children = render({"monitoring": monitoring})
    monitors = [c for (kind, _), c in children.items() if kind == "ServiceMonitor"]
    assert bool(monitors) is enabled
    if enabled:
        [monitor] = monitors
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "prom"
        assert monitor["metadata"]["labels"]["app.kubernetes.io/component"] == "metrics"
        service = one(children, "Service")
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["port"] == service["spec"]["ports"][0]["name"]
        assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "15s")


@pytest.mark.parametrize("overlay", [{}, POSTGRES])
def test_pods_meet_the_restricted_pod_security_standard(overlay: dict[str, Any]) -> None:
    for obj in render(overlay).values():
        if obj["kind"] not in ("Deployment", "CronJob"):
            continue
        pod = pod_spec(obj)
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] > 0 and context["fsGroup"] > 0
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for volume in pod["volumes"]:  # restricted allows only these volume types
            assert set(volume) - {"name"} <= {"configMap", "secret", "emptyDir", "persistentVolumeClaim"}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["readOnlyRootFilesystem"] is True
            assert security["runAsNonRoot"] is True
            assert security.get("privileged") is not True
            assert "ports" not in container or all("hostPort" not in p for p in container["ports"])
        tmp_volume, tmp_mount = mounts(obj)["/tmp"]
        assert "emptyDir" in tmp_volume and not tmp_mount.get("readOnly")


def test_labels_on_every_child() -> None:
    monitoring = {"monitoring": {"serviceMonitor": {"enabled": True}}}
    components = {
        "ConfigMap": "config",
        "PersistentVolumeClaim": "ledger",
        "Service": "push-worker",
        "Deployment": "push-worker",
        "PodDisruptionBudget": "push-worker",
        "CronJob": "nightly-sync",
        "ServiceMonitor": "metrics",
    }
    for overlays in [(monitoring,), (POSTGRES, {"pushWorker": {**BASE["pushWorker"], "replicas": 2}})]:
        for (kind, _), obj in render(*overlays).items():
            assert obj["metadata"]["namespace"] == NAMESPACE
            assert obj["metadata"]["labels"] == {
                "app.kubernetes.io/name": "unsubscribe-sync",
                "app.kubernetes.io/instance": NAME,
                "app.kubernetes.io/component": components[kind],
                "app.kubernetes.io/managed-by": "unsubscribe-sync-operator",
            }


def test_children_share_no_mutable_objects() -> None:
    """The controller adds owner references and labels in place: no dict may be shared between places."""
    seen: dict[int, str] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict | list):
            assert id(node) not in seen, f"{path} is the same object as {seen[id(node)]}"
            seen[id(node)] = path
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, value in items:
                walk(value, f"{path}/{key}")

    monitoring = {"monitoring": {"serviceMonitor": {"enabled": True}}}
    spec = make_spec(POSTGRES, monitoring, {"pushWorker": {**BASE["pushWorker"], "replicas": 2}})
    for index, obj in enumerate(desired_children(NAME, NAMESPACE, spec)):
        walk(obj, f"{index}:{obj['kind']}")
    assert spec.monitoring.serviceMonitor.labels == {}  # and the spec is left alone


def test_child_names() -> None:
    names = ChildNames("acme")
    assert (names.push_worker, names.nightly_sync, names.config, names.ledger) == (
        "acme-push-worker",
        "acme-nightly-sync",
        "acme-config",
        "acme-ledger",
    )


@pytest.mark.parametrize(
    "overlays",
    [
        (),
        (POSTGRES, {"pushWorker": {**BASE["pushWorker"], "replicas": 3}}),
        ({"nightlySync": {"enabled": False, "schedule": "@daily", "timeZone": "UTC"}}, {"suspend": True}),
        ({"ledger": {"storage": {"storageClassName": "standard", "size": "500Mi"}}},),
    ],
)
def test_every_builtin_child_is_a_valid_kubernetes_object(overlays: tuple[dict[str, Any], ...]) -> None:
    for obj in render(*overlays).values():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
