"""One call = one Trio nursery: the session, its agent API, the playout ledger, transports."""
