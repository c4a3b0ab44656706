"""Durable Streams: ElectricSQL's protocol for streams the application writes, on the same
Redis Streams, hub and admin views as generations (``/v1/ds/{path}``)."""
