"""Embedders: texts -> L2-normalised float32 vectors for a task and side.

CONTRACT (owned by the embedding work, issue 3; other modules rely on these names):

    TASKS = ("nl2code", "qa", "code2code", "code2nl", "code2completion")

    class Embedder(Protocol):
        model_id: str            # hub id or absolute local path
        revision: str | None     # pinned hub revision, or None for a local directory
        dim: int                 # output dimension after Matryoshka truncation
        prefix_scheme: str       # e.g. "jina-code-v1" or "none": recorded in index manifests
        max_length: int
        def embed_queries(self, texts: Sequence[str], task: str = "nl2code") -> np.ndarray: ...
        def embed_documents(self, texts: Sequence[str], task: str = "nl2code",
                            progress: Callable[[int], None] | None = None) -> np.ndarray: ...
        # (n, dim) float32, rows L2-normalised; progress(k) is called as k more texts finish.

    def load_embedder(model: str | None = None, *, dim: int | None = None,
                      device: str | None = None, pooling: str | None = None,
                      max_length: int | None = None) -> Embedder
        # model: a preset ("jina-code-0.5b", "jina-code-1.5b", "minilm"), a hub id or a local dir.
        # A local dir with a Qwen2 config defaults to last-token pooling and jina prefixes.
"""
