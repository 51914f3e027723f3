"""The per-user cache folder: ``$VOLO_DEPLOY_CACHE``, else ``$XDG_CACHE_HOME/volo_deploy``, else ``~/.cache/volo_deploy``.

An empty variable counts as unset (the XDG Base Directory spec: "If $XDG_CACHE_HOME is either not set or
empty, a default equal to $HOME/.cache should be used").
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``<cache root>/<parts...>`` (not created). BadInputError when the root, or a folder on the way to
    ``parts``, exists but is not a folder."""
    root = os.environ.get("VOLO_DEPLOY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "volo_deploy"
    )
    path = Path(root, *parts)
    for p in [Path(root), *(Path(root, *parts[: i + 1]) for i in range(len(parts) - 1))]:
        if p.exists() and not p.is_dir():
            from volo_deploy.errors import BadInputError

            raise BadInputError(f"cache folder {p} is a file, not a folder: remove it, or set VOLO_DEPLOY_CACHE "
                                "to another folder")
    return path
