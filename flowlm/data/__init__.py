"""Data: corpora (:mod:`.corpus`), tokenizers (:mod:`.tokenizers`), packing and splits
(:mod:`.packing`), and the step-indexed batch source (:mod:`.dataset`)."""

from flowlm.data.corpus import CorpusError, load_corpus, load_documents
from flowlm.data.dataset import DataSplits, PackedDataset, build_datasets
from flowlm.data.packing import PackingError, pack_documents, split_blocks
from flowlm.data.tokenizers import (
    TOKENIZER_KINDS,
    BertTokenizer,
    BPETokenizer,
    CharTokenizer,
    GPT2Tokenizer,
    Tokenizer,
    TokenizerError,
    build_tokenizer,
    tokenizer_from_spec,
)

__all__ = [
    "CorpusError", "load_corpus", "load_documents",
    "Tokenizer", "CharTokenizer", "BPETokenizer", "GPT2Tokenizer", "BertTokenizer", "TokenizerError",
    "TOKENIZER_KINDS", "build_tokenizer", "tokenizer_from_spec",
    "PackingError", "pack_documents", "split_blocks",
    "PackedDataset", "DataSplits", "build_datasets",
]
