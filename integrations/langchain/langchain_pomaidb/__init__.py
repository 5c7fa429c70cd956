"""LangChain integration of PomaiDB: `from langchain_pomaidb import PomaiDBVectorStore`.

Installed by `pip install langchain-pomaidb` (from a clone: `pip install ./integrations/langchain`).
See vectorstore.py for the storage model, the filter forms and the async behaviour, and
relevance.py for the [0, 1] score maps.
"""

from .hashing import HashingEmbeddings
from .ids import IdCollisionError
from .relevance import cosine_relevance, ip_relevance, l2_relevance
from .vectorstore import PomaiDBVectorStore

__version__ = "0.1.0"

__all__ = [
    "HashingEmbeddings",
    "IdCollisionError",
    "PomaiDBVectorStore",
    "__version__",
    "cosine_relevance",
    "ip_relevance",
    "l2_relevance",
]
