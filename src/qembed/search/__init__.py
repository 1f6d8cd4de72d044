"""Semantic search: the knowledge base (chunking, dense + BM25 retrieval, fusion) over a vector store."""

from qembed.search.chunking import Chunk, Chunker
from qembed.search.knowledge_base import Document, KnowledgeBase
from qembed.search.lexical import BM25Index

__all__ = ["BM25Index", "Chunk", "Chunker", "Document", "KnowledgeBase"]
