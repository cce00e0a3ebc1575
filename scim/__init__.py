"""SCIM 2.0 ingest (RFC 7643 / RFC 7644): routes, discovery, filters, patch, resource mapping, errors."""
