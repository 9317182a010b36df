"""Data: corpora (:mod:`.corpus`), tokenizers (:mod:`.tokenizers`), packing and splits
(:mod:`.packing`), and the step-indexed batch source (:mod:`.dataset`)."""

from flowlm.data.corpus import CorpusError, documents_fingerprint, fetch_shakespeare, load_corpus, load_documents
from flowlm.data.dataset import DataSplits, PackedDataset, build_datasets
from flowlm.data.packing import (
    PackingError,
    encode_documents,
    pack_documents,
    pack_ids,
    split_blocks,
    split_documents,
)
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
    "CorpusError", "load_corpus", "load_documents", "fetch_shakespeare", "documents_fingerprint",
    "Tokenizer", "CharTokenizer", "BPETokenizer", "GPT2Tokenizer", "BertTokenizer", "TokenizerError",
    "TOKENIZER_KINDS", "build_tokenizer", "tokenizer_from_spec",
    "PackingError", "encode_documents", "pack_ids", "pack_documents", "split_blocks", "split_documents",
    "PackedDataset", "DataSplits", "build_datasets",
]
