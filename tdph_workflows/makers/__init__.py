"""jobflow Makers (thin wiring) and the @job functions they create."""

from .flows import HarmonicMaker, MetricsMaker, OneShotSSCHAMaker, RelaxMaker, TDPHFlowMaker, TDPHMaterialMaker

__all__ = ["HarmonicMaker", "MetricsMaker", "OneShotSSCHAMaker", "RelaxMaker", "TDPHFlowMaker", "TDPHMaterialMaker"]
