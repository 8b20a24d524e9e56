"""spec.senders: each sender's Secret is mounted as a file into the worker pod and the config names the file
(senders.<name>.*File); no secret value reaches the ConfigMap; the rendered objects are valid Kubernetes."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.fixtures.api import problems_for
from tests.fixtures.commands import GOOD, run_render
from tests.fixtures.resources import K8S_VERSION, config_of, mounts, one, render
from unsubscribe_sync.resources.senders import SENDERS_DIR

ENDPOINT: dict[str, Any] = {"publicEndpoint": {"baseUrl": "https://unsub.acme.example"}}
SENDERS: dict[str, Any] = {
    "senders": {
        "sendgrid": {"publicKeySecretRef": {"name": "sendgrid-webhook", "key": "public-key"}},
        "mailgun": {"signingKeySecretRef": {"name": "mailgun-webhook", "key": "signing-key"}},
        "postmark": {"basicAuthSecretRef": {"name": "postmark-webhook", "key": "auth"}},
        "mandrill": {
            "webhookKeySecretRef": {"name": "mandrill-webhook", "key": "key"},
            "url": "https://unsub.acme.example/v1/webhooks/mandrill",
        },
        "ses": {
            "topicArns": ["arn:aws:sns:eu-west-1:123456789012:ses-complaints"],
            "certHostPattern": r"^sns\.eu-west-1\.amazonaws\.com$",
            "caSecretRef": {"name": "proxy-ca", "key": "ca.crt"},
        },
    }
}


def test_without_senders_the_config_has_none_and_nothing_is_mounted() -> None:
    children = render(ENDPOINT)
    assert SENDERS_DIR not in " ".join(mounts(one(children, "Deployment")))
    senders = config_of(children).senders
    assert (senders.sendgrid, senders.mailgun, senders.postmark, senders.mandrill, senders.ses) == (None,) * 5


@pytest.mark.parametrize(
    ("sender", "secret", "key", "config_key"),
    [
        ("sendgrid", "sendgrid-webhook", "public-key", "publicKeyFile"),
        ("mailgun", "mailgun-webhook", "signing-key", "signingKeyFile"),
        ("postmark", "postmark-webhook", "auth", "basicAuthFile"),
        ("mandrill", "mandrill-webhook", "key", "webhookKeyFile"),
        ("ses", "proxy-ca", "ca.crt", "caFile"),
    ],
)
def test_each_sender_secret_is_mounted_and_named_in_the_config(
    sender: str, secret: str, key: str, config_key: str
) -> None:
    children = render(ENDPOINT, SENDERS)
    path = str(getattr(getattr(config_of(children).senders, sender), config_key))
    directory, file = path.rsplit("/", 1)
    volume, mount = mounts(one(children, "Deployment"))[directory]
    assert volume["secret"]["secretName"] == secret
    assert volume["secret"]["items"] == [{"key": key, "path": file}]
    assert mount["readOnly"] is True


def test_mandrill_url_and_ses_settings_reach_the_config() -> None:
    senders = config_of(render(ENDPOINT, SENDERS)).senders
    assert senders.mandrill is not None and senders.ses is not None
    assert senders.mandrill.url == "https://unsub.acme.example/v1/webhooks/mandrill"
    assert senders.ses.topicArns == ["arn:aws:sns:eu-west-1:123456789012:ses-complaints"]
    assert senders.ses.certHostPattern == r"^sns\.eu-west-1\.amazonaws\.com$"


def test_ses_without_ca_uses_the_default_pattern_and_mounts_nothing() -> None:
    ses = {"senders": {"ses": {"topicArns": ["arn:aws:sns:us-east-1:1:t"]}}}
    children = render(ENDPOINT, ses)
    config = config_of(children).senders.ses
    assert config is not None and config.caFile is None
    assert config.certHostPattern == r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"
    assert not any(SENDERS_DIR in m for m in mounts(one(children, "Deployment")))


def test_no_secret_value_or_name_goes_inline_into_the_config_map() -> None:
    children = render(ENDPOINT, SENDERS)
    text = yaml.safe_dump(one(children, "ConfigMap")["data"])
    for name in ("sendgrid-webhook", "mailgun-webhook", "postmark-webhook", "mandrill-webhook", "proxy-ca"):
        assert name not in text


def test_the_nightly_pod_does_not_get_the_sender_secrets() -> None:
    children = render(ENDPOINT, SENDERS)
    assert not any(SENDERS_DIR in m for m in mounts(one(children, "CronJob")))


def test_senders_need_a_public_endpoint() -> None:
    [problem] = problems_for({"senders": {"mailgun": {"signingKeySecretRef": {"name": "m", "key": "k"}}}})
    assert "spec.senders" in problem and "publicEndpoint" in problem


def test_render_command_prints_valid_objects_with_senders() -> None:
    cr = GOOD + (
        "  publicEndpoint:\n"
        "    baseUrl: https://unsub.acme.example\n"
        "  senders:\n"
        "    sendgrid: {publicKeySecretRef: {name: sendgrid-webhook, key: public-key}}\n"
        "    mandrill:\n"
        "      webhookKeySecretRef: {name: mandrill-webhook, key: key}\n"
        "      url: https://unsub.acme.example/v1/webhooks/mandrill\n"
        "    ses: {topicArns: ['arn:aws:sns:eu-west-1:123456789012:ses-complaints']}\n"
    )
    result = run_render("-f", "-", stdin=cr)
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    [config_map] = [d for d in docs if d["kind"] == "ConfigMap"]
    config = yaml.safe_load(next(iter(config_map["data"].values())))
    assert config["senders"]["sendgrid"]["publicKeyFile"].startswith(SENDERS_DIR)
    assert config["senders"]["mandrill"]["url"] == "https://unsub.acme.example/v1/webhooks/mandrill"
    assert "caFile" not in config["senders"]["ses"]
    refused = run_render("-f", "-", stdin=GOOD + "  senders:\n    mailgun: {signingKeySecretRef: {name: m, key: k}}\n")
    assert refused.returncode != 0 and "publicEndpoint" in refused.stderr
