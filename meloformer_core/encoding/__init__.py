"""HID v2 encoding: Song ↔ tokens. Imports neither torch nor Qt."""

from meloformer_core.encoding.codec import decode, encode
from meloformer_core.encoding.grammar import GrammarState, MetadataTracker, token_metadata, validate
from meloformer_core.encoding.quantize import quantize
from meloformer_core.encoding.vocab import DEFAULT_VOCAB, EncodingConfig, TokenType, Vocabulary

__all__ = [
    "DEFAULT_VOCAB",
    "EncodingConfig",
    "GrammarState",
    "MetadataTracker",
    "TokenType",
    "Vocabulary",
    "decode",
    "encode",
    "quantize",
    "token_metadata",
    "validate",
]
