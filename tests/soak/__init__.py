"""Soak tests: steady traffic into two workers on one PostgreSQL ledger while faults are injected."""
