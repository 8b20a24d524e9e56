"""The project's data models: the UnsubscribeSync spec/status and the config file."""
