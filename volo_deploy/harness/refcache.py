"""FP32 PyTorch reference logits, computed once per model, data and preprocessing, cached on disk.

``<cache>/reference/<key>/`` holds one ``NNNNN.npz`` per data shard (float32 logits -- kept
exact, so agreement and max-abs error are those of an in-memory run -- plus top-k indices,
labels and unreadable images) and a ``NNNNN.json`` sidecar with the key and the sha256 of
the ``.npz``. A shard is used only when its sidecar names the same key and the file hashes
to the recorded sha256; otherwise it is recomputed and the reason logged.

The key is the sha256 of: the checkpoint hash, the selected images (paths, labels, sizes,
mtimes), the eval transform, the shard plan, and the torch version.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from volo_deploy.harness.shards import ShardResult

log = logging.getLogger(__name__)

SCHEMA = "volo_deploy.reference_shard/1"


def reference_key(checkpoint_sha256: str, data_key: str, transform: Any, shards: list[tuple[int, int]]) -> dict:
    """What the reference logits depend on (``transform``: the EvalTransform dataclass)."""
    import torch

    return {
        "schema": SCHEMA,
        "checkpoint_sha256": checkpoint_sha256,
        "data": data_key,
        "transform": asdict(transform),
        "shards": [list(s) for s in shards],
        "torch": torch.__version__,
    }


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


class ReferenceCache:
    """Reference shards for one key, in the per-user cache folder."""

    def __init__(self, key: dict, root: Path | None = None, label: str = "") -> None:
        from volo_deploy.cache import cache_dir

        self.key, self.label = key, label  # label: checkpoint and data paths, to explain a stale entry
        self.digest = key_digest(key)
        self.dir = (root or cache_dir("reference")) / self.digest[:32]

    def _paths(self, index: int) -> tuple[Path, Path]:
        return self.dir / f"{index:05d}.npz", self.dir / f"{index:05d}.json"

    def load(self, index: int) -> ShardResult | None:
        """The cached shard, or None (absent, or rejected with a log line saying why)."""
        data, side = self._paths(index)
        if not side.is_file() and not data.is_file():
            return None
        why = ""
        try:
            meta = json.loads(side.read_text())
            if not isinstance(meta, dict):
                why = f"its sidecar {side.name} is not a JSON object"
            elif meta.get("key_sha256") != self.digest:
                why = "its key differs (model, data or preprocessing changed)"
            elif hashlib.sha256(blob := data.read_bytes()).hexdigest() != meta.get("sha256"):
                why = "content hash mismatch (corrupted)"
            else:
                res = ShardResult.from_bytes(blob)
                if res.logits is None or res.index != index or len(res.logits) != res.n:
                    why = "incomplete content"
                else:
                    return res
        except (OSError, ValueError, KeyError) as exc:
            why = f"unreadable ({type(exc).__name__}: {exc})"
        log.info(f"reference cache {data}: rejected, {why}; recomputing")
        return None

    def save(self, res: ShardResult) -> None:
        from volo_deploy.artifacts import atomic_write_bytes, atomic_write_json

        data, side = self._paths(res.index)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from volo_deploy.errors import BadInputError

            raise BadInputError(f"reference cache {self.dir}: cannot be created ({exc.strerror}); a file stands "
                                "in its way: remove it, or set VOLO_DEPLOY_CACHE to another folder") from None
        blob = res.to_bytes()
        atomic_write_bytes(data, blob)
        atomic_write_json(side, {"key_sha256": self.digest, "key": self.key, "label": self.label, "index": res.index,
                                 "n": res.n, "sha256": hashlib.sha256(blob).hexdigest()})

    def stale_reason(self) -> str | None:
        """When another entry was made for the same checkpoint and data paths: what changed since (else None)."""
        if not self.label:
            return None
        for side in sorted(self.dir.parent.glob("*/00000.json"), key=lambda p: p.stat().st_mtime, reverse=True):
            try:
                meta = json.loads(side.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(meta, dict):
                continue
            if meta.get("label") == self.label and meta.get("key_sha256") != self.digest:
                old = meta.get("key") if isinstance(meta.get("key"), dict) else {}
                changed = [k for k in self.key if json.dumps(self.key[k]) != json.dumps(old.get(k))]
                return f"{', '.join(changed) or 'key'} changed since {side.parent}"
        return None
