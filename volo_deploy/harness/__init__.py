"""Accuracy and latency harness (``volo-bench``) and the CI regression gate (``volo-gate``).

- :mod:`~volo_deploy.harness.stats`: latency percentiles, top-k accuracy, agreement with FP32.
- :mod:`~volo_deploy.harness.data`: the evaluation images (dataset readers adapter, fingerprint).
- :mod:`~volo_deploy.harness.runner`: one backend x precision case (artifact, accuracy, timing).
- :mod:`~volo_deploy.harness.bench`: the loop over cases -> report dict.
- :mod:`~volo_deploy.harness.report_schema`: the typed report ``volo_deploy.bench_report/1`` and its check.
- :mod:`~volo_deploy.harness.report`: report files (json, md, csv, plots), published as one set.
- :mod:`~volo_deploy.harness.gate`: baseline comparison and JUnit XML.
- :mod:`~volo_deploy.harness.remeasure`: re-timing a suspect cell (interleaved with the baseline's export).
"""
