"""Directory Sync Gateway: SCIM 2.0 ingest, SQL store, GraphQL API."""
