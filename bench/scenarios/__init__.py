"""One module per scenario; each adds rows to a `bench.harness.Bench`."""
