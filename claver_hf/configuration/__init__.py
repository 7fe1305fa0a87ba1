from .configuration_claver import KRONECKER_MASK_TYPES, ClaverConfig, ClaverVisionConfig
from .presets import CLAVER_PRESETS, preset_config

__all__ = ["CLAVER_PRESETS", "KRONECKER_MASK_TYPES", "ClaverConfig", "ClaverVisionConfig", "preset_config"]
