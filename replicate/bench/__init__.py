"""`python -m replicate.bench`: speed you can trust and explain (see `replicate.bench.run`)."""
