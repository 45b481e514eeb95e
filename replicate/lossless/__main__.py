"""`python -m replicate.lossless`: see `replicate.lossless`."""

import sys

from replicate.lossless.cli import main

sys.exit(main())
