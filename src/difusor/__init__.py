"""difusor — plataforma para difusores oficiales del PREP."""

__version__ = "0.1.0"
