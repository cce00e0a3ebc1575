"""Operator operations (organizations, directories, API keys) as plain functions over a sync ``Session``, shared by
the CLI, the GraphQL API and the server's start-up (admin keys). They use only ``gateway.store`` and
``gateway.events``."""
