#!/usr/bin/env python3
"""pyVmomi smoke peer: connect to a vCenter SDK URL (in practice the vcsim peer), list all VMs
through a ContainerView with a few properties, and print a JSON summary on stdout.

Usage: smoke.py URL [--props name,runtime.powerState,...]

URL is the SDK URL the vcsim peer prints, e.g. http://user:pass@127.0.0.1:PORT/sdk (http or
https; TLS certificates are not verified, as vcsim's are self-signed). Exit status 0 only when the
login worked and every VM came back with every requested property; otherwise a message on stderr
and status 1 (2 for bad usage). The password never appears in the output.
"""

import argparse
import json
import sys
import time
from urllib.parse import unquote, urlsplit

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

DEFAULT_PROPS = [
    "name",
    "runtime.powerState",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "summary.config.guestFullName",
]


def parse_url(raw):
    """Split an SDK URL into SmartConnect arguments; raises ValueError on bad input."""
    u = urlsplit(raw)
    if u.scheme not in ("http", "https"):
        raise ValueError(f"URL scheme must be http or https, got {u.scheme!r}")
    if not u.hostname or not u.username or u.password is None:
        raise ValueError("URL must look like http://user:pass@host:port/sdk")
    port = u.port or (443 if u.scheme == "https" else 80)
    return {
        "protocol": u.scheme,
        "host": u.hostname,
        "port": port,
        "user": unquote(u.username),
        "pwd": unquote(u.password),
        "path": u.path or "/sdk",
    }


def list_vms(si, props):
    """ContainerView over all VMs from the root folder, then RetrievePropertiesEx (following
    continuation tokens). Returns a list of {"moid": ..., prop: value} dicts."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        pc = content.propertyCollector
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[
                vmodl.query.PropertyCollector.ObjectSpec(
                    obj=view,
                    skip=True,
                    selectSet=[
                        vmodl.query.PropertyCollector.TraversalSpec(
                            type=vim.view.ContainerView, path="view", skip=False
                        )
                    ],
                )
            ],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.VirtualMachine, pathSet=props)],
        )
        result = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
        objects = []
        while result is not None:
            objects.extend(result.objects)
            if not result.token:
                break
            result = pc.ContinueRetrievePropertiesEx(result.token)
    finally:
        view.Destroy()
    rows = []
    for oc in objects:
        row = {"moid": oc.obj._moId}
        for p in oc.propSet:
            v = p.val
            row[p.name] = v if isinstance(v, (str, int, float, bool)) or v is None else str(v)
        rows.append(row)
    return content, rows


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="SDK URL with credentials, e.g. http://user:pass@127.0.0.1:PORT/sdk")
    ap.add_argument("--props", default=",".join(DEFAULT_PROPS), help="comma-separated property paths")
    args = ap.parse_args(argv)
    try:
        conn = parse_url(args.url)
    except ValueError as e:
        print(f"smoke.py: {e}", file=sys.stderr)
        return 2
    props = [p.strip() for p in args.props.split(",") if p.strip()]
    if not props:
        print("smoke.py: --props is empty", file=sys.stderr)
        return 2

    start = time.perf_counter()
    kw = {"disableSslCertValidation": True} if conn["protocol"] == "https" else {}
    try:
        si = SmartConnect(
            protocol=conn["protocol"], host=conn["host"], port=conn["port"], user=conn["user"],
            pwd=conn["pwd"], path=conn["path"], **kw,
        )
    except Exception as e:  # noqa: BLE001 - report any connection failure without the password
        print(f"smoke.py: login to {conn['protocol']}://{conn['host']}:{conn['port']}{conn['path']} failed: "
              f"{type(e).__name__}: {getattr(e, 'msg', e)}", file=sys.stderr)
        return 1
    try:
        content, rows = list_vms(si, props)
        about = content.about
        summary = {
            "server": {
                "fullName": about.fullName,
                "apiVersion": about.apiVersion,
                "apiType": about.apiType,
                "instanceUuid": about.instanceUuid,
            },
            "client": {"pyvmomi_stub_version": si._stub.version},
            "props": props,
            "vm_count": len(rows),
            "power_states": {},
            "vms_sample": rows[:3],
            "seconds": round(time.perf_counter() - start, 3),
        }
        for r in rows:
            st = str(r.get("runtime.powerState"))
            summary["power_states"][st] = summary["power_states"].get(st, 0) + 1
        missing = [r["moid"] for r in rows if any(p not in r for p in props)]
    finally:
        Disconnect(si)
    print(json.dumps(summary, indent=2, sort_keys=True))
    if not rows:
        print("smoke.py: the inventory has no VMs", file=sys.stderr)
        return 1
    if missing:
        print(f"smoke.py: {len(missing)} VM(s) lack requested properties: {missing[:5]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
