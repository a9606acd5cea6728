"""Pure rules: no sockets, no database, no clock reads (tests/unit/test_layers.py checks)."""
