"""Small queries for scripts/system-test, run on the host with the standard library only.

  probe.py freeport                      a free TCP port on 127.0.0.1
  probe.py stats CLOUD GATEWAY           the cloud's stats for GATEWAY, as JSON
  probe.py contiguous CLOUD GATEWAY      exit 0 if the cloud holds seqs 1..max with none
                                         missing or dropped; prints a one-line summary
  probe.py reading CLOUD GATEWAY SEQ     the reading with SEQ, as JSON (exit 1 if absent)
  probe.py faults CLOUD JSON             set the cloud's fault injection
  probe.py field JSON KEY                one top-level field of a JSON object (stdin: -)

CLOUD is the base URL, e.g. http://127.0.0.1:18080.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from typing import Any


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def stats(cloud: str, gateway: str) -> dict[str, Any]:
    result: dict[str, Any] = get(f"{cloud}/v1/gateways/{gateway}/stats")
    return result


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    try:
        if command == "freeport":
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                print(sock.getsockname()[1])
        elif command == "stats":
            print(json.dumps(stats(*args)))
        elif command == "contiguous":
            s = stats(*args)
            count, low, high = s["readings"], s["min_seq"], s["max_seq"]
            summary = (f"cloud holds {count} readings, seqs {low}..{high}, "
                       f"{s['dropped']} dropped, {s['duplicates']} duplicates received")
            print(summary)
            ok = count > 0 and low == 1 and high == count and s["dropped"] == 0
            return 0 if ok else 1
        elif command == "reading":
            cloud, gateway, seq = args[0], args[1], int(args[2])
            found = get(f"{cloud}/v1/gateways/{gateway}/readings?after_seq={seq - 1}&limit=1")
            readings = found["readings"]
            if not readings or readings[0]["seq"] != seq:
                return 1
            print(json.dumps(readings[0]))
        elif command == "faults":
            request = urllib.request.Request(
                f"{args[0]}/_admin/faults", data=args[1].encode(), method="POST",
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as resp:
                resp.read()
        elif command == "field":
            text = sys.stdin.read() if args[0] == "-" else args[0]
            value = json.loads(text)[args[1]]
            print(json.dumps(value) if isinstance(value, (dict, list)) else value)
        else:
            print(f"probe.py: unknown command {command!r}", file=sys.stderr)
            return 2
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        print(f"probe.py {command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
