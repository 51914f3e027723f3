"""Run inside a subprocess with the REAL ``tensorrt`` bindings importable (stub libnvinfer on the library
path): check a JSON list of API uses, exercise plugin_fields; print a JSON report.

    python conformance_trt_check.py USES.json  ->  {"version": ..., "problems": [...], "fields": [...]}

Not a test module (no ``test_`` prefix): tests/test_real_api_conformance.py drives it.
"""

from __future__ import annotations

import gc
import inspect
import json
import re
import sys

import numpy as np


def _split_params(text: str) -> list[str]:
    """Top-level comma split of a pybind11 signature's parameter list."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[(<{"
        depth -= ch in "])>}"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return out + ([cur.strip()] if cur.strip() else [])


def overloads(obj, name: str) -> list[tuple[list[str], int]]:
    """(parameter names, required count) of each overload, self excluded; from pybind11's docstring or inspect."""
    try:
        sig = inspect.signature(obj)
        params = [p for p in sig.parameters.values() if p.name != "self"]
        if all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY) for p in params):
            return [([p.name for p in params], sum(p.default is p.empty for p in params))]
    except (TypeError, ValueError):
        pass
    found = []
    for m in re.finditer(rf"^\s*(?:\d+\.\s*)?{re.escape(name)}\((.*)\)\s*->", obj.__doc__ or "", re.M):
        params = [p for p in _split_params(m.group(1)) if not p.startswith("self")]
        if any(p.startswith("*") for p in params):
            return [([], -1)]  # *args/**kwargs: anything goes
        found.append(([p.split(":")[0].strip() for p in params], sum("=" not in p for p in params)))
    return found


def call_ok(forms: list[tuple[list[str], int]], nargs: int | None, kws: list[str]) -> bool:
    if not forms:
        return False
    for names, required in forms:
        if required < 0 or nargs is None:
            return True
        if nargs <= len(names) and set(kws) <= set(names[nargs:]) and nargs + len(kws) >= required:
            return True
    return False


def resolve(trt, chain: str):
    obj = trt
    for part in chain.split("."):
        obj = getattr(obj, part)
    return obj


def check(trt, use: dict) -> str | None:
    """None if ``use`` (chain / method / property, with call arity) exists in the real module."""
    try:
        obj = resolve(trt, use["path"])
    except AttributeError:
        return f"{use['path']}: no such attribute (used in {use['where']})"
    if use.get("nargs", "no call") == "no call":
        return None
    name = use["path"].rsplit(".", 1)[-1]
    if inspect.isclass(obj):
        target, name = obj.__init__, "__init__"
    else:
        target = obj
    if not call_ok(overloads(target, name), use["nargs"], use.get("kws", [])):
        return (f"{use['path']}: called with {use['nargs']} positional + {use.get('kws', [])} keyword argument(s) in "
                f"{use['where']}; signatures: {overloads(target, name)}")
    return None


def plugin_fields_readback(trt) -> list:
    """Our plugin_fields on the real bindings, read back after other allocations (the dangling-pointer bug)."""
    from volo_deploy.export.torch_trt_converter import plugin_fields

    fc = plugin_fields(trt, {"kernel_size": 3, "padding": 1, "stride": 2, "num_heads": 6, "scale": 0.1767767})
    junk = [np.full(64, 2139062143, np.int32) for _ in range(2000)]
    gc.collect()
    out = [[f.name, np.asarray(f.data).tolist()] for f in fc]
    del junk
    return out


def main() -> int:
    import tensorrt_bindings as trt

    uses = json.loads(open(sys.argv[1]).read())
    problems = [p for p in (check(trt, u) for u in uses) if p]
    print(json.dumps({"version": trt.__version__, "problems": problems, "fields": plugin_fields_readback(trt)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
