"""Webhooks: the event log pushed to each endpoint's URL as signed WorkOS-style deliveries, in cursor order, at
least once, by a background worker that shares delivery with other instances through a lease on each endpoint.

``signing`` builds the body and the ``WorkOS-Signature`` header, ``delivery`` makes one HTTP attempt, ``leases`` is
the worker's side of the store (claim, advance, fail), ``worker`` runs it all.
"""
