"""PomaiDB vector store for LlamaIndex: `pip install "pomaidb[llamaindex]"`.

from llama_index.vector_stores.pomaidb import PomaiDBVectorStore
"""

from llama_index.vector_stores.pomaidb.base import PomaiDBVectorStore

__all__ = ["PomaiDBVectorStore"]
