"""HTTP layer: thin routes over the mining library."""
