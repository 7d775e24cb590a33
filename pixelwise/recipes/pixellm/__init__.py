"""The pixellm recipe: how pixelwise trains its tiny pixellm checkpoint (docs/models/pixellm-tiny.md)."""
