"""matplotlib keeps its font cache in MPLCONFIGDIR: a private folder, set before anything imports matplotlib."""

from __future__ import annotations

import os

from chatops.render.pool import _mpl_config_dir

os.environ.setdefault("MPLCONFIGDIR", _mpl_config_dir())
