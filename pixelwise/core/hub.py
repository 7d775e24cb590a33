"""Checkpoint locations: a local folder, or a Hugging Face repo id resolved through `huggingface_hub`, the way
`from_pretrained` does it (the local cache first; a download unless offline).

    resolve_checkpoint("checkpoints/UniPixel-3B")            # a folder: returned as it is
    resolve_checkpoint("PolyU-ChenLab/UniPixel-3B")          # cache, else download (HF_HUB_OFFLINE=1: cache only)
    resolve_checkpoint("PolyU-ChenLab/UniPixel-3B@v1.0")     # a revision (branch, tag or commit)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pixelwise.core.errors import CheckpointError

# owner/name[@revision], as the Hub spells them; anything else is a path
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96})(?:@(?P<revision>[\w./-]{1,128}))?$")
# what a pixelwise checkpoint folder holds (weights, configs, tokenizer, templates)
CHECKPOINT_FILES = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_checkpoint(path: str | Path, local_files_only: bool = False) -> Path:
    """A checkpoint folder for `path`: an existing folder, or the snapshot of a Hub repo id (`owner/name[@rev]`).

    The cache is `HF_HUB_CACHE` / `HF_HOME` as `huggingface_hub` reads them; `HF_HUB_OFFLINE=1` or
    `local_files_only=True` never touch the network. Raises `CheckpointError` naming the id and what to do.
    """
    folder = Path(path).expanduser()
    if folder.is_dir():
        return folder
    m = HUB_ID.match(str(path))
    if folder.exists() or m is None or str(path).startswith((".", "/", "~")):
        raise CheckpointError(f"{path}: not a checkpoint folder")
    repo, revision = m.group("repo"), m.group("revision")
    offline = local_files_only or _offline()
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        raise CheckpointError(f"{path}: not a local folder, and huggingface_hub is not installed to resolve it "
                              "as a Hub id") from None
    try:
        snap = snapshot_download(repo, revision=revision, allow_patterns=CHECKPOINT_FILES, local_files_only=offline,
                                 cache_dir=os.environ.get("HF_HUB_CACHE"))
    except LocalEntryNotFoundError:
        how = (f"`hf download {repo}` on a machine with network access (or unset HF_HUB_OFFLINE)" if offline else
               f"check the network, or `hf download {repo} --local-dir DIR` and pass DIR")
        raise CheckpointError(f"{path}: not a local folder and not in the Hugging Face cache; {how}") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"{path}: no such model on the Hugging Face Hub (or it is private: `hf auth login`)"
                              ) from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: could not be fetched from the Hugging Face Hub ({type(e).__name__}: {e})"
                              ) from None
    return Path(snap)
