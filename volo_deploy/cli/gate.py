"""``volo-gate``: not implemented yet (see the harness issue)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("volo-gate: not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
