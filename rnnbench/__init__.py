"""rnnbench: benchmark recurrent cells and their IRC/IHC variants."""

__version__ = "0.1.0"
