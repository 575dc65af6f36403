"""Chart rendering: what a chart is (:mod:`chatops.render.charts`) and where it is drawn (:mod:`chatops.render.pool`).

``await render_chart(Chart(...))`` returns PNG bytes drawn in a worker process; ``render_png`` draws in-process
(tests, benchmarks). Importing this package does not import matplotlib.
"""

from chatops.render.charts import Chart, Panel, Series, Threshold, render_png
from chatops.render.pool import RenderPool, default_pool, render_chart

__all__ = ["Chart", "Panel", "RenderPool", "Series", "Threshold", "default_pool", "render_chart", "render_png"]
