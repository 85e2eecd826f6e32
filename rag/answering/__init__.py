"""The answering layer: the assistant and its chain, the answerers, and their prompts."""
