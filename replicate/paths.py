"""Where the project's configs live."""

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
