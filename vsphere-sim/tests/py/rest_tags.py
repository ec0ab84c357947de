#!/usr/bin/env python3
"""A REST session plus tag creation through plain HTTP (urllib only) against vsphere-sim.

Usage: rest_tags.py HOST PORT USER PASSWORD

Both REST styles: /api/session (bare JSON string) and /rest/com/vmware/cis/session
({"value": ...}), the vcenter VM listing, a category and a tag, attaching the tag to the first
VM, and reading the association back. Prints one "ok: ..." line per check and exits 0, or
prints the failure and exits 1. The password and session ids are never printed.
"""
import base64
import json
import sys
import urllib.error
import urllib.request


class Api:
    def __init__(self, base, user, password):
        self.base = base
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.token = None

    def call(self, method, path, body=None, auth=False):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", self.auth)
        elif self.token:
            req.add_header("vmware-api-session-id", self.token)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, (json.loads(raw) if raw else None)


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def main():
    if len(sys.argv) != 5:
        print(__doc__)
        sys.exit(2)
    host, port, user, password = sys.argv[1:]
    base = f"http://{host}:{port}"

    # /api style.
    api = Api(base, user, password)
    status, _ = Api(base, user, password + "-wrong").call("POST", "/api/session", auth=True)
    check(status == 401, "a wrong password is refused with 401")
    status, token = api.call("POST", "/api/session", auth=True)
    check(status == 201 and isinstance(token, str) and token, "/api/session answers a bare string")
    api.token = token
    status, info = api.call("GET", "/api/session")
    check(status == 200 and info["user"] == user, "/api/session GET names the user")
    status, vms = api.call("GET", "/api/vcenter/vm")
    check(status == 200 and len(vms) >= 1 and vms[0]["vm"].startswith("vm-"), f"/api/vcenter/vm lists {len(vms)} VMs")
    status, cat = api.call("POST", "/api/cis/tagging/category", {
        "name": "py-env", "description": "from python", "cardinality": "SINGLE",
        "associable_types": ["VirtualMachine"]})
    check(status == 201 and cat.startswith("urn:vmomi:InventoryServiceCategory:"), "category created")
    status, err = api.call("POST", "/api/cis/tagging/category", {
        "name": "py-env", "description": "", "cardinality": "SINGLE", "associable_types": []})
    check(status == 400 and err["error_type"] == "ALREADY_EXISTS", "a duplicate category is ALREADY_EXISTS")
    status, tag = api.call("POST", "/api/cis/tagging/tag", {
        "name": "py-prod", "description": "", "category_id": cat})
    check(status == 201 and tag.startswith("urn:vmomi:InventoryServiceTag:"), "tag created")
    vm = {"type": "VirtualMachine", "id": vms[0]["vm"]}
    status, _ = api.call("POST", f"/api/cis/tagging/tag-association/{tag}?action=attach", {"object_id": vm})
    check(status == 204, "tag attached to " + vm["id"])

    # /rest style, same store: the tag made above is visible.
    rest = Api(base, user, password)
    status, body = rest.call("POST", "/rest/com/vmware/cis/session", auth=True)
    check(status == 200 and isinstance(body["value"], str), "/rest session answers {\"value\": ...}")
    rest.token = body["value"]
    status, body = rest.call("POST", "/rest/com/vmware/cis/tagging/tag-association?~action=list-attached-tags",
                             {"object_id": vm})
    check(status == 200 and body["value"] == [tag], "/rest lists the tag attached through /api")
    status, body = rest.call("POST", "/rest/com/vmware/cis/tagging/tag", {"create_spec": {
        "name": "py-dev", "description": "", "category_id": cat}})
    check(status == 200 and body["value"].startswith("urn:vmomi:InventoryServiceTag:"), "/rest tag created")
    status, body = rest.call("POST", f"/rest/com/vmware/cis/tagging/tag-association/id:{body['value']}?~action=attach",
                             {"object_id": vm})
    check(status == 400 and body["type"] == "com.vmware.vapi.std.errors.invalid_argument",
          "a second tag of a SINGLE category is invalid_argument")
    status, body = rest.call("GET", "/rest/com/vmware/cis/tagging/tag/id:urn:nope")
    check(status == 404 and body["type"] == "com.vmware.vapi.std.errors.not_found", "a missing tag is not_found")

    status, _ = api.call("DELETE", "/api/session")
    check(status == 204, "/api session deleted")
    status, body = api.call("GET", "/api/vcenter/vm")
    check(status == 401 and body["error_type"] == "UNAUTHENTICATED", "the deleted session is UNAUTHENTICATED")
    print("ok: all")


if __name__ == "__main__":
    main()
