"""Sans-IO provider codecs (no I/O, no trio)."""
