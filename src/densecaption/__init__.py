"""densecaption: dense, region-aligned image captions (DCI, sDCI, Captions4T2I)."""

__version__ = "0.1.0"
