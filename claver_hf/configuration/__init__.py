from .configuration_claver import ClaverConfig, ClaverVisionConfig

__all__ = ["ClaverConfig", "ClaverVisionConfig"]
