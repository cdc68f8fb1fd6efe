def load_official_checkpoint(*a, **k): raise NotImplementedError
