"""The web chat: a Gradio UI over the answering API (``app``) and its rendering (``render``)."""
