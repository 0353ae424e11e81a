"""Errors raised inside pandas UDFs reach the driver wrapped in Spark's PythonException, with a
worker traceback around them; these helpers re-raise them as the project's own error types."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.errors import PythonException


@contextmanager
def udf_errors(*error_types: type[Exception]) -> Iterator[None]:
    """Re-raise a UDF failure of one of ``error_types`` as that type, with its own message."""
    try:
        yield
    except PythonException as exc:
        text = str(exc)
        for error_type in error_types:
            marker = f"{error_type.__name__}: "
            if marker in text:
                message = text[text.rindex(marker) + len(marker) :].splitlines()[0]
                raise error_type(message) from None
        raise
