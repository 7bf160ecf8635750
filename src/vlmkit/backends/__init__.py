"""Two ways to caption a video behind one interface: an end-to-end VLM, or encoder + projector + LLM."""
