"""One module per schema revision, oldest first (file names sort by revision number)."""
