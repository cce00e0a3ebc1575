"""The WorkOS Directory Sync and Events REST API (``/workos/``): what an application written against the official
WorkOS SDKs calls, served from the gateway's store."""
