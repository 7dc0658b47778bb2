"""Benchmarks of the weirflow runtime against plain asyncio; run ``python -m benchmarks.run``."""
