"""The event log and what follows it: typed payloads, recording and reading, the notifier, the hub."""
