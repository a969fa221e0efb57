"""Applications built on search: the themes agenda and the retrieval evaluation."""
