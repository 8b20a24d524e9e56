"""The kopf operator: reconcile UnsubscribeSync objects into their children, repair drift, report status.

Pure decisions live in ``children`` (what to write), ``conditions`` (status from gathered inputs) and
``nightly`` (the last nightly run from a Job and its pod); ``handlers`` wires them to kopf; ``kubeapi``
is the thin HTTP client the handlers write with.
"""
