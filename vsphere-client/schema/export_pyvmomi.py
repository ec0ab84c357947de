#!/usr/bin/env python3
"""Export vSphere's type information from pyVmomi into the SDK's normalized schema.

The normalized schema (vsphere.schema.json beside this file) is the code generator's only input:
`cargo xtask codegen` turns it into vsphere-client/src/generated/. This exporter walks the type
registries of the PyPI package pyVmomi (Apache-2.0), pinned below because the registries are
private: VmomiSupport's _dataDefMap, _managedDefMap and _enumDefMap, plus the version maps.

Scope: the vim25 service (with the vmodl core and query types), vmodl.reflect (also served on
/sdk), vslm and pbm.
sms, eam and vsan are left out; the export fails if an included type refers to an excluded one.

Usage: python3 export_pyvmomi.py [OUT.json]   (default: vsphere.schema.json beside this file)
"""
import json
import os
import sys

PYVMOMI_VERSION = "9.1.1.0"
SERVICES = ("vim25", "reflect", "vslm", "pbm")
INCLUDED_NS = {"vim25": "vim25", "vim2": "vim25", "reflect": "reflect", "vslm": "vslm", "pbm": "pbm"}

PRIMITIVES = {
    "string": "string", "boolean": "boolean", "byte": "byte", "short": "short", "int": "int",
    "long": "long", "float": "float", "double": "double", "anyType": "anyType",
    "vmodl.DateTime": "dateTime", "vmodl.Binary": "base64Binary",
    "vmodl.TypeName": "string", "vmodl.MethodName": "string", "vmodl.PropertyPath": "string",
    "void": "void",
}
F_LINK, F_LINKABLE, F_OPTIONAL, F_SECRET = 1, 2, 4, 8


def main():
    from importlib.metadata import version
    import pyVmomi  # noqa: F401  (loads every _typeinfo_* module)
    from pyVmomi import VmomiSupport as V

    have = version("pyvmomi")
    if have != PYVMOMI_VERSION:
        sys.exit(f"export_pyvmomi.py is pinned to pyvmomi {PYVMOMI_VERSION}, found {have}")

    def service_of(ver):
        ns = V.nsMap.get(ver)
        return INCLUDED_NS.get(ns)

    # Releases per service, oldest first. A release is a version with a wire id; the order is the
    # size of its compatibility closure (parentMap holds every version a version is compatible with).
    releases = {s: [] for s in SERVICES}
    for ver, vid in V.versionIdMap.items():
        svc = service_of(ver)
        if svc and vid:
            releases[svc].append(ver)
    for svc in SERVICES:
        releases[svc].sort(key=lambda v: (len(V.parentMap[v]), V.versionIdMap[v]))

    def since(ver):
        """The oldest release (of the version's own service) that includes `ver`, as 'svc/id'."""
        svc = service_of(ver)
        if svc is None:
            raise SystemExit(f"version {ver} is outside the exported services")
        for rel in releases[svc]:
            if ver in V.parentMap[rel]:
                return f"{svc}/{V.versionIdMap[rel]}"
        raise SystemExit(f"no release of {svc} includes {ver}")

    data, managed, enums = V._dataDefMap, V._managedDefMap, V._enumDefMap
    included = {}
    for table, vpos in ((data, 3), (managed, 3), (enums, 2)):
        for vmodl, d in table.items():
            if service_of(d[vpos]):
                included[vmodl] = d[1]
    included["vmodl.DataObject"] = None
    included["vmodl.ManagedObject"] = None

    def typeref(t, where):
        array = t.endswith("[]")
        base = t[:-2] if array else t
        ref = {"array": array}
        if base in PRIMITIVES:
            ref["type"] = PRIMITIVES[base]
        elif base == "vmodl.ManagedObject":
            ref["type"] = "ManagedObjectReference"
        elif base in managed:
            ref["type"] = "ManagedObjectReference"
            ref["moref"] = managed[base][1]
        elif base in data or base in enums:
            if base not in included:
                raise SystemExit(f"{where} refers to {base}, outside the exported services")
            ref["type"] = (data.get(base) or enums[base])[1]
        else:
            raise SystemExit(f"{where}: unknown type {t}")
        return ref

    def flags(f):
        return {"optional": bool(f & F_OPTIONAL), "secret": bool(f & F_SECRET),
                "link": bool(f & F_LINK)}

    def prop(p, where):
        out = {"name": p[0]}
        out.update(typeref(p[1], f"{where}.{p[0]}"))
        out.update(flags(p[3]))
        out["since"] = since(p[2])
        return out

    def in_scope(members, vpos=2):
        """Members added by an excluded service (vsan extends some vim types) are left out."""
        return [m for m in (members or []) if service_of(m[vpos])]

    def is_fault(vmodl):
        while vmodl in data:
            if vmodl == "vmodl.MethodFault":
                return True
            vmodl = data[vmodl][2]
        return False

    out_data = []
    for vmodl, (_, wsdl, parent, ver, props) in data.items():
        if not service_of(ver):
            continue
        out_data.append({
            "name": wsdl, "vmodl": vmodl,
            "base": data[parent][1] if parent in data else None,
            "service": service_of(ver), "since": since(ver), "fault": is_fault(vmodl),
            "props": [prop(p, wsdl) for p in in_scope(props)],
        })

    out_enums = []
    for vmodl, (_, wsdl, ver, values) in enums.items():
        if not service_of(ver):
            continue
        out_enums.append({"name": wsdl, "vmodl": vmodl, "service": service_of(ver),
                          "since": since(ver), "values": list(values)})

    out_managed = []
    for vmodl, (_, wsdl, parent, ver, props, methods) in managed.items():
        if not service_of(ver):
            continue
        mprops = []
        for p in in_scope(props):
            q = prop(p, wsdl)
            q["privilege"] = p[4]
            mprops.append(q)
        mmethods = []
        for (mname, mwsdl, mver, params, result, priv, faults) in in_scope(methods, 2):
            where = f"{wsdl}.{mwsdl}"
            rflags, rtype, rtask = result
            res = typeref(rtype, where)
            res.update(flags(rflags))
            task = None
            if rtask != rtype:
                task = typeref(rtask, where + " (task result)")
            mmethods.append({
                "name": mwsdl, "vmodl": mname, "since": since(mver), "privilege": priv,
                "params": [dict(prop(p, where), privilege=p[4]) for p in in_scope(params)],
                "result": res, "task_result": task,
                "faults": sorted(data[f][1] for f in (faults or [])),
            })
        out_managed.append({
            "name": wsdl, "vmodl": vmodl,
            "base": managed[parent][1] if parent in managed else None,
            "service": service_of(ver), "since": since(ver),
            "props": mprops, "methods": mmethods,
        })

    names = [t["name"] for t in out_data + out_enums + out_managed]
    dup = {n for n in names if names.count(n) > 1} if len(set(names)) != len(names) else set()
    if dup:
        raise SystemExit(f"duplicate wire names across services: {sorted(dup)}")

    schema = {
        "format": 1,
        "source": {"package": "pyvmomi", "version": PYVMOMI_VERSION},
        "services": {s: [V.versionIdMap[v] for v in releases[s]] for s in SERVICES},
        "enums": sorted(out_enums, key=lambda t: t["name"]),
        "data": sorted(out_data, key=lambda t: t["name"]),
        "managed": sorted(out_managed, key=lambda t: t["name"]),
    }
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "vsphere.schema.json")
    with open(path, "w", encoding="utf-8") as f:
        # One type per line: diffs of a new pyVmomi release stay readable.
        f.write("{\n")
        f.write(f' "format": {json.dumps(schema["format"])},\n')
        f.write(f' "source": {json.dumps(schema["source"], sort_keys=True)},\n')
        f.write(f' "services": {json.dumps(schema["services"])},\n')
        for i, key in enumerate(("enums", "data", "managed")):
            f.write(f' "{key}": [\n')
            items = schema[key]
            for j, t in enumerate(items):
                f.write("  " + json.dumps(t, sort_keys=True, separators=(",", ":")))
                f.write(",\n" if j + 1 < len(items) else "\n")
            f.write(" ]" + (",\n" if i < 2 else "\n"))
        f.write("}\n")
    print(f"wrote {path}: {len(out_data)} data types, {len(out_enums)} enums, "
          f"{len(out_managed)} managed types, "
          f"{sum(len(m['methods']) for m in out_managed)} methods", file=sys.stderr)


if __name__ == "__main__":
    main()
