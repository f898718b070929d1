"""The outbound side: compose (Jinja -> EmailMessage), outbox (queued with the change), deliver."""
