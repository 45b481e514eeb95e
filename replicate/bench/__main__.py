"""`python -m replicate.bench`: see `replicate.bench.run`."""

from replicate.bench.run import main

if __name__ == "__main__":
    main()
