"""The store, the lowest layer: tables, the database handle, ids, secrets and the JSON codec. It imports nothing of
the gateway above it (events, ops, GraphQL, observability) nor of ``scim``, and no web framework."""
