"""bench: does it help? Benchmarks and simulations."""
