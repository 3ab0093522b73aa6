"""A stand-in for Xen's `xl` on the lab hosts, which have no hypervisor (tests/lab/test_xen_failover.py).

It keeps the domains ({name: xl list state flags}) in a JSON file, answers `xl list` in xl's format and
emulates rename, unpause and destroy; every call is appended to a log, so the test sees the commands the
Xen backend ran. Anything else fails, as xl would on an unknown domain.
"""
import json
import sys

STATE = "/var/lib/colo-ft-fake-xl/domains.json"
LOG = "/var/lib/colo-ft-fake-xl/calls"

args = sys.argv[1:]
with open(LOG, "a", encoding="utf-8") as f:
    f.write(" ".join(args) + "\n")
with open(STATE, encoding="utf-8") as f:
    domains = json.load(f)
cmd, rest = (args[0], args[1:]) if args else ("", [])
try:
    if cmd == "list" and not rest:
        print("Name                                        ID   Mem VCPUs\tState\tTime(s)")
        print(f"{'Domain-0':<40}{0:>6}{1024:>6}{2:>6}     r-----      10.0")
        for i, (name, flags) in enumerate(sorted(domains.items()), 1):
            print(f"{name:<40}{i:>6}{256:>6}{1:>6}     {flags}       0.0")
    elif cmd == "rename" and len(rest) == 2 and rest[1] not in domains:
        domains[rest[1]] = domains.pop(rest[0])
    elif cmd == "unpause" and len(rest) == 1:
        domains[rest[0]] = domains[rest[0]].replace("p", "-").replace("------", "-b----")
    elif cmd == "destroy" and len(rest) == 1:
        del domains[rest[0]]
    else:
        sys.exit(f"xl (colo.ft test stand-in): {' '.join(args)} is not emulated")
except KeyError as exc:
    sys.exit(f"xl (colo.ft test stand-in): no domain {exc}")
with open(STATE, "w", encoding="utf-8") as f:
    json.dump(domains, f)
