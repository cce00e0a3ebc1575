"""``dsync simulate``: a SCIM 2.0 client that plays an identity provider's provisioning session against any
endpoint, so a deployment can be checked end to end (and a dashboard watched filling up) without an IdP account."""
