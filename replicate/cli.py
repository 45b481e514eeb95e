"""What every command-line entry point shares: a bad input ends the command with one clear line, not a
traceback (`REPLICATE_TRACEBACK=1` shows the traceback too, for bug reports); progress and status messages
go through `logging` (INFO and up on stderr, unless logging is set up already, e.g. by Hydra, which also
writes them to the job log)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

# Errors that describe a bad input or a missing resource; their messages name the value and the fix.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError, KeyError)


def user_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run `function`; a user error prints `error: <message>` on stderr and exits with status 2."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not logging.getLogger().handlers:  # Hydra apps arrive with their logging set up
            logging.basicConfig(level=logging.INFO, format="%(message)s")
        try:
            return function(*args, **kwargs)
        except USER_ERRORS as error:
            if os.environ.get("REPLICATE_TRACEBACK") not in (None, "", "0"):
                raise
            message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
            print(
                f"error: {message or type(error).__name__}  [REPLICATE_TRACEBACK=1 shows where]",
                file=sys.stderr,
            )
            sys.exit(2)

    return wrapper
