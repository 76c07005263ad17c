"""Gristmill's shared kernel: settings, errors and the document model every stage passes along."""
