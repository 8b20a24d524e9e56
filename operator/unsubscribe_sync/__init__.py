"""Keep email unsubscribes in sync with Salesforce Contact and Lead opt-out fields."""

__version__ = "0.1.0"
