"""SAM 2.1 for pixelwise: image encoder, prompt encoder, mask decoder and video memory, prompted by LLM tokens.

Own compact re-implementation of the official facebookresearch/sam2 architecture (one concept per file), in the
official parameter layout so official / UniPixel checkpoints load without renaming (`sam2.` prefix stripped):

* `hiera.py` + `image_encoder.py`: Hiera trunk and FPN neck (`image_encoder.*`);
* `prompt_encoder.py`: point/box/mask prompt encoder with UniPixel's appended hidden tokens (`sam_prompt_encoder.*`);
* `mask_decoder.py`: two-way transformer mask decoder with object-score head (`sam_mask_decoder.*`);
* `memory_attention.py` / `memory_encoder.py`: RoPE memory attention and mask memory encoder;
* `model.py`: `Sam2Model` (`encode_frames`, `track`, `load_official_state_dict`);
* `config.py`: `Sam2Config` (from UniPixel's `config.json` or presets t / s / b+ / l).

Typical use (one query, O objects, T frames)::

    cfg = Sam2Config.from_unipixel_config(config_json)
    sam2 = Sam2Model(cfg).eval()
    sam2.load_official_state_dict({k[5:]: v for k, v in sd.items() if k.startswith("sam2.")})
    feats = sam2.encode_frames(frames)                 # once per clip, shared by all objects
    out = sam2.track(feats, hidden_prompts, frame_size=(H, W))   # hidden_prompts [O, 2, C]

Deviations from the official code are listed in this package's README.md.
"""

from pixelwise.modules.sam2.common import NO_OBJ_SCORE
from pixelwise.modules.sam2.config import Sam2Config
from pixelwise.modules.sam2.features import FrameSource, Sam2Features, Sam2FrameFeatures
from pixelwise.modules.sam2.model import Sam2FrameOutput, Sam2Model, Sam2TrackOutput
from pixelwise.modules.sam2.prompt_encoder import PromptEncoder

__all__ = [
    "NO_OBJ_SCORE",
    "FrameSource",
    "PromptEncoder",
    "Sam2Config",
    "Sam2Features",
    "Sam2FrameFeatures",
    "Sam2FrameOutput",
    "Sam2Model",
    "Sam2TrackOutput",
]
