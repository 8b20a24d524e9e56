"""Shared pytest configuration; fixtures live in tests/fixtures/ (one module per service)."""

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.postgres",
    "tests.fixtures.sandbox",
    "tests.fixtures.kube",
    "tests.fixtures.ledgers",
    "tests.fixtures.nightly",
    "tests.fixtures.worker",
]
