"""PixelWorld: a procedural multi-task benchmark and training set for pixel-level reasoning (images and videos).

Modules: `vocab` (attribute values), `scene` (scene graph + motion), `render` (frames + exact visible masks),
`grammar` (expressions, text, resolver), `tasks` (one sample per scene), `splits` (seeds, hold-out rules),
`generate` (multiprocess generation), `native` / `dataset` (reading), `export` (public layouts), `check`
(consistency checker), `show` (visualisation), `demo` (fixed example scenes), `benchmark` (speed). See
docs/pixelworld.md.
"""
