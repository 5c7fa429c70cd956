"""PomaiDB vector store for LlamaIndex: `pip install llama-index-vector-stores-pomaidb`.

From a clone: `pip install ./integrations/llama_index`.

    from llama_index.vector_stores.pomaidb import PomaiDBVectorStore
"""

from llama_index.vector_stores.pomaidb.base import PomaiDBVectorStore

__version__ = "0.1.0"

__all__ = ["PomaiDBVectorStore", "__version__"]
