"""The per-user cache folder: ``$VOLO_DEPLOY_CACHE``, else ``$XDG_CACHE_HOME/volo_deploy``, else ``~/.cache/volo_deploy``.

An empty variable counts as unset (the XDG Base Directory spec: "If $XDG_CACHE_HOME is either not set or
empty, a default equal to $HOME/.cache should be used").
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``<cache root>/<parts...>`` (not created)."""
    root = os.environ.get("VOLO_DEPLOY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "volo_deploy"
    )
    return Path(root, *parts)
