"""Reports: read the run store, never train."""
