"""The public surface the builders render from spec.publicEndpoint and spec.oneClick: the Service port `public`,
the worker's public listener and one-click config, the Ingress and the NetworkPolicy (valid Kubernetes objects)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.fixtures.resources import K8S_VERSION, NAME, NAMESPACE, config_of, mounts, one, render
from unsubscribe_sync.api.constants import ONE_CLICK_KEYS_DIR, ONE_CLICK_KEYS_FILE, PUBLIC_PORT, WORKER_PORT

ENDPOINT: dict[str, Any] = {"publicEndpoint": {"baseUrl": "https://unsub.acme.example"}}
WITH_INGRESS: dict[str, Any] = {
    "publicEndpoint": {
        "baseUrl": "https://unsub.acme.example",
        "ingress": {
            "className": "nginx",
            "host": "unsub.acme.example",
            "tlsSecretName": "unsub-tls",
            "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
        },
    }
}
ONE_CLICK: dict[str, Any] = {"oneClick": {"keySecretRef": {"name": "acme-oneclick"}}}


def test_without_a_public_endpoint_there_is_no_public_surface() -> None:
    children = render()
    assert {kind for kind, _ in children} & {"Ingress", "NetworkPolicy"} == set()
    assert [p["name"] for p in one(children, "Service")["spec"]["ports"]] == ["http"]
    config = config_of(children)
    assert config.worker.publicListen is None and config.oneClick.keyFile is None


@pytest.mark.parametrize("overlays", [[ENDPOINT], [WITH_INGRESS, ONE_CLICK]], ids=["endpoint", "ingress+one-click"])
def test_every_public_child_is_valid_kubernetes(overlays: list[dict[str, Any]]) -> None:
    for child in render(*overlays).values():
        kubernetes_validate.validate(child, K8S_VERSION, strict=True)


def test_service_and_container_expose_the_public_port() -> None:
    children = render(ENDPOINT)
    ports = {p["name"]: p for p in one(children, "Service")["spec"]["ports"]}
    assert ports["public"] == {"name": "public", "port": PUBLIC_PORT, "targetPort": "public", "protocol": "TCP"}
    assert ports["http"]["port"] == WORKER_PORT
    [container] = one(children, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert {"name": "public", "containerPort": PUBLIC_PORT, "protocol": "TCP"} in container["ports"]
    assert config_of(children).worker.publicListen == f"0.0.0.0:{PUBLIC_PORT}"


def test_ingress_routes_only_the_public_paths_to_the_public_port() -> None:
    ingress = one(render(WITH_INGRESS), "Ingress")
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["unsub.acme.example"], "secretName": "unsub-tls"}]
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "unsub.acme.example"
    assert sorted(p["path"] for p in rule["http"]["paths"]) == ["/u/", "/v1/webhooks/"]
    for path in rule["http"]["paths"]:
        assert path["backend"]["service"] == {"name": f"{NAME}-push-worker", "port": {"name": "public"}}


def test_ingress_without_class_or_tls_leaves_them_out() -> None:
    bare = {"publicEndpoint": {"baseUrl": "https://u.example", "ingress": {"host": "u.example"}}}
    ingress = one(render(bare), "Ingress")
    assert "ingressClassName" not in ingress["spec"] and "tls" not in ingress["spec"]
    assert "annotations" not in ingress["metadata"]


def test_network_policy_opens_the_public_port_to_all_and_the_internal_one_to_the_cluster() -> None:
    policy = one(render(ENDPOINT), "NetworkPolicy")
    assert policy["metadata"]["namespace"] == NAMESPACE
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "push-worker"
    public, internal = policy["spec"]["ingress"]
    assert public == {"ports": [{"protocol": "TCP", "port": PUBLIC_PORT}]}  # no "from": anyone
    assert internal["from"] == [{"namespaceSelector": {}}]
    assert internal["ports"] == [{"protocol": "TCP", "port": WORKER_PORT}]


def test_one_click_keys_are_mounted_by_name_and_reach_the_config() -> None:
    children = render(ENDPOINT, ONE_CLICK)
    volume, mount = mounts(one(children, "Deployment"))[ONE_CLICK_KEYS_DIR]
    assert volume["secret"]["secretName"] == "acme-oneclick"
    assert volume["secret"]["items"] == [{"key": "keys", "path": "keys"}]
    assert mount["readOnly"] is True
    config = config_of(children)
    assert str(config.oneClick.keyFile) == ONE_CLICK_KEYS_FILE
    assert config.oneClick.baseUrl == "https://unsub.acme.example"


def test_render_command_prints_a_valid_public_surface() -> None:
    import yaml

    from tests.fixtures.commands import GOOD, run_render

    cr = GOOD + (
        "  publicEndpoint:\n"
        "    baseUrl: https://unsub.acme.example\n"
        "    ingress: {className: nginx, host: unsub.acme.example, tlsSecretName: unsub-tls}\n"
        "  oneClick:\n"
        "    keySecretRef: {name: acme-oneclick}\n"
    )
    result = run_render("-f", "-", stdin=cr)
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    kinds = [d["kind"] for d in docs]
    assert kinds[-2:] == ["NetworkPolicy", "Ingress"]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    refused = run_render("-f", "-", stdin=GOOD + "  oneClick:\n    keySecretRef: {name: acme-oneclick}\n")
    assert refused.returncode != 0 and "publicEndpoint" in refused.stderr
