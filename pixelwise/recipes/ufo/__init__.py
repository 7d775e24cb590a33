"""The ufo recipe: how pixelwise trains its tiny ufo checkpoint (docs/models/ufo-tiny.md)."""
