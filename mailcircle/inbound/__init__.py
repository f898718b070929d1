"""The inbound side: spool, SMTP/LMTP edge, parsing, routing and the worker."""
