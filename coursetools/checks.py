"""Hidden checks that run outside the student's process: the grader asks, the kernel answers with data.

A lab's hidden checks live in ``solutions/<lab>/hidden_checks.py``, next to its source notebook.
nbgrader never copies that file (``CourseDirectory.ignore`` in ``nbgrader_config.py``), so it is in
no released or autograded notebook, and the student's kernel never sees its text. A check is a
function of a :class:`Kernel`, registered for the grade cell whose points it guards::

    from coursetools.checks import check

    @check("test_add")
    def add_on_negative_numbers(kernel):
        got = kernel.call("add", -7, 12)            # runs the student's add in their kernel
        assert got == 5, f"add(-7, 12) returned {got!r}"

:class:`coursetools.sandbox.SandboxExecute` runs every check of the lab once the notebook has run
to its end (so no cell of the student's runs after a check and could print what a check sent).
``Kernel.call`` sends the student's function's name and its arguments, encoded as plain data
(:func:`encode`), to the sandboxed kernel; a small routine there calls the function and sends the
result back as data; :func:`decode` turns it into plain Python values, plain ``torch.Tensor`` and
:class:`Record` objects, and nothing else (no pickle, nothing that runs code when read: a float
subclass, an object equal to anything or a tensor subclass does not survive the trip). The check
computes what it compares with (the labkit reference, imported here, in the grader's process, which
never runs student code) and asserts. A check that fails, or a call that fails, hangs, raises or
returns something unreadable, puts an error in its grade cell (0 points for that cell) whose
message is the checker's; the other checks go on.
"""
from __future__ import annotations

import base64
import dataclasses
import importlib.util
import json
import math
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["check", "Check", "Kernel", "Record", "CallFailed", "StudentError", "CheckProtocolError",
           "encode", "decode", "load_checks", "run_check", "secret_lines", "CHECKS_FILE", "MIMETYPE"]

CHECKS_FILE = "hidden_checks.py"
MIMETYPE = "application/vnd.mlsec.result+json"
DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
MAX_BYTES = 64 * 2**20  # what one answer of the kernel may weigh, encoded


class CheckProtocolError(ValueError):
    """Data that is not in the checker's format (from a kernel, or handed to encode)."""


class CallFailed(RuntimeError):
    """A call into the student's kernel did not come back with an answer (timeout, dead kernel,
    an answer that is not data)."""


class StudentError(RuntimeError):
    """The student's function raised; ``ename`` and ``evalue`` are what the kernel said."""

    def __init__(self, ename: str, evalue: str):
        super().__init__(f"{ename}: {evalue}")
        self.ename, self.evalue = ename, evalue


class Record:
    """A dataclass the student's function returned, as its fields (read-only attributes)."""

    def __init__(self, name: str, fields: dict):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_fields", dict(fields))

    def __getattr__(self, field):
        try:
            return self._fields[field]
        except KeyError:
            raise AttributeError(f"{self._name} has no field {field!r} (fields: {sorted(self._fields)})") from None

    def __setattr__(self, *_):
        raise AttributeError("a Record is read-only")

    def __repr__(self):
        return f"{self._name}({', '.join(sorted(self._fields))})"


# ------------------------------------------------------------------------------------ the format
def encode(value) -> object:
    """``value`` as JSON-ready data: None, bools, ints, floats, strings, lists, tuples, dicts,
    tensors and numpy arrays (dtype in ``DTYPES``), and dataclasses."""
    import numpy as np
    import torch

    if value is None or type(value) in (bool, str):
        return value
    if type(value) is int:
        return value if abs(value) < 2**53 else {"$int": str(value)}
    if type(value) is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, (list, tuple)):
        return {"$list" if isinstance(value, list) else "$tuple": [encode(v) for v in value]}
    if isinstance(value, dict):
        return {"$dict": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, (torch.Tensor, np.ndarray)):
        kind = "tensor" if isinstance(value, torch.Tensor) else "array"
        arr = value.detach().cpu().contiguous().numpy() if kind == "tensor" else np.ascontiguousarray(value)
        if str(arr.dtype) not in DTYPES:
            raise CheckProtocolError(f"expected a dtype in {DTYPES}, got {arr.dtype}")
        return {"$" + kind: {"dtype": str(arr.dtype), "shape": list(arr.shape),
                             "data": base64.b64encode(arr.astype(arr.dtype.newbyteorder("<")).tobytes()).decode()}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {"$dataclass": f"{cls.__module__}.{cls.__qualname__}",
                "fields": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise CheckProtocolError(f"cannot send a {type(value).__name__} to or from a kernel")


def decode(data, *, depth: int = 0) -> object:
    """The value that :func:`encode` (or the kernel's routine) wrote, rebuilt with plain types only.

    Raises:
        CheckProtocolError: anything else (a key that is not the format's, a wrong size, a dtype
            outside ``DTYPES``, nesting deeper than 32).
    """
    import numpy as np
    import torch

    if depth > 32:
        raise CheckProtocolError("nested deeper than 32 levels")
    if data is None or type(data) in (bool, str, int, float):
        return data
    if type(data) is not dict or len(data) not in (1, 2):
        raise CheckProtocolError(f"expected a value of the check format, got a {type(data).__name__}")
    (key, body), = [(k, v) for k, v in data.items() if k != "fields"] or [(None, None)]
    if key in ("$list", "$tuple") and type(body) is list:
        items = [decode(v, depth=depth + 1) for v in body]
        return items if key == "$list" else tuple(items)
    if key == "$dict" and type(body) is list:
        out = {}
        for pair in body:
            if type(pair) is not list or len(pair) != 2:
                raise CheckProtocolError("expected [key, value] pairs in a dict")
            k = decode(pair[0], depth=depth + 1)
            if type(k) not in (str, int, float, bool, tuple) and k is not None:
                raise CheckProtocolError(f"a dict key must be a plain value, got a {type(k).__name__}")
            out[k] = decode(pair[1], depth=depth + 1)
        return out
    if key == "$float" and body in ("nan", "inf", "-inf"):
        return float(body)
    if key == "$int" and type(body) is str and body.lstrip("-").isdigit():
        return int(body)
    if key in ("$tensor", "$array") and type(body) is dict:
        dtype, shape, blob = body.get("dtype"), body.get("shape"), body.get("data")
        if dtype not in DTYPES or type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape) \
                or type(blob) is not str:
            raise CheckProtocolError("expected a tensor as dtype, shape and data")
        raw = base64.b64decode(blob, validate=True)
        dt = np.dtype(dtype).newbyteorder("<")
        if len(raw) != math.prod(shape) * dt.itemsize:
            raise CheckProtocolError(f"a tensor of shape {shape} and dtype {dtype} cannot hold {len(raw)} bytes")
        arr = np.frombuffer(raw, dtype=dt).astype(np.dtype(dtype)).reshape(shape)
        return torch.from_numpy(arr.copy()) if key == "$tensor" else arr.copy()
    if key == "$dataclass" and type(body) is str and type(data.get("fields")) is dict:
        return Record(body, {str(k): decode(v, depth=depth + 1) for k, v in data["fields"].items()})
    raise CheckProtocolError(f"expected a value of the check format, got the key {key!r}")


# The routine the kernel runs for one call. It is not secret (the student's kernel sees it, and may
# change what it answers: whatever comes back is judged as data, here).
_KERNEL_ROUTINE = textwrap.dedent('''
    def __mlsec_call(request):
        import base64, dataclasses, importlib, json, math
        import numpy as np
        import torch
        from IPython import get_ipython
        from IPython.display import display

        def dec(d):
            if d is None or isinstance(d, (bool, str, int, float)):
                return d
            (k, v), = [(a, b) for a, b in d.items() if a != "fields"]
            if k in ("$list", "$tuple"):
                items = [dec(x) for x in v]
                return items if k == "$list" else tuple(items)
            if k == "$dict":
                return {dec(a): dec(b) for a, b in v}
            if k == "$float":
                return float(v)
            if k == "$int":
                return int(v)
            if k in ("$tensor", "$array"):
                arr = np.frombuffer(base64.b64decode(v["data"]), dtype=np.dtype(v["dtype"]).newbyteorder("<"))
                arr = arr.astype(np.dtype(v["dtype"])).reshape(v["shape"]).copy()
                return torch.from_numpy(arr) if k == "$tensor" else arr
            if k == "$dataclass":
                module, _, name = v.rpartition(".")
                if not module.startswith("labkit."):
                    raise ValueError("only labkit's dataclasses travel")
                return getattr(importlib.import_module(module), name)(**{a: dec(b) for a, b in d["fields"].items()})
            raise ValueError(k)

        def enc(x):
            if x is None or type(x) in (bool, str):
                return x
            if isinstance(x, bool):
                return bool(x)
            if isinstance(x, int) and not isinstance(x, bool):
                return int(x) if abs(int(x)) < 2**53 else {"$int": str(int(x))}
            if isinstance(x, float):
                return float(x) if math.isfinite(x) else {"$float": repr(float(x))}
            if isinstance(x, (list, tuple)):
                return {"$list" if isinstance(x, list) else "$tuple": [enc(y) for y in x]}
            if isinstance(x, dict):
                return {"$dict": [[enc(a), enc(b)] for a, b in x.items()]}
            if isinstance(x, (torch.Tensor, np.ndarray)):
                kind = "$tensor" if isinstance(x, torch.Tensor) else "$array"
                arr = x.detach().cpu().contiguous().numpy() if kind == "$tensor" else np.ascontiguousarray(x)
                return {kind: {"dtype": str(arr.dtype), "shape": list(arr.shape),
                               "data": base64.b64encode(arr.astype(arr.dtype.newbyteorder("<")).tobytes()).decode()}}
            if isinstance(x, np.generic):
                return enc(x.item())
            if dataclasses.is_dataclass(x) and not isinstance(x, type):
                return {"$dataclass": type(x).__module__ + "." + type(x).__qualname__,
                        "fields": {f.name: enc(getattr(x, f.name)) for f in dataclasses.fields(x)}}
            raise TypeError("cannot send back a " + type(x).__name__)

        req = json.loads(request)
        try:
            fn = get_ipython().user_ns[req["name"]]
            if req.get("get"):
                answer = {"value": enc(fn)}
            else:
                args, kwargs = dec(req["args"]), dec(req["kwargs"])
                answer = {"value": enc(fn(*args, **kwargs))}
        except BaseException as err:
            answer = {"error": [type(err).__name__, str(err)[:2000]]}
        display({"%s": answer}, raw=True)
''' % MIMETYPE)


# ------------------------------------------------------------------------------------ the kernel
class Kernel:
    """The student's kernel as a check sees it: functions to call, nothing else.

    ``client`` is a started jupyter_client (Async)KernelClient of the sandboxed kernel; ``run`` runs
    a coroutine to its end (nbclient's ``run_sync``).
    """

    def __init__(self, client, run: Callable, *, timeout: float = 60.0, max_bytes: int = MAX_BYTES):
        self._client, self._run, self.timeout, self.max_bytes = client, run, timeout, max_bytes
        self.calls = 0

    def call(self, name: str, *args, timeout: float | None = None, **kwargs):
        """``name(*args, **kwargs)`` in the student's kernel; the result as plain data.

        Raises:
            StudentError: the student's function (or its lookup) raised.
            CallFailed: no answer within ``timeout`` seconds (the kernel is interrupted), the
                kernel died, or the answer is not data of the check format or is too large.
        """
        return self._request(name, {"name": name, "args": encode(list(args)), "kwargs": encode(dict(kwargs))}, timeout)

    def value(self, name: str, *, timeout: float | None = None):
        """The student's global ``name`` (a value their notebook computed), as plain data.

        The student controls it: use it for inputs that are costly to build here (the notebook's
        trained target's outputs, say), never as the only evidence of a check, and compare with a
        reference computed here on the same data.
        """
        return self._request(name, {"name": name, "get": True}, timeout)

    def _request(self, name: str, req: dict, timeout: float | None):
        if not name.isidentifier():
            raise ValueError(f"expected the name of a function or a global, got {name!r}")
        request = json.dumps(req)
        code = _KERNEL_ROUTINE + f"\n__mlsec_call({request!r})\ndel __mlsec_call\n"
        self.calls += 1
        try:
            answer = self._run(self._call(code, self.timeout if timeout is None else timeout))
        except CallFailed:
            raise
        except Exception as err:  # the channel's own failure: never read as the check's verdict
            raise CallFailed(f"the grader could not call {name}: {type(err).__name__}: {err}") from None
        if "error" in answer:
            ename, evalue = answer["error"] if isinstance(answer.get("error"), list) and len(answer["error"]) == 2 \
                else ("Error", "")
            raise StudentError(str(ename)[:100], str(evalue)[:2000])
        if "value" not in answer:
            raise CallFailed(f"{name}: the kernel's answer holds no value")
        try:
            return decode(answer["value"])
        except (CheckProtocolError, ValueError, TypeError) as err:
            raise CallFailed(f"{name} returned something that is not data: {err}") from None

    async def _call(self, code: str, timeout: float) -> dict:
        import queue

        client = self._client
        msg_id = client.execute(code, silent=False, store_history=False, allow_stdin=False, stop_on_error=False)
        deadline = time.monotonic() + timeout
        answer, idle = None, False
        while not idle:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallFailed(f"no answer within {timeout:g} s")
            try:
                msg = await _maybe_await(client.get_iopub_msg(timeout=min(left, 1.0)))
            except queue.Empty:
                if not await _maybe_await(client.is_alive()):
                    raise CallFailed("the kernel died") from None
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg.get("msg_type"), msg.get("content", {})
            if kind == "display_data" and MIMETYPE in content.get("data", {}):
                blob = content["data"][MIMETYPE]
                size = len(json.dumps(blob)) if not isinstance(blob, str) else len(blob)
                if size > self.max_bytes:
                    raise CallFailed(f"the answer weighs {size:,} bytes, more than {self.max_bytes:,}")
                answer = json.loads(blob) if isinstance(blob, str) else blob
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True
        if type(answer) is not dict:
            raise CallFailed("the kernel sent no answer")
        return answer


async def _maybe_await(value):
    import inspect

    return await value if inspect.isawaitable(value) else value


# ------------------------------------------------------------------------------------ the checks
@dataclasses.dataclass(frozen=True)
class Check:
    cell: str                      # the grade_id of the test cell whose points it guards
    name: str
    doc: str
    fn: Callable


_REGISTRY: list[Check] | None = None


def check(cell: str) -> Callable:
    """Register the decorated function as a hidden check of grade cell ``cell``."""
    def register(fn: Callable) -> Callable:
        if _REGISTRY is None:
            raise RuntimeError("hidden checks register only while coursetools.checks.load_checks loads their file")
        _REGISTRY.append(Check(cell=cell, name=fn.__name__, doc=(fn.__doc__ or "").strip().splitlines()[0]
                               if fn.__doc__ else fn.__name__, fn=fn))
        return fn
    return register


def load_checks(path: Path | str) -> list[Check]:
    """The checks that ``path`` (a lab's ``hidden_checks.py``) registers, in file order."""
    global _REGISTRY
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"_mlsec_hidden_checks_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    _REGISTRY = []
    try:
        spec.loader.exec_module(module)
        found = list(_REGISTRY)
    finally:
        _REGISTRY = None
    sys.modules.pop(spec.name, None)
    return found


def secret_lines(path: Path | str, *, min_length: int = 16) -> set[str]:
    """The distinctive lines of a ``hidden_checks.py`` that no student may receive: its code, but not
    its imports, comments, decorators or docstrings (a check's docstring names it in the feedback)."""
    import ast

    text = Path(path).read_text()
    shown: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            shown.update(range(body[0].lineno, body[0].end_lineno + 1))
    return {line.strip() for n, line in enumerate(text.splitlines(), 1)
            if n not in shown and len(line.strip()) >= min_length
            and not line.strip().startswith(("#", "import ", "from ", "@check"))}


def run_check(chk: Check, kernel: Kernel) -> str | None:
    """None when ``chk`` passes; else the message for the student (the checker's words)."""
    try:
        chk.fn(kernel)
        return None
    except AssertionError as err:
        return f"{chk.doc}: {err}" if str(err) else f"{chk.doc}: failed"
    except StudentError as err:
        return f"{chk.doc}: your function raised {err.ename}: {err.evalue[:300]}"
    except CallFailed as err:
        return f"{chk.doc}: {err}"
    except Exception as err:  # a check's own bug must not pass a hand-in
        return f"{chk.doc}: the check could not run ({type(err).__name__}: {str(err)[:200]})"
