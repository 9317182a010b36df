"""Data: corpora (:mod:`.corpus`), tokenizers (:mod:`.tokenizers`), packing and splits
(:mod:`.packing`), the batch sources the training loop consumes (:mod:`.batches`, :mod:`.dataset`),
and prepared token shards for corpora at OpenWebText scale (:mod:`.inputs`, :mod:`.prepare`,
:mod:`.shards`)."""

from flowlm.data.batches import BatchSource, BlockBatchSource, StreamPosition, TensorBatchSource
from flowlm.data.corpus import CorpusError, documents_fingerprint, fetch_shakespeare, load_corpus, load_documents
from flowlm.data.dataset import DataSplits, PackedDataset, build_datasets, shard_datasets
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
from flowlm.data.prepare import prepare_shards
from flowlm.data.shards import ShardBatchSource, TokenShards, is_shard_folder, shard_splits

__all__ = [
    "CorpusError", "load_corpus", "load_documents", "fetch_shakespeare", "documents_fingerprint",
    "Tokenizer", "CharTokenizer", "BPETokenizer", "GPT2Tokenizer", "BertTokenizer", "TokenizerError",
    "TOKENIZER_KINDS", "build_tokenizer", "tokenizer_from_spec",
    "PackingError", "encode_documents", "pack_ids", "pack_documents", "split_blocks", "split_documents",
    "PackedDataset", "DataSplits", "build_datasets", "shard_datasets",
    "BatchSource", "BlockBatchSource", "StreamPosition", "TensorBatchSource",
    "prepare_shards", "TokenShards", "ShardBatchSource", "is_shard_folder", "shard_splits",
]
