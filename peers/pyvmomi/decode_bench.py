#!/usr/bin/env python3
"""pyVmomi decode peer: decodes saved RetrieveProperties(Ex) SOAP response envelopes with
pyVmomi's own SoapResponseDeserializer -- the class and call its SoapStubAdapter.InvokeMethod
uses (SoapResponseDeserializer(stub).Deserialize(fd, info.result)) -- best of N, and prints
bytes, best time, MB/s and object count per file.

Usage: decode_bench.py [--repeat N] [--version vim.version.version11] [--json] FILE...
       decode_bench.py --describe FILE

With --describe it prints, instead of timings, what pyVmomi decoded, as indented JSON: per object
its MoRef and, per property, the WSDL type name pyVmomi resolved for the value, the value for
primitives, enums and MoRefs, and for arrays the length and the distinct element types (the same
shape as `rpex decode -describe`, an oracle for decoder tests).

The stub is a SoapStubAdapter that never connects (it only supplies the API version used to look
up types and to build ManagedObject references). The default version, vim.version.version11
(vSphere 6.5), is the one pyVmomi negotiates with govmomi's vcsim.
"""

import argparse
import datetime
import json
import sys
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version

from pyVmomi import SoapAdapter, VmomiSupport

DEFAULT_VERSION = "vim.version.version11"

try:
    PYVMOMI_VERSION = dist_version("pyvmomi")
except PackageNotFoundError:  # e.g. run from a source checkout
    PYVMOMI_VERSION = "unknown"


def result_type(data):
    """The method result type InvokeMethod would pass for this envelope."""
    pc = VmomiSupport.GetVmodlType("vmodl.query.PropertyCollector")
    if b"RetrievePropertiesExResponse" in data:
        return pc._GetMethodInfo("RetrievePropertiesEx").result
    if b"RetrievePropertiesResponse" in data:
        return pc._GetMethodInfo("RetrieveContents").result  # wire name RetrieveProperties
    raise ValueError("not a RetrieveProperties(Ex) response envelope")


def count_objects(result):
    if result is None:
        return 0
    if isinstance(result, list):
        return len(result)
    return len(result.objects)


def wsdl_name(t):
    try:
        return VmomiSupport.GetWsdlName(t)
    except Exception:  # noqa: BLE001 - e.g. a Python builtin pyVmomi has no WSDL name for
        return t.__name__


def scalar(v):
    """JSON value for primitives, enums and MoRefs; None for data objects."""
    if isinstance(v, VmomiSupport.ManagedObject):
        return {"Type": wsdl_name(type(v)), "Value": v._moId}
    if isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, datetime.datetime):
        return v.isoformat()
    return None


def describe_value(name, v):
    d = {"name": name, "wsdl_type": "nil" if v is None else wsdl_name(type(v))}
    if isinstance(v, list):
        d["len"] = len(v)
        items = []
        for it in v:
            t = wsdl_name(type(it))
            if t not in items:
                items.append(t)
        if items:
            d["item_types"] = items
        values = [scalar(it) for it in v]
        if v and all(x is not None for x in values):
            d["value"] = values
    elif v is not None:
        x = scalar(v)
        if x is not None:
            d["value"] = x
    return d


def describe_file(path, stub):
    with open(path, "rb") as f:
        data = f.read()
    result = SoapAdapter.SoapResponseDeserializer(stub).Deserialize(data, result_type(data))
    objects = result if isinstance(result, list) else (result.objects if result is not None else [])
    out = []
    for oc in objects:
        o = {"obj": {"Type": wsdl_name(type(oc.obj)), "Value": oc.obj._moId},
             "props": [describe_value(p.name, p.val) for p in oc.propSet]}
        if oc.missingSet:
            o["missing"] = [m.path for m in oc.missingSet]
        out.append(o)
    return {"decoder": f"pyVmomi {PYVMOMI_VERSION} SoapResponseDeserializer", "objects": out}


def decode_file(path, repeat, stub):
    with open(path, "rb") as f:
        data = f.read()
    rtype = result_type(data)
    best = float("inf")
    objects = 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = SoapAdapter.SoapResponseDeserializer(stub).Deserialize(data, rtype)
        elapsed = time.perf_counter() - start
        if isinstance(result, BaseException):
            raise ValueError(f"the envelope holds a fault: {type(result).__name__}: {getattr(result, 'msg', '')}")
        objects = count_objects(result)
        best = min(best, elapsed)
    return {
        "file": path,
        "bytes": len(data),
        "objects": objects,
        "best_s": best,
        "mb_per_s": len(data) / 1e6 / best,
        "repeat": repeat,
        "decoder": f"pyVmomi {PYVMOMI_VERSION} SoapResponseDeserializer",
    }


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", metavar="FILE")
    ap.add_argument("--repeat", type=int, default=3, help="decode each file this many times; the best counts")
    ap.add_argument("--version", default=DEFAULT_VERSION, help="pyVmomi API version name for the stub")
    ap.add_argument("--json", action="store_true", help="print one JSON object per file")
    ap.add_argument("--describe", action="store_true", help="print what was decoded instead of timings")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        print("decode_bench.py: --repeat must be at least 1", file=sys.stderr)
        return 2
    try:
        VmomiSupport.GetVersionNamespace(args.version)
    except Exception:  # noqa: BLE001 - unknown version names raise various errors
        print(f"decode_bench.py: unknown pyVmomi version {args.version!r}", file=sys.stderr)
        return 2
    # Never connects: the deserializer only reads stub.version (and keeps the stub in MoRefs).
    stub = SoapAdapter.SoapStubAdapter(host="127.0.0.1", port=9, version=args.version)
    status = 0
    for path in args.files:
        if args.describe:
            try:
                print(json.dumps(describe_file(path, stub), indent=2))
            except (OSError, ValueError) as e:
                print(f"decode_bench.py: {path}: {e}", file=sys.stderr)
                status = 1
            continue
        try:
            r = decode_file(path, args.repeat, stub)
        except (OSError, ValueError) as e:
            print(f"decode_bench.py: {path}: {e}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{r['file']}: {r['bytes']} bytes, {r['objects']} objects, best of {r['repeat']} "
                  f"{r['best_s']:.4f} s, {r['mb_per_s']:.2f} MB/s")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
