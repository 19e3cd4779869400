"""Per-API-key rate limits: requests and tokens per minute and concurrent streams, shared by every replica
through Redis (``redis_url``) or the database."""
