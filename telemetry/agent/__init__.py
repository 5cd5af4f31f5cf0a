"""CarbonLedger host telemetry agent: plain Python (stdlib + nvidia-ml-py, psutil optional).

Never import Django, DRF, Celery or Plotly here (an import-linter contract enforces it), nor
anything from ``accounting``: the agent installs on GPU hosts with a small dependency set.
"""

__version__ = "0.1.0"
