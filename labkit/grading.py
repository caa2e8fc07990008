"""Helpers for autograder cells.

:func:`forbid` makes labkit reference functions raise while a student's function runs, so that
calling the reference (under any name) is not a way to pass a hidden test.
"""
from __future__ import annotations

import contextlib
import inspect
import types
from collections.abc import Callable, Iterator

__all__ = ["ForbiddenCall", "forbid"]


class ForbiddenCall(RuntimeError):
    """Raised when graded code calls a reference implementation it must not use."""


_PLACEHOLDER = "<labkit.grading message>"


def _forbidden(*args, **kwargs):
    # Runs with the *reference's* globals once swapped in, so it imports what it needs itself.
    raise __import__("labkit.grading", fromlist=["ForbiddenCall"]).ForbiddenCall("<labkit.grading message>")


def _raiser_code(qualname: str, template: types.CodeType) -> types.CodeType:
    """Code that raises ForbiddenCall naming ``qualname``, shaped to replace ``template``."""
    message = f"{qualname} is the reference solution; the graded code must not call it. Implement the task yourself."
    code = _forbidden.__code__
    consts = tuple(message if c == _PLACEHOLDER else c for c in code.co_consts)
    # A function's code can only be swapped for code with the same free variables.
    return code.replace(co_consts=consts, co_name=template.co_name, co_freevars=template.co_freevars)


def _target_function(ref: Callable) -> types.FunctionType:
    fn = inspect.unwrap(ref)  # through functools.wraps decorators such as torch.no_grad
    if isinstance(fn, (classmethod, staticmethod)):
        fn = fn.__func__
    if isinstance(fn, types.MethodType):
        fn = fn.__func__
    if not isinstance(fn, types.FunctionType):
        raise TypeError(f"forbid() takes Python functions, got {type(ref).__name__}")
    return fn


@contextlib.contextmanager
def forbid(*refs: Callable) -> Iterator[None]:
    """Within the block, calling any of ``refs`` raises :class:`ForbiddenCall`.

    The functions' code objects are swapped, so every alias raises too (``from labkit.x import
    f as g``, a bound method, a decorator wrapping it). Everything is restored on exit.

    Example:
        >>> with forbid(labkit.extraction.solve_logreg):
        ...     W, b = student_solve_logreg(oracle)     # raises if it calls the reference
    """
    targets = [_target_function(r) for r in refs]
    saved = [(fn, fn.__code__) for fn in targets]
    try:
        for fn, code in saved:
            fn.__code__ = _raiser_code(f"{fn.__module__}.{fn.__qualname__}", code)
        yield
    finally:
        for fn, code in saved:
            fn.__code__ = code
