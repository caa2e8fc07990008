"""Helpers for autograder cells.

:func:`forbid` makes labkit reference functions raise while a student's function runs, so that
calling the reference (under any name) is not a way to pass a hidden test; and it refuses to start
when the notebook holds a *copy* of a reference: a function whose code object is the reference's,
or whose bytecode is the same (pasted source, ``types.FunctionType(ref.__code__, ...)``, a
wrapper that closes over such a copy), or, for references of at least ``MIN_NORMALIZED_OPS``
instructions, the same up to local variable names and messages. Either way the test cell fails
and the task scores 0.
"""
from __future__ import annotations

import contextlib
import dis
import functools
import inspect
import sys
import types
from collections.abc import Callable, Iterator

__all__ = ["ForbiddenCall", "CopiedReference", "forbid", "find_copies", "reference_or", "autograding"]


class ForbiddenCall(RuntimeError):
    """Raised when graded code calls a reference implementation it must not use."""


class CopiedReference(RuntimeError):
    """Raised when the graded notebook holds a copy of a reference implementation's code."""


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    """``code`` and the named functions defined in it (not comprehensions or lambdas: short
    expressions that honest code may well share with a reference)."""
    if not code.co_name.startswith("<"):
        yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


_SKIP_OPS = {"CACHE", "RESUME", "PRECALL", "PUSH_NULL", "NOP", "KW_NAMES", "EXTENDED_ARG", "COPY_FREE_VARS", "MAKE_CELL"}
_SAME_OPS = {"LOAD_METHOD": "LOAD_ATTR", "CALL_METHOD": "CALL", "CALL_FUNCTION": "CALL", "CALL_FUNCTION_KW": "CALL"}


_LOCAL_OPS = ("_FAST", "_DEREF", "LOAD_CLOSURE")


def _fingerprint(code: types.CodeType, *, normalized: bool = False) -> tuple:
    """What makes two code objects the same program: the instructions with the names and constants
    they use, spelled the same way however the compiler chose to encode a call (not the docstring,
    file name or line numbers).

    ``normalized=True`` also forgets what a copier changes cheaply: local variable names become
    their order of first use, and string constants (messages) become one placeholder. Globals,
    attributes, numbers and the instructions themselves still have to match.
    """
    ops = []
    local_ids: dict[str, int] = {}
    doc = code.co_consts[0] if code.co_consts and isinstance(code.co_consts[0], str) else None
    for ins in dis.get_instructions(code):
        if ins.opname in _SKIP_OPS:
            continue
        arg = ins.argval
        if isinstance(arg, types.CodeType):
            arg = _fingerprint(arg, normalized=normalized)
        elif ins.opname.startswith(("JUMP", "POP_JUMP", "FOR_ITER", "SEND")) or "JUMP" in ins.opname:
            arg = None  # offsets move with the encoding
        elif normalized and ins.opname.endswith(_LOCAL_OPS) and isinstance(arg, str):
            arg = local_ids.setdefault(arg, len(local_ids))
        elif normalized and ins.opname == "LOAD_CONST" and isinstance(arg, str) and arg != doc:
            arg = "<str>"
        elif not isinstance(arg, (str, int, float, bool, bytes, type(None), tuple, frozenset)):
            arg = repr(arg)
        ops.append((_SAME_OPS.get(ins.opname, ins.opname), arg))
    return tuple(op for op in ops if op != ("LOAD_CONST", doc) or doc is None)


# A copy with its local names or messages changed counts only for references at least this long
# (instructions): short helpers written independently may well agree up to their names.
MIN_NORMALIZED_OPS = 100


def _functions_in(obj, depth: int = 0) -> Iterator[types.FunctionType]:
    """Functions reachable from a namespace value: itself, a partial's target, a class's methods,
    what a wrapper wraps, what a closure or a default argument holds."""
    if depth > 3:
        return
    fn = obj
    if isinstance(fn, (staticmethod, classmethod)):
        fn = fn.__func__
    if isinstance(fn, types.MethodType):
        fn = fn.__func__
    if isinstance(fn, functools.partial):
        yield from _functions_in(fn.func, depth + 1)
        return
    if isinstance(fn, type):
        for member in vars(fn).values():
            yield from _functions_in(member, depth + 1)
        return
    if isinstance(fn, types.FunctionType):
        yield fn
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is not None:
            yield from _functions_in(wrapped, depth + 1)
        for cell in fn.__closure__ or ():
            try:
                yield from _functions_in(cell.cell_contents, depth + 1)
            except ValueError:  # an empty cell
                continue
        for default in (*(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).values()):
            yield from _functions_in(default, depth + 1)


def find_copies(namespace: dict, refs: list[types.FunctionType]) -> list[str]:
    """Names in ``namespace`` bound to functions that reuse a reference's code (not the reference itself)."""
    ref_ids = {id(r) for r in refs}
    # the references' own bodies only: their small nested helpers could match honest code
    ref_codes = {id(r.__code__): r for r in refs}
    ref_prints = {_fingerprint(r.__code__): r for r in refs}
    ref_shapes = {fp: r for r in refs if len(fp := _fingerprint(r.__code__, normalized=True)) >= MIN_NORMALIZED_OPS}
    found = []
    for name, value in list(namespace.items()):
        if name.startswith("__"):
            continue
        for fn in _functions_in(value):
            if id(fn) in ref_ids or fn.__module__ == __name__:
                continue  # the reference itself (calling it raises ForbiddenCall) or labkit.grading
            nested = list(_code_objects(fn.__code__))
            if any(id(c) in ref_codes for c in nested[1:]):
                continue  # the function that defines a (local) reference, not a copy of it
            for code in nested:
                ref = (ref_codes.get(id(code)) or ref_prints.get(_fingerprint(code))
                       or (ref_shapes.get(_fingerprint(code, normalized=True)) if ref_shapes else None))
                if ref is not None:
                    found.append(f"{name} (the code of {ref.__module__}.{ref.__qualname__})")
                    break
    return sorted(set(found))


def _caller_namespace() -> dict:
    """The globals of the code that entered ``with forbid(...)`` (the notebook's namespace)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") in (__name__, "contextlib"):
        frame = frame.f_back
    return frame.f_globals if frame is not None else {}


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
    f as g``, a bound method, a decorator wrapping it). Everything is restored on exit. Before the
    block starts, the caller's namespace is searched for copies of the references' code
    (:func:`find_copies`): a copy raises :class:`CopiedReference`.

    Example:
        >>> with forbid(labkit.extraction.solve_logreg):
        ...     W, b = student_solve_logreg(oracle)     # raises if it calls the reference
    """
    targets = [_target_function(r) for r in refs]
    copies = find_copies(_caller_namespace(), targets)
    if copies:
        raise CopiedReference(
            "the graded code holds a copy of a reference implementation: " + ", ".join(copies)
            + ". Copying, wrapping or re-binding labkit's reference code scores 0; implement the task yourself."
        )
    saved = [(fn, fn.__code__) for fn in targets]
    try:
        for fn, code in saved:
            fn.__code__ = _raiser_code(f"{fn.__module__}.{fn.__qualname__}", code)
        yield
    finally:
        for fn, code in saved:
            fn.__code__ = code


def reference_or(reference: Callable, yours: Callable) -> Callable:
    """``reference`` in the course's full labkit, ``yours`` in the student edition.

    A visible test that needs a *second* graded function (a key to test Verify with) takes it
    from here: under the grader, which always runs the full labkit, it is the reference, so that the
    test grades one function alone; in the student edition, where the reference is left to the
    student, it is the student's own.

    Example:
        >>> make_key = reference_or(wm.keygen, keygen)
    """
    import labkit

    return reference if getattr(labkit, "EDITION", "full") == "full" else yours


def autograding() -> bool:
    """True while nbgrader executes the notebook to grade it or to validate it (it sets
    ``NBGRADER_EXECUTION`` to ``autograde`` or ``validate``).

    Cells that only illustrate (a long sweep, a big table) check it to run smaller or not at all
    under the grader, and under the student's Validate button, which runs the same tests; no graded
    result may depend on it.
    """
    import os

    return os.environ.get("NBGRADER_EXECUTION") in ("autograde", "validate")
