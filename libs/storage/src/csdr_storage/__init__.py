"""The asset store of a CSDR node (see csdr_storage.store)."""
