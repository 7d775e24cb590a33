"""The vitron recipe: how pixelwise trains its tiny vitron checkpoint (docs/models/vitron-tiny.md)."""
