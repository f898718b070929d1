"""The outbound side: compose (Jinja -> MIME), outbox (queued with the change), deliver."""
