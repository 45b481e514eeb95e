"""`python -m replicate.report <dir>`: see `replicate.report.write`."""

from replicate.report.write import main

if __name__ == "__main__":
    main()
