"""`python -m replicate <command> ...` is the `replicate` command line (`replicate.cli`);
`python -m replicate key=value ...` (the form before subcommands) is `replicate run key=value ...`."""

import sys

from replicate.cli import main

if __name__ == "__main__":
    status = main()
    if status:  # a Hydra multirun returns here, in-process: exit only to report a failure
        sys.exit(status)
