"""The HTTP receiver: Segment webhooks and Tracking API calls -> the durable spool.

Modules, one job each: ``app`` (ASGI routing and status codes), ``auth`` (signatures, write keys), ``body``
(bounded reading, gzip), ``tracking`` (Segment's server-side fields), ``intake``
(events -> spool records), ``committer`` (group commit to the spool), ``server`` (``serve``).
"""
