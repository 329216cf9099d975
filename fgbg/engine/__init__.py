"""Where work fans out: one function per shard mapped over shard ids (``local``: a process pool)."""
