"""From chunks to an index and back: analysis, embeddings, BM25, FAISS, the chunk store, builds."""
