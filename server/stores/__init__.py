"""Store interfaces and their embedded backends.

Stages and handlers talk to these protocols only, so a shared backend (Redis, when
``REDIS_URL`` is set) can replace the embedded one without touching them.
"""

from server.stores.base import RateLimitStore, SessionRecord, SessionStore, StoredMessage

__all__ = ["RateLimitStore", "SessionRecord", "SessionStore", "StoredMessage"]
