"""Modal dialogs of the console."""
