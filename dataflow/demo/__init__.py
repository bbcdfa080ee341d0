"""A Data Hub-like source API for demos, tests and benchmarks."""
