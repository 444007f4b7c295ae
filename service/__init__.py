"""The meltano-forge HTTP service."""
