"""The thin client: workspace, runner and the `meltano-forge` CLI."""
