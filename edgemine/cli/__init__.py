"""The `edgemine` command line: thin wrappers over the library."""
