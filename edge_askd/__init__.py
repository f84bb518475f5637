"""edge_askd: the training side (teachers, students, data, ASKD distillation).

Importing this package is cheap and torch-free; torch and transformers are imported by the modules that
need them, so the `edge-askd` CLI also works on a board that has only the device runtime installed.
"""

__version__ = "0.1.0"
