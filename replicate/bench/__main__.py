"""`python -m replicate.bench` (`replicate bench`): see `replicate.bench.run`."""

import sys

from replicate.bench.run import main

if __name__ == "__main__":
    sys.exit(main())
