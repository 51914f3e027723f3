"""Accuracy and latency harness (``volo-bench``) and the CI regression gate (``volo-gate``).

- :mod:`~volo_deploy.harness.stats`: latency percentiles, top-k accuracy, agreement with FP32.
- :mod:`~volo_deploy.harness.data`: the evaluation images (dataset readers adapter, fingerprint).
- :mod:`~volo_deploy.harness.runner`: one backend x precision case (artifact, accuracy, timing).
- :mod:`~volo_deploy.harness.bench`: the loop over cases -> report dict.
- :mod:`~volo_deploy.harness.report`: report schema ``volo_deploy.bench_report/1``, md/csv/plots.
- :mod:`~volo_deploy.harness.gate`: baseline comparison and JUnit XML.
"""
