"""Step 1 of the data flow: which files of a tree are indexed (discover), their language
(languages), and how each is cut into chunks (chunk: boundaries only, no IO)."""
