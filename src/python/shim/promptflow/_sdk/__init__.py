"""`promptflow._sdk`: only what flow code imports from it (`entities`, the connection classes)."""
