"""The pixelsail recipe: how pixelwise trains its tiny pixelsail checkpoint (docs/models/pixelsail-tiny.md)."""
