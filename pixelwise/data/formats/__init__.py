"""Readers for the public benchmark layouts (each returns `Sample`s) and writers of official prediction layouts.

| Benchmark | Reader |
|---|---|
| RefCOCO / RefCOCO+ / RefCOCOg | `refcoco.read_refcoco` |
| ReasonSeg | `reasonseg.read_reasonseg` |
| MUSE | `muse.read_muse` |
| MeViS, ReVOS, Ref-SAV, Ref-YouTube-VOS, Ref-DAVIS17 | `rvos.read_rvos` |
| GroundMoRe | `groundmore.read_groundmore` |
| VideoRefer-Bench-Q / PixelQA | `videorefer.read_videorefer` |
"""

from pixelwise.data.formats.sample import ArrayTrack, MaskTrack, PngTrack, RleTrack, Sample

__all__ = ["ArrayTrack", "MaskTrack", "PngTrack", "RleTrack", "Sample"]
