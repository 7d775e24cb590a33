"""A thin tokenizer wrapper for families that own their chat layout (ChatML) and their segmentation token.

Loads `tokenizer.json` (a `tokenizers` byte-level BPE, e.g. built by `pixelwise.train.tiny.build_tokenizer`), and
turns generated ids back into an answer with the character span each segmentation token occupies, which is what a
`SegObject.span` records.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pixelwise.core.errors import CheckpointError
from pixelwise.core.io import atomic_write_text
from pixelwise.modules.vl_processing import load_tokenizer


class ChatText:
    def __init__(self, tokenizer):
        self.tok = tokenizer

    @classmethod
    def from_file(cls, path: str | Path) -> ChatText:
        """A tokenizer.json (a regular file of a sane size; any failure a CheckpointError naming it)."""
        return cls(load_tokenizer(Path(path)))

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.tok.to_str())

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def token_id(self, token: str) -> int:
        i = self.tok.token_to_id(token)
        if i is None:
            raise CheckpointError(f"tokenizer has no token {token!r}")
        return int(i)

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)

    def decode_with_spans(self, ids: Sequence[int], marker_id: int, skip_ids: Sequence[int] = ()
                          ) -> tuple[str, list[tuple[int, int]]]:
        """Decode ids piecewise so that each `marker_id` token's (start, end) in the text is known."""
        text, spans, run = "", [], []
        skip = set(skip_ids)
        for i in list(ids) + [None]:
            if i is None or i == marker_id:
                text += self.tok.decode(run, skip_special_tokens=False) if run else ""
                run = []
                if i is not None:
                    piece = self.tok.decode([i], skip_special_tokens=False)
                    spans.append((len(text), len(text) + len(piece)))
                    text += piece
            elif i not in skip:
                run.append(i)
        return text, spans
