"""bridge: training time <-> temperature maps, comparisons and reports."""
