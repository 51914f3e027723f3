"""Console entry points: ``volo-export``, ``volo-bench``, ``volo-gate``."""
