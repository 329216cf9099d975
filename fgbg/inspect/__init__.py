"""Reading a finished store back: exact statistics, verification, previews and the dataset card."""
