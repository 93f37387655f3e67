"""The socket server's defences: who may connect how often, bounded buffers, safe log text."""
