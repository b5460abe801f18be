"""jobflow Makers (thin wiring) and the @job functions they create."""

from .finetune import FineTuneMaker
from .flows import HarmonicMaker, MetricsMaker, OneShotSSCHAMaker, PotentialRelaxMaker, TDPHFlowMaker, TDPHMaterialMaker

__all__ = ["FineTuneMaker", "HarmonicMaker", "MetricsMaker", "OneShotSSCHAMaker", "PotentialRelaxMaker", "TDPHFlowMaker", "TDPHMaterialMaker"]
