"""Jobs that drive the backends (above ``backends/`` and ``export/``): the export job."""
